"""The one optimizer / loss / strategy factory shared by `train` and the tuner."""

import keras
import pytest

from kerascnn.training import recipe
from kerascnn.training.schedules import OneCycle


def test_optimizers_and_default_rates():
    sgd = recipe.make_optimizer("sgd")
    assert isinstance(sgd, keras.optimizers.SGD) and sgd.nesterov and sgd.momentum == 0.9
    assert float(sgd.learning_rate) == pytest.approx(0.05)
    assert recipe.default_learning_rate("rmsprop") == 1e-3
    adamw = recipe.make_optimizer("adamw", 0.01)
    assert adamw.weight_decay == pytest.approx(1e-4)
    given = keras.optimizers.Adam(1e-3)
    assert recipe.make_optimizer(given) is given
    with pytest.raises(ValueError, match="optimizer must be one of"):
        recipe.make_optimizer("lion")


def test_schedules():
    assert recipe.make_schedule(0.1) == 0.1
    cosine = recipe.make_schedule(0.1, "cosine", 100)
    assert isinstance(cosine, keras.optimizers.schedules.CosineDecay)
    assert isinstance(recipe.make_schedule(0.1, "one_cycle", 100), OneCycle)
    with pytest.raises(ValueError, match="schedule must be one of"):
        recipe.make_schedule(0.1, "step")


def test_losses_and_strategy():
    assert recipe.make_loss() == "sparse_categorical_crossentropy"
    smoothed = recipe.make_loss(0.1)
    assert smoothed.get_config()["label_smoothing"] == pytest.approx(0.1)
    assert isinstance(recipe.make_loss(one_hot=True), keras.losses.CategoricalCrossentropy)
    with pytest.raises(ValueError, match="label_smoothing"):
        recipe.make_loss(1.0)
    assert recipe.make_strategy(None) is None and recipe.make_strategy("default") is None
    with pytest.raises(ValueError, match="strategy must be"):
        recipe.make_strategy("tpu")
