"""Tests of StabilityStopping and its stopping rule."""

import copy
import warnings

import keras
import numpy as np
import pytest

from kerascnn import zoo
from kerascnn.callbacks import LayerStatistics, StabilityStopping
from kerascnn.callbacks.layer_stats import default_monitored_layers
from kerascnn.callbacks.stability_stopping import (
    PRESETS,
    StabilityRule,
    round_half_even,
    stability_stop_epoch,
)

# The paper's Table 1 (ResNet-18 on CIFAR-100): p2(μ) of layers 1, 5, 9, 13
# and 18 are 0.14, 0.19, 0.14, 0.09, 0.44 at epochs 73, 74, 75 and 76
# (1-based), and training stops at epoch 76.
TABLE1 = {"layer1": 0.14, "layer5": 0.19, "layer9": 0.14, "layer13": 0.09, "layer18": 0.44}


def table1_history():
    history = []
    for epoch in range(1, 77):  # 1-based epochs 1..76
        if epoch < 73:
            # Still moving: every epoch before 73 differs at 2 decimals.
            drift = 0.01 * (73 - epoch)
            history.append({k: v + drift + 0.001 for k, v in TABLE1.items()})
        else:
            # Unrounded values that all round to the table's p2(μ).
            jitter = (-0.004, 0.003, -0.002, 0.0045)[epoch - 73]
            history.append({k: v + jitter for k, v in TABLE1.items()})
    return history


def test_paper_table1_stops_at_epoch_76():
    # Table 1 / Sec. 3.3.1: δ = 0 at epochs 74, 75 and 76 -> the paper stops at epoch 76.
    history = table1_history()
    assert stability_stop_epoch(history) == 75  # the paper's settings; 0-based: epoch 76
    assert stability_stop_epoch(history, decimals=2, patience=3, start_from_epoch=0) == 75
    # The reference code's rule (five identical rounded epochs) needs one more
    # epoch equal to Table 1's: it would stop at epoch 77 (0-based 76), not 76.
    assert stability_stop_epoch(history, preset="reference") is None
    assert stability_stop_epoch(history + [history[-1]], preset="reference") == 76
    # And r = 1 (Sec. 5.1: "causes very early stop") fires long before epoch 76.
    assert stability_stop_epoch(history, decimals=1) < 72


def test_reference_preset_flat_sequence_stops_at_epoch_5():
    # The reference (solver_cbs.py) checks from its 0-based epoch_count 5 the last
    # five rounded rows: a flat sequence stops at epoch_count 5 (six epochs run).
    flat = [{"a": 0.5, "b": 0.25}] * 10
    assert PRESETS["reference"] == {"decimals": 2, "patience": 4, "start_from_epoch": 1}
    assert stability_stop_epoch(flat, preset="reference") == 5
    # What the docs used to say (start_from_epoch=4) stops three epochs late.
    assert stability_stop_epoch(flat, patience=4, start_from_epoch=4) == 8
    assert stability_stop_epoch(flat) == 3  # the paper's rule
    # The reference stops at epoch_count e when rows e-4..e are equal, e >= 5.
    steps = [{"a": v} for v in (0.9, 0.5, 0.5, 0.5, 0.5, 0.5, 0.4)]
    assert stability_stop_epoch(steps, preset="reference") == 5
    assert stability_stop_epoch([{"a": 0.5}] * 5, preset="reference") is None


