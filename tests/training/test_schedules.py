"""Tests of kerascnn.training.schedules.OneCycle."""

import math
import os

import keras
import numpy as np
import pytest

from kerascnn.training.schedules import OneCycle


def _torch_one_cycle(step, max_lr, total, pct=0.3, div=25.0, final_div=1e4):
    # PyTorch's OneCycleLR (two phases, cosine), written out by hand.
    initial, final = max_lr / div, max_lr / div / final_div
    peak = pct * total - 1

    def cos(start, end, f):
        return end + (start - end) / 2 * (math.cos(math.pi * f) + 1)

    if step <= peak:
        return cos(initial, max_lr, step / peak)
    return cos(max_lr, final, min(1.0, (step - peak) / (total - 1 - peak)))


def test_values_match_pytorch_formula():
    schedule = OneCycle(0.4, total_steps=100)
    for step in (0, 1, 10, 29, 30, 50, 98, 99, 150):
        expected = _torch_one_cycle(step, 0.4, 100)
        # float32 arithmetic: absolute error ~ 1e-7 of a 0.4 peak.
        assert float(schedule(step)) == pytest.approx(expected, rel=1e-5, abs=1e-7)
    assert float(schedule(0)) == pytest.approx(0.016)
    assert float(schedule(29)) == pytest.approx(0.4)
    assert float(schedule(99)) == pytest.approx(1.6e-6, rel=1e-4)


def test_linear_and_half_cycle():
    schedule = OneCycle(
        1.0,
        total_steps=11,
        pct_start=0.5,
        div_factor=10,
        final_div_factor=10,
        anneal_strategy="linear",
    )
    # peak at step 4.5: halfway through the warm-up (step 2.25) is (0.1 + 1) / 2.
    assert float(schedule(2.25)) == pytest.approx(0.55)
    assert float(schedule(10)) == pytest.approx(0.01)


def test_serialisation_and_model_save(tmp_path):
    schedule = OneCycle(0.1, total_steps=20, pct_start=0.25)
    config = keras.optimizers.schedules.serialize(schedule)
    restored = keras.optimizers.schedules.deserialize(config)
    assert isinstance(restored, OneCycle)
    assert restored.get_config() == schedule.get_config()
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile(keras.optimizers.SGD(learning_rate=schedule), "mse")
    model.fit(np.ones((8, 2)), np.ones((8, 1)), batch_size=4, epochs=1, verbose=0)
    path = os.path.join(tmp_path, "m.keras")
    model.save(path)
    loaded = keras.models.load_model(path)
    lr = loaded.optimizer.learning_rate
    assert float(lr) == pytest.approx(float(schedule(2)), rel=1e-5)  # 2 steps done
    assert isinstance(loaded.optimizer._learning_rate, OneCycle)


def test_bad_arguments():
    with pytest.raises(ValueError, match="max_learning_rate"):
        OneCycle(0, 10)
    with pytest.raises(ValueError, match="total_steps"):
        OneCycle(0.1, 1)
    with pytest.raises(ValueError, match="pct_start"):
        OneCycle(0.1, 10, pct_start=1.5)
    with pytest.raises(ValueError, match="anneal_strategy"):
        OneCycle(0.1, 10, anneal_strategy="step")
