"""Tests of Learn&Drop: the score (eqs. 2-4, Algorithm 1) and LayerDropping."""

import gc
import json
import os
import textwrap

import keras
import numpy as np
import pytest
from harness import run_two_replicas

from kerascnn import zoo
from kerascnn.callbacks import LayerDropping
from kerascnn.callbacks.learn_drop import dropping
from kerascnn.callbacks.learn_drop.score import (
    decide,
    layer_score,
    median_check,
    n_star,
    standardize,
)


# ---------------------------------------------------------------- the score
def test_score_all_equal_gradients_is_zero():
    g = [np.array([[0.3, -0.1], [0.2, 0.05]]), np.array([0.7, -0.4])]
    m = 5  # the same gradient at every iteration
    assert layer_score([m * w for w in g], [m * np.abs(w) for w in g]) == 0.0


def test_score_cancelling_gradients_is_one():
    g = np.array([0.3, -0.1, 0.2])
    sums = g + (-g)  # iteration 1 then its opposite
    abs_sums = 2 * np.abs(g)
    assert layer_score(sums, abs_sums) == 1.0
    # Half the iterations cancel: 4 steps of g and 2 of -g -> |2g| / 6|g| -> P = 2/3.
    assert layer_score(2 * g, 6 * np.abs(g)) == pytest.approx(2 / 3)
    assert np.isnan(layer_score(np.zeros(3), np.zeros(3)))


def test_standardize_n_star_and_median_check():
    np.testing.assert_allclose(standardize([0.2, 0.4, 0.6]), [-1.2247449, 0, 1.2247449], rtol=1e-6)
    np.testing.assert_array_equal(standardize([0.5, 0.5]), [0, 0])
    # eq. 4: first t with P'_t > 0 and P'_{t+1} < 0.
    assert n_star([1.0, 0.5, -0.2, -1.3]) == 1
    assert n_star([-1.0, 1.0, -0.5, 0.5]) == 1
    assert n_star([-1.0, 0.0, 1.0]) is None
    assert n_star([0.4, 0.0, -0.4]) is None  # strict inequalities
    assert median_check([0.5, 1.0, 0.8], []) is True
    assert median_check([0.5, 1.0, 0.8], [0.7, 0.9]) is True  # 0.8 >= 0.8
    assert median_check([0.1, 0.3], [0.7, 0.9]) is False
    count, p = decide([0.9, 0.8, 0.2, 0.1])
    assert count == 2 and p[0] > 0 and p[2] < 0
    # The same candidates are refused when earlier drops had higher P'.
    assert decide([0.9, 0.8, 0.2, 0.1], previously_dropped=[2.0, 2.0])[0] == 0
    assert decide([0.3, 0.3, 0.3])[0] == 0  # all equal -> P' = 0, no candidate


# ---------------------------------------------------------------- the callback
def chain_model():
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="c1")(inputs)
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="c2")(x)
    x = keras.layers.MaxPooling2D(name="p2")(x)
    x = keras.layers.Conv2D(6, 3, padding="same", activation="relu", name="c3")(x)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    outputs = keras.layers.Dense(3, activation="softmax", name="dense")(x)
    return keras.Model(inputs, outputs, name="chain")


def data(n=32, size=8, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, size, size, 3)).astype("float32"), rng.integers(0, 3, n)


def compile_model(model, lr=0.05, momentum=0.9):
    model.compile(
        keras.optimizers.SGD(lr, momentum=momentum),
        keras.losses.SparseCategoricalCrossentropy(),
        metrics=["accuracy"],
    )
    return model