def test_reference_preset_callback_stops_at_epoch_5_and_round_trips():
    keras.utils.set_random_seed(0)
    model = conv_model()
    cb = StabilityStopping(preset="reference")
    fit(model, [cb], epochs=10)  # lr=0: a flat μ sequence
    assert cb.stopped_epoch == 5 and cb.epochs_run == 6
    assert (cb.decimals, cb.patience, cb.start_from_epoch) == (2, 4, 1)
    assert all(type(v) is float for v in cb.history[0].values())  # float64, never float32
    config = cb.get_config()
    assert config["preset"] == "reference"
    for clone in (StabilityStopping.from_config(config), copy.deepcopy(cb)):
        assert clone.get_config() == config
        assert (clone.patience, clone.start_from_epoch, clone.preset) == (4, 1, "reference")
    # Explicit values override the preset (the reference run with --precision_point 1).
    assert StabilityStopping(preset="reference", decimals=1).get_config()["decimals"] == 1
    default = StabilityStopping().get_config()
    assert (default["preset"], default["patience"], default["start_from_epoch"]) == ("paper", 3, 0)
    with pytest.raises(ValueError, match="Received: preset='keras'"):
        StabilityStopping(preset="keras")


def test_rounding_like_the_reference():
    # The reference rounds the float64 epoch mean with pandas/numpy round:
    # 2.675 -> 2.68 (Python's round gives 2.67, as does the float32 value).
    assert round_half_even(2.675, 2) == 2.68
    assert round(2.675, 2) == 2.67 and round_half_even(np.float32(2.675), 2) == 2.67
    assert round_half_even(2.675, 2) == float(np.round(np.float64(2.675), 2))
    assert stability_stop_epoch([{"a": 2.675}, {"a": 2.68}], patience=1) == 1


def test_rule_details():
    assert round_half_even(0.125, 2) == 0.12  # ties to even (0.125 is exact)
    assert round_half_even(0.375, 2) == 0.38
    # One layer changing breaks the streak.
    seq = [{"a": 0.5, "b": 0.1}, {"a": 0.5, "b": 0.1}, {"a": 0.5, "b": 0.12}, {"a": 0.5, "b": 0.12}]
    assert stability_stop_epoch(seq, patience=1) == 1
    assert stability_stop_epoch(seq, patience=2) is None
    # decimals=1 stops earlier than decimals=2 (Sec. 5.1).
    seq = [{"a": v} for v in (0.31, 0.33, 0.34, 0.29, 0.27)]
    assert stability_stop_epoch(seq, decimals=1, patience=2) == 2
    assert stability_stop_epoch(seq, decimals=2, patience=1) is None
    # start_from_epoch ignores the first epochs, as in keras' EarlyStopping.
    seq = [{"a": 0.2}] * 6
    assert stability_stop_epoch(seq, patience=2) == 2
    assert stability_stop_epoch(seq, patience=2, start_from_epoch=3) == 5
    # NaN: no decision, the streak restarts.
    seq = [{"a": 0.2}, {"a": 0.2}, {"a": float("nan")}, {"a": 0.2}, {"a": 0.2}]
    assert stability_stop_epoch(seq, patience=2) is None
    rule = StabilityRule(patience=1)
    assert not rule.update(0, {"a": float("nan")})
    for bad in (dict(decimals=-1), dict(patience=0), dict(start_from_epoch=-2)):
        with pytest.raises(ValueError, match="Received"):
            StabilityRule(**bad)


def conv_model():
    return keras.Sequential(
        [
            keras.Input((8, 8, 3)),
            keras.layers.Conv2D(4, 3, name="c1"),
            keras.layers.Conv2D(4, 3, activation="relu", name="c2"),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(3),
        ]
    )


def fit(model, callbacks, epochs=10, lr=0.0, x=None):
    model.compile(keras.optimizers.SGD(lr), "sparse_categorical_crossentropy")
    rng = np.random.default_rng(0)
    if x is None:
        x = rng.normal(size=(8, 8, 8, 3)).astype("float32")
    y = rng.integers(0, 3, 8)
    return model.fit(
        x, y, batch_size=4, epochs=epochs, verbose=0, shuffle=False, callbacks=callbacks
    )


