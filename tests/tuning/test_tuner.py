"""Tests of kerascnn.tuning: the search space, the limits, a RandomSearch."""

import copy
import importlib.util
import random
import threading

import keras
import keras_tuner
import numpy as np
import pytest
from keras_tuner import errors as kt_errors

from kerascnn import tuning as tuner
from kerascnn import zoo
from kerascnn.callbacks import StabilityStopping

SHAPE = (16, 16, 1)


def small_hypermodel(**kwargs):
    kwargs.setdefault("families", ["compact", "mobilenet", "resnet"])
    kwargs.setdefault("width_multipliers", (0.125, 0.25))
    kwargs.setdefault("stability_stopping", False)
    return tuner.CNNHyperModel(SHAPE, 10, **kwargs)


def random_hp(space, rng):
    """A HyperParameters with a random value for every declared hyperparameter."""
    hp = keras_tuner.HyperParameters()
    for p in space.space:
        hp.values[p.name] = p.random_sample(rng.randrange(10**6))
    return hp


def test_sampled_hyperparameters_build_valid_models():
    hm = small_hypermodel()
    space = keras_tuner.HyperParameters()
    hm.build(space)
    rng = random.Random(0)
    seen = set()
    for _ in range(8):
        hp = random_hp(space, rng)
        # Every point of the space builds: GPW/RPW widths are rounded to the groups.
        model = hm.build(hp)
        config = hm.sample(hp)
        seen.add((config["family"], config["stage_layout"]))
        assert model.output_shape == (None, 10)
        assert model.name == hp.values[f"{config['family']}_model"]
        assert model.optimizer.learning_rate.numpy() == pytest.approx(hp["learning_rate"])
        if (
            config["stage_layout"] == "free"
            and not config.get("blurpool")
            and not config.get("squeeze_excite")
        ):
            # "free" depths are the zoo's `stages=`.
            n = hm._body_stages[model.name]
            depths = tuple(hp[f"depth_{k}"] for k in range(1, n + 1))
            assert config["depths"] == depths
            reference = zoo.build(
                model.name,
                input_shape=SHAPE,
                classes=10,
                template=hp["template"],
                width_multiplier=hp["width_multiplier"],
                stages=depths,
            )
            assert model.count_params() == reference.count_params()
    assert len({family for family, _ in seen}) >= 2


def test_conditional_scopes():
    hm = small_hypermodel(layouts=("base", "free"))
    hp = keras_tuner.HyperParameters()
    hm.build(hp)
    # Defaults: first family, base layout -> the depths are inactive.
    assert hp["family"] == "compact"
    assert hp.is_active("compact_model") and not hp.is_active("resnet_model")
    assert not hp.is_active("depth_1")
    names = {p.name for p in hp.space}
    # One depth per body stage of the deepest searched model (MobileNet: 5).
    assert {f"depth_{k}" for k in range(1, 6)} <= names and "depth_6" not in names
    hp2 = keras_tuner.HyperParameters()
    hp2.values.update({"family": "resnet", "stage_layout": "free", "depth_2": 3})
    model = hm.build(hp2)
    assert hp2.is_active("depth_1") and hp2.is_active("resnet_model")
    assert not hp2.is_active("compact_model")
    # ResNet-18 with stages (1, 3, 1, 1): 6 basic blocks.
    blocks = {layer.name.split("_")[1] for layer in model.layers if "_block" in layer.name}
    assert len([b for b in blocks if b.startswith("block")]) == 3


def test_limits_reject_big_models(tmp_path):
    hm = small_hypermodel(families=["resnet"], max_params=10_000)
    model = hm.build(keras_tuner.HyperParameters())
    cost = hm.cost(model)
    assert cost["params"] == model.count_params() > 10_000
    with pytest.raises(kt_errors.FailedTrialError, match="max_params"):
        hm.check_limits(model)
    x = np.zeros((4,) + SHAPE, "float32")
    y = np.zeros((4,), "int32")
    with pytest.raises(kt_errors.FailedTrialError):
        hm.fit(None, model, x, y, epochs=1, verbose=0)
    small = small_hypermodel(families=["compact"], max_params=10**6, max_macs=10**8)
    small.check_limits(small.build(keras_tuner.HyperParameters()))  # under the limits
    tight = small_hypermodel(families=["compact"], max_macs=10)
    with pytest.raises(kt_errors.FailedTrialError, match="MACs"):
        tight.check_limits(tight.build(keras_tuner.HyperParameters()))


def test_bad_arguments():
    with pytest.raises(ValueError, match="input_shape"):
        tuner.CNNHyperModel((16, 16), 10)
    with pytest.raises(ValueError, match="classes"):
        tuner.CNNHyperModel(SHAPE, 1)
    with pytest.raises(ValueError, match="families"):
        tuner.CNNHyperModel(SHAPE, 10, families=["nope"])
    with pytest.raises(ValueError, match="larger input"):
        tuner.CNNHyperModel(SHAPE, 10, models=["vgg11_bn"])  # needs 32x32
    with pytest.raises(ValueError, match="max_params"):
        tuner.CNNHyperModel(SHAPE, 10, max_params=-1)
    with pytest.raises(ValueError, match="tuner"):
        tuner.make_tuner(small_hypermodel(), "grid")
    if importlib.util.find_spec("scipy") is None or importlib.util.find_spec("sklearn") is None:
        with pytest.raises(ValueError, match="scipy"):
            tuner.make_tuner(small_hypermodel(), "bayesian")