class Snapshots(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.weights = {}

    def on_epoch_end(self, epoch, logs=None):
        self.weights[epoch] = {
            layer.name: [w.numpy().copy() for w in layer.weights] for layer in self.model.layers
        }


def changed(a, b):
    return any(not np.array_equal(x, y) for x, y in zip(a, b))


def test_resnet_tail_frozen_head_trains_evaluate_uses_full_model(tmp_path):
    model = compile_model(zoo.resnet18(input_shape=(16, 16, 3), width_multiplier=0.125, classes=3))
    x, y = data(32, 16)
    cache_dir = tmp_path / "cache"
    drop = LayerDropping(
        warmup_epochs=1,
        cache=str(cache_dir),
        cache_dtype="float16",
        force_drops={1: "stage2_block2_out", 3: "stage3_block1_out"},
    )
    snaps = Snapshots()
    history = model.fit(
        x,
        y,
        batch_size=8,
        epochs=5,
        validation_data=(x[:8], y[:8]),
        callbacks=[drop, snaps],
        verbose=0,
    )
    h = history.history
    assert h["learn_drop/dropped_convs"] == [0, 0, 11, 11, 14]
    assert [t["source"] for t in drop.timings] == ["raw", "cache"]  # 2nd from the 1st cache
    assert all(len(v) == 5 and np.all(np.isfinite(v)) for k, v in h.items() if "score" not in k)
    tail1 = [n for n in snaps.weights[1] if n.startswith(("stem", "stage1", "stage2"))]
    head = ["stage4_block2_2_conv", "predictions", "stage4_block2_2_bn"]
    for name in tail1:  # dropped at the end of epoch 1: never changes again
        for w0, w4 in zip(snaps.weights[1][name], snaps.weights[4][name]):
            np.testing.assert_array_equal(w0, w4)
    assert changed(
        snaps.weights[1]["stage3_block2_1_conv"], snaps.weights[3]["stage3_block2_1_conv"]
    )
    for name in ["stage3_block1_1_conv", "stage3_block1_1_bn"]:  # dropped at the end of epoch 3
        for w3, w4 in zip(snaps.weights[3][name], snaps.weights[4][name]):
            np.testing.assert_array_equal(w3, w4)
    for name in head:
        assert changed(snaps.weights[3][name], snaps.weights[4][name])
    # Forward MACs of what ran: the head only on cache epochs; a build epoch
    # also runs the layers between the old and the new cut (or the tail).
    macs = h["learn_drop/train_macs"]
    assert macs[0] == macs[1] == macs[2] and macs[3] < 0.3 * macs[0] and macs[4] == macs[3]
    # evaluate/predict use the full model on raw data.
    probs = model.predict(x, verbose=0)
    want = keras.losses.SparseCategoricalCrossentropy()(y, model(x, training=False)).numpy()
    loss, acc = model.evaluate(x, y, verbose=0)
    assert loss == pytest.approx(float(want), rel=1e-5)
    assert acc == pytest.approx(np.mean(np.argmax(probs, -1) == y))
    assert not os.listdir(cache_dir)  # cache files removed at the end
    assert model.train_function is None
    model.fit(x, y, batch_size=8, epochs=1, verbose=0)  # a plain fit afterwards works


def test_history_loss_is_the_heads_training_loss():
    # No BN/dropout and lr=0 after the drop: the head's training loss on the
    # cached features must equal the full model's loss on the raw images.
    model = compile_model(chain_model(), momentum=0.0)  # lr=0 -> no update at all
    x, y = data(24)
    sched = keras.callbacks.LearningRateScheduler(lambda e, lr: 0.05 if e < 2 else 0.0)
    drop = LayerDropping(warmup_epochs=1, force_drops={1: "p2"})
    history = model.fit(x, y, batch_size=8, epochs=4, callbacks=[sched, drop], verbose=0)
    loss, acc = model.evaluate(x, y, verbose=0)
    assert history.history["learn_drop/dropped_convs"][2:] == [2, 2]
    for epoch in (2, 3):  # build epoch and cache epoch
        assert history.history["loss"][epoch] == pytest.approx(loss, rel=1e-5)
        assert history.history["accuracy"][epoch] == pytest.approx(acc)


def test_head_traced_once_per_drop_and_setup_reported(monkeypatch):
    # Issue #13: the head's train step is traced exactly once per drop (it was
    # traced twice: with the tail for the build epoch, then without it for
    # the cache epochs). 20 samples, batch 8: the last batch (4) must not retrace.
    model = compile_model(chain_model())
    x, y = data(20)
    drop = LayerDropping(warmup_epochs=1, force_drops={1: "c1", 3: "p2"}, refresh_every=2)
    # Independent count: Python runs of each head's train_step (= its traces).
    traces, original = {}, dropping._Head.train_step

    def counted(self, data):
        traces[id(self)] = traces.get(id(self), 0) + 1
        return original(self, data)

    monkeypatch.setattr(dropping._Head, "train_step", counted)
    history = model.fit(x, y, batch_size=8, epochs=7, callbacks=[drop], verbose=0)
    h = history.history
    assert h["learn_drop/dropped_convs"] == [0, 0, 1, 1, 2, 2, 2]
    # Builds: epoch 2 (drop), 4 (drop from the cache), 6 (refresh: same head, no trace).
    assert [(t["epoch"], t["source"]) for t in drop.timings] == [
        (2, "raw"),
        (4, "cache"),
        (6, "raw"),
    ]
    assert [t["head_traces"] for t in drop.timings] == [1, 1, 0]
    assert [t["extract_traces"] for t in drop.timings] == [1, 1, 1]
    assert sorted(traces.values()) == [1, 1]  # two heads (two cuts), one trace each
    for t in drop.timings:
        assert t["setup_seconds"] == pytest.approx(
            t["split_seconds"] + t["compile_seconds"] + t["extract_seconds"] + t["pipeline_seconds"]
        )
        assert t["samples"] == 20 and t["bytes"] > 0 and t["first_step_seconds"] > 0
    assert drop.timings[0]["bytes"] == 20 * 8 * 8 * 4 * 4 + 20 * 8  # float32 c1 output + int64 y
    setup = h["learn_drop/setup_seconds"]
    assert [s > 0 for s in setup] == [False, False, True, False, True, False, True]
    assert h["learn_drop/cache_bytes"][:2] == [0.0, 0.0]
    assert h["learn_drop/cache_bytes"][2] == drop.timings[0]["bytes"]


def test_refresh_every_recomputes_from_raw_and_memory_cache():
    model = compile_model(chain_model())
    x, y = data(16)
    drop = LayerDropping(warmup_epochs=1, force_drops={1: "c1"}, refresh_every=2)
    model.fit(x, y, batch_size=8, epochs=6, callbacks=[drop], verbose=0)
    assert [(t["epoch"], t["source"]) for t in drop.timings] == [(2, "raw"), (4, "raw")]
    assert drop.timings[0]["on_disk"] is False and drop.timings[0]["samples"] == 16


def test_resume_with_backup_and_restore(tmp_path):
    x, y = data(16)
    backup = str(tmp_path / "backup")

    class Crash(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            if epoch == 3:
                raise RuntimeError("crash")

    model = compile_model(chain_model())
    cache = tmp_path / "cache"
    first = LayerDropping(
        warmup_epochs=1, force_drops={1: "p2"}, backup_dir=backup, cache=str(cache)
    )
    with pytest.raises(RuntimeError, match="crash"):
        model.fit(
            x,
            y,
            batch_size=8,
            epochs=5,
            verbose=0,
            callbacks=[keras.callbacks.BackupAndRestore(backup), first, Crash()],
        )
    with open(os.path.join(backup, "learn_drop_state.json")) as f:
        assert json.load(f)["dropped"] == 2
    del first
    gc.collect()
    assert not os.listdir(cache)  # the interrupted run's cache is gone
    second = LayerDropping(warmup_epochs=1, backup_dir=backup, cache=str(cache))
    from kerascnn.callbacks import StabilityStopping

    # (the crashed fit's statistics request died with `first`: dropped)
    stop = StabilityStopping(patience=5)
    history = model.fit(
        x,
        y,
        batch_size=8,
        epochs=5,
        verbose=0,
        callbacks=[keras.callbacks.BackupAndRestore(backup), stop, second],
    )
    assert history.history["learn_drop/dropped_convs"] == [2, 2]  # epochs 3 and 4
    # The resumed run knows no value of the dropped layers before the drop:
    # they are measured in the rebuild epoch (tail in inference mode), then
    # reported stable at that value.
    assert np.all(np.isfinite(history.history["stability/c1"]))
    assert history.history["stability/c1"][0] == history.history["stability/c1"][1]
    assert np.all(np.isfinite(history.history["stability/c3"]))
    assert [(t["epoch"], t["source"]) for t in second.timings] == [(3, "raw")]
    assert not os.path.exists(os.path.join(backup, "learn_drop_state.json"))


def test_argument_validation(tmp_path):
    with pytest.raises(ValueError, match="warmup_epochs"):
        LayerDropping(warmup_epochs=-1)
    with pytest.raises(ValueError, match="refresh_every"):
        LayerDropping(refresh_every=0)
    with pytest.raises(TypeError, match="cache"):
        LayerDropping(cache=3)
    for kwargs, match in [
        (dict(shuffle_buffer=0), "shuffle_buffer=0"),
        (dict(shuffle_buffer=-5), "shuffle_buffer=-5"),
        (dict(shuffle_buffer=2.5), "shuffle_buffer=2.5"),
        (dict(verbose="loud"), "verbose='loud'"),
        (dict(force_drops={0: -2}), "force_drops=\\{0: -2\\}"),
        (dict(force_drops={0: 0}), "force_drops=\\{0: 0\\}"),
        (dict(force_drops={-1: "c1"}), "force_drops"),
        (dict(cache_dtype="bogus"), "cache_dtype='bogus'"),
        (dict(cache_dtype="int8"), "cache_dtype='int8'"),
        (dict(cut_points=[]), "cut_points"),
        (dict(cache=""), "cache=''"),
    ]:
        with pytest.raises(ValueError, match=match):
            LayerDropping(**kwargs)
    for kwargs, match in [
        (dict(force_drops=[1]), "force_drops"),
        (dict(log_scores="yes"), "log_scores"),
        (dict(seed="1"), "seed"),
        (dict(backup_dir=3), "backup_dir"),
    ]:
        with pytest.raises(TypeError, match=match):
            LayerDropping(**kwargs)
    frozen = compile_model(chain_model())
    frozen.trainable = False
    compile_model(frozen)
    with pytest.raises(ValueError, match="no(ne)? .*trainable"):
        frozen.fit(*data(8), epochs=1, verbose=0, callbacks=[LayerDropping(force_drops={0: 1})])
    blocker = tmp_path / "f"
    blocker.write_text("x")
    model = compile_model(chain_model())
    x, y = data(8)
    with pytest.raises(ValueError, match="not writable"):
        model.fit(x, y, epochs=1, verbose=0, callbacks=[LayerDropping(cache=str(blocker / "d"))])


MIRRORED_SCRIPT = textwrap.dedent(
    """
    from kerascnn.callbacks import LayerDropping
    chain_model, compile_model, data = helpers.chain_model, helpers.compile_model, helpers.data
    Snapshots = helpers.Snapshots

    keras.utils.set_random_seed(3)
    x, y = data(32)
    strategy = two_replica_strategy()
    with strategy.scope():
        model = compile_model(chain_model(), lr=0.01)
    drop = LayerDropping(warmup_epochs=1, force_drops={1: "c1", 3: "p2"})
    snaps = Snapshots()
    h = model.fit(x, y, batch_size=8, epochs=5, callbacks=[drop, snaps], verbose=0)
    same = lambda e0, e1, n: all(np.array_equal(a, b) for a, b in zip(
        snaps.weights[e0][n], snaps.weights[e1][n]))
    print(json.dumps({
        "replicas": strategy.num_replicas_in_sync,
        "dropped": h.history["learn_drop/dropped_convs"],
        "loss": h.history["loss"],
        "c1_fixed": same(1, 4, "c1"),
        "c2_fixed_after": same(3, 4, "c2"),
        "c2_trained": not same(1, 3, "c2"),
        "c3_trained": not same(3, 4, "c3"),
        "samples": [t["samples"] for t in drop.timings],
        "scores_finite": bool(np.isfinite(h.history["learn_drop/score/c3"]).all()),
        "c3": h.history["learn_drop/score/c3"], "c2": h.history["learn_drop/score/c2"],
    }))
    """
)


def test_mirrored_strategy_two_logical_cpus():
    out = run_two_replicas(MIRRORED_SCRIPT, helpers=__file__, timeout=240)
    assert out["replicas"] == 2
    assert out["dropped"] == [0, 0, 1, 1, 2]
    assert out["samples"] == [32, 32]  # features of both replicas cached
    assert out["c1_fixed"] and out["c2_fixed_after"] and out["c2_trained"] and out["c3_trained"]
    assert out["scores_finite"] and np.all(np.isfinite(out["loss"]))