def test_callback_stops_logs_and_reports_savings(capsys):
    keras.utils.set_random_seed(0)
    model = conv_model()
    cb = StabilityStopping(verbose=1)
    # lr=0: μ is identical every epoch, so the rule fires at epoch index 3.
    history = fit(model, [cb], epochs=10)
    assert cb.monitored_layers == ["c1", "c2"]
    assert cb.stopped_epoch == 3
    assert cb.epochs_run == 4 and cb.planned_epochs == 10
    assert cb.epochs_saved == 6 and cb.fraction_saved == pytest.approx(0.6)
    assert len(history.history["stability/c1"]) == 4
    assert history.history["stability/c2"][0] > 0
    assert "saved 6 (60.0%)" in capsys.readouterr().out
    # Reusable: a second fit starts from a clean state.
    history = fit(model, [cb], epochs=2)
    assert cb.stopped_epoch == 0 and cb.epochs_run == 2 and cb.epochs_saved == 0
    assert LayerStatistics.get(model) is None


def test_monitor_only_records_the_stable_epoch_and_never_stops(capsys):
    keras.utils.set_random_seed(0)
    model = conv_model()
    cb = StabilityStopping(verbose=1, monitor_only=True)
    # lr=0: the rule fires at epoch index 3, as above, but training goes on.
    history = fit(model, [cb], epochs=6)
    assert len(history.epoch) == 6 and cb.epochs_run == 6
    assert cb.stopped_epoch == 0 and cb.epochs_saved == 0
    assert cb.stable_epoch == 3
    assert cb.predicted_epochs_saved == 2 and cb.predicted_fraction_saved == pytest.approx(2 / 6)
    assert "stable at epoch 4; stopping there would have saved 2 of 6" in capsys.readouterr().out
    copied = copy.deepcopy(cb)
    assert copied.monitor_only and copied.stable_epoch == 3
    with pytest.raises(TypeError, match="monitor_only"):
        StabilityStopping(monitor_only="yes")


def test_training_model_does_not_stop_early():
    keras.utils.set_random_seed(1)
    model = conv_model()
    cb = StabilityStopping(decimals=6, patience=2)
    fit(model, [cb], epochs=3, lr=0.5)
    assert cb.stopped_epoch == 0 and cb.epochs_run == 3
    assert len(cb.history) == 3 and cb.history[0]["c1"] != cb.history[1]["c1"]


def test_resnet18_monitors_the_pooled_tensor_as_the_paper():
    # The paper's ResNet-18 "layer 18" (Table 1, Sec. 5.1: "an average pool function
    # used in the last layer") is, in its reference code, avg_pool2d(layer4, 4): the
    # globally pooled tensor, not the 4x4 output of the last block.
    keras.utils.set_random_seed(2)
    model = zoo.resnet18(input_shape=(32, 32, 3), width_multiplier=0.125, classes=3)
    assert model.get_layer("stage4_block2_out").output.shape[1:3] == (4, 4)
    expected = [
        "stem_conv1_relu",
        "stage1_block2_out",
        "stage2_block2_out",
        "stage3_block2_out",
        "head_gap",
    ]
    assert default_monitored_layers(model) == expected
    cb = StabilityStopping(patience=1)
    last_block = StabilityStopping(layers=["stage4_block2_out"], monitor_only=True)
    copy.deepcopy(cb)
    model.compile(keras.optimizers.SGD(0.0), "sparse_categorical_crossentropy")
    x = np.random.default_rng(0).normal(size=(8, 32, 32, 3)).astype("float32")
    model.fit(x, np.arange(8) % 3, batch_size=8, epochs=3, verbose=0, callbacks=[cb, last_block])
    assert cb.monitored_layers == expected
    assert cb.stopped_epoch == 1
    # One step per epoch, lr=0: μ is the std (ddof=1) of the training-mode tensors.
    probe = keras.Model(model.input, [model.get_layer(n).output for n in expected[-2:]])
    block3, pooled = (np.asarray(t, "float64") for t in probe(x, training=True))
    np.testing.assert_allclose(cb.history[0]["head_gap"], np.std(pooled, ddof=1), rtol=1e-4)
    np.testing.assert_allclose(
        cb.history[0]["stage3_block2_out"], np.std(block3, ddof=1), rtol=1e-4
    )
    block4 = keras.Model(model.input, model.get_layer("stage4_block2_out").output)
    unpooled = np.std(np.asarray(block4(x, training=True), "float64"), ddof=1)
    np.testing.assert_allclose(last_block.history[0]["stage4_block2_out"], unpooled, rtol=1e-4)
    assert abs(cb.history[0]["head_gap"] - unpooled) > 0.1 * unpooled  # not the same tensor
    clone = copy.deepcopy(cb)
    assert clone.stopped_epoch == 1 and clone.history == cb.history and clone.model is None