def test_callbacks_are_deep_copyable():
    # keras-tuner deep-copies the search's callbacks for every trial.
    hm = small_hypermodel(stability_stopping=True, stability_kwargs={"patience": 2})
    callbacks = hm.make_callbacks([keras.callbacks.TerminateOnNaN()])
    assert isinstance(callbacks[-1], StabilityStopping)
    copied = copy.deepcopy(callbacks)
    assert copied[-1] is not callbacks[-1] and copied[-1]._rule.patience == 2
    tuner.check_deepcopyable(callbacks)

    class Locked(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.lock = threading.Lock()

    with pytest.raises(ValueError, match="Locked"):
        tuner.check_deepcopyable([Locked()])


@pytest.mark.slow
def test_random_search_on_embedded_data(tmp_path):
    from kerascnn import data

    x, y = data.load("embedded", "train", as_numpy=True, limit=128)
    xv, yv = data.load("embedded", "test", as_numpy=True, limit=64)
    result = tuner.search(
        x,
        y,
        validation_data=(xv, yv),
        input_shape=(28, 28, 1),
        classes=10,
        models=["compact_mnist_1k5_dw", "compact_mnist_5k_dw", "compact_cifar_143k"],
        width_multipliers=(0.125, 0.25),
        max_params=5_000,
        max_trials=6,
        epochs=2,
        batch_size=64,
        directory=str(tmp_path),
        seed=2,
        num_best=2,
    )
    assert len(result.trials) == 6
    statuses = [t["status"] for t in result.trials]
    assert set(statuses) <= {"COMPLETED", "FAILED"} and "COMPLETED" in statuses
    for t in result.trials:
        if t["status"] == "COMPLETED":
            assert 0 < t["params"] <= 5_000 and t["macs"] > 0
            assert 1 <= t["epochs_trained"] <= 2
    best = result.best_trials[0]
    done = [t["score"] for t in result.trials if t["status"] == "COMPLETED"]
    assert best["score"] == max(done)
    assert result.total_epochs == sum(t["epochs_trained"] or 0 for t in result.trials)
    text = tuner.format_best(result.tuner, 2)
    assert f"trial {best['trial_id']}" in text and f"{best['params']:,}" in text


def test_kernel_types_and_3drf_layout():
    hm = small_hypermodel(families=["compact"], width_multipliers=(1.0,))
    if "dw_pw" not in hm.kernel_types or "3drf" not in hm.layouts:
        pytest.fail(f"decomposer/organizer expected: {hm.kernel_types}, {hm.layouts}")
    hp = keras_tuner.HyperParameters()
    hp.values.update({"compact_model": "compact_mnist_25k", "kernel_type": "dw_pw"})
    model = hm.build(hp)
    std = small_hypermodel(families=["compact"], width_multipliers=(1.0,))
    hp_std = keras_tuner.HyperParameters()
    hp_std.values.update({"compact_model": "compact_mnist_25k", "kernel_type": "std"})
    reference = std.build(hp_std)
    kinds = {type(layer).__name__ for layer in model.layers}
    assert "DepthwiseConv2D" in kinds or "SeparableConv2D" in kinds, kinds
    assert model.count_params() < reference.count_params()
    hp3 = keras_tuner.HyperParameters()
    hp3.values.update({"compact_model": "compact_mnist_25k", "stage_layout": "3drf"})
    assert hm.build(hp3).output_shape == (None, 10)


def test_grouped_kernels_round_widths_to_the_groups():
    # Found by the tuner benchmark: the reverse template at width 0.125 gives
    # compact_cifar_143k 15-channel layers, which RPW-2 cannot split; the
    # hypermodel rounds the templated widths up to a multiple of the groups.
    hm = small_hypermodel(families=["compact"])
    config = {
        "family": "compact",
        "model": "compact_cifar_143k",
        "template": "reverse",
        "width_multiplier": 0.125,
        "stage_layout": "3drf",
        "depths": None,
        "kernel_type": "dw_rpw",
        "optimizer": "adam",
        "learning_rate": 1e-3,
    }
    model = hm.build_from_config(config)
    widths = [
        layer.filters
        for layer in model.layers
        if getattr(layer, "groups", 1) == 2 and hasattr(layer, "filters")
    ]
    assert widths and all(w % 2 == 0 for w in widths)
    assert model.output_shape == (None, 10)


def test_spec_for_is_the_transform_pipeline():
    # spec_for builds no model and gives the spec of the one pipeline, as
    # zoo.get_spec + transforms.pipeline.transform would.
    from kerascnn.transforms.pipeline import transform

    hm = small_hypermodel(
        models=["compact_mnist_25k"], width_multipliers=(0.5,), templates=("reverse",)
    )
    hp = keras_tuner.HyperParameters()
    hp.Fixed("stage_layout", "3drf")
    hp.Fixed("kernel_type", "dw_pw")
    got = hm.spec_for(hp)
    base = zoo.get_spec("compact_mnist_25k", input_shape=SHAPE)
    want = transform(
        base,
        organize=True,
        template="reverse",
        width_multiplier=0.5,
        kernel="dw_pw",
        input_shape=SHAPE,
    )
    assert got.to_json() == want.to_json()
    assert hm.spec_for(hp).to_json() == got.to_json()  # pure: same values, same spec