def test_errors():
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    with pytest.raises(ValueError, match="nothing to monitor"):
        fit(model, [StabilityStopping()], epochs=1, x=np.zeros((8, 4), "float32"))
    with pytest.raises(ValueError, match="Available layers: c1, c2"):
        fit(conv_model(), [StabilityStopping(layers=["nope"])], epochs=1)
    with pytest.raises(TypeError, match="layers"):
        StabilityStopping(layers=3)
    with pytest.raises(ValueError, match="patience"):
        StabilityStopping(patience=0)


def test_nan_statistics_warn_and_model_stays_trainable():
    keras.utils.set_random_seed(3)
    model = conv_model()
    x = np.random.default_rng(0).normal(size=(8, 8, 8, 3)).astype("float32")
    x_nan = x.copy()
    x_nan[0, 0, 0, 0] = np.nan
    cb = StabilityStopping(patience=1)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fit(model, [cb], epochs=3, x=x_nan)
    assert any("non-finite" in str(w.message) for w in caught)
    assert cb.stopped_epoch == 0 and cb.epochs_run == 3
    # Hooks removed, the model trains again on good data.
    model.set_weights([np.random.default_rng(1).normal(size=w.shape) * 0.1 for w in model.weights])
    history = fit(model, [], epochs=1, lr=0.01, x=x)
    assert np.isfinite(history.history["loss"][0])


def test_stopping_fires_after_a_layer_drop(capsys):
    from kerascnn.callbacks import LayerDropping

    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((8, 8, 3)),
            keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="c1"),
            keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="c2"),
            keras.layers.Conv2D(4, 3, padding="same", name="c3"),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(3),
        ]
    )
    model.compile(keras.optimizers.SGD(0.0), "sparse_categorical_crossentropy")
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(8, 8, 8, 3)).astype("float32"), rng.integers(0, 3, 8)
    drop = LayerDropping(warmup_epochs=0, force_drops={1: "c1"})
    stop = StabilityStopping(patience=3, start_from_epoch=1)
    history = model.fit(x, y, batch_size=8, epochs=10, verbose=0, callbacks=[drop, stop])
    h = history.history
    assert h["learn_drop/dropped_convs"][:3] == [0, 0, 1]
    # Fires after the drop (epochs 1..4 stable; the drop is at the end of epoch 1).
    assert stop.stopped_epoch == 4 and stop.epochs_run == 5
    for name in ("c1", "c2", "c3"):
        values = h[f"stability/{name}"]
        assert np.all(np.isfinite(values)), (name, values)
    # c1 (dropped) is reported with its last trained value; c2/c3 are measured
    # in the head's train step (lr=0: the same values as before the drop).
    assert h["stability/c1"][2:] == [h["stability/c1"][1]] * 3
    np.testing.assert_allclose(h["stability/c3"][2:], h["stability/c3"][1], rtol=1e-5)
    assert list(stop.frozen_layers) == ["c1"] and stop.frozen_layers["c1"]["epoch"] == 1
    assert "stability: layers ['c1'] dropped at epoch 2, reported stable" in capsys.readouterr().out
    assert LayerStatistics.get(model) is None
