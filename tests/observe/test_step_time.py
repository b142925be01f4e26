"""Tests of `kerascnn.observe.step_time.measure_train_step` (format and pairing, not speed)."""

import keras
import pytest

from kerascnn.observe.step_time import measure_train_step


def _tiny(width):
    return keras.Sequential(
        [
            keras.Input((8, 8, 3)),
            keras.layers.Conv2D(width, 3),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(5),
        ]
    )


def test_interleaved_paired_ratios():
    a, b = _tiny(4), _tiny(8)
    weights = [w.copy() for w in b.get_weights()]
    result = measure_train_step({"a": a, "a2": a, "b": b}, batch_size=2, steps=2, repeats=3)
    assert result["names"] == ["a", "a2", "b"]
    assert all(len(result["times"][n]) == 3 for n in result["names"])
    assert all(t > 0 for n in result["names"] for t in result["times"][n])
    # Ratios are paired per round against the first model.
    assert result["ratios"]["a"] == [1.0, 1.0, 1.0]
    for t, ref, r in zip(result["times"]["b"], result["times"]["a"], result["ratios"]["b"]):
        assert r == pytest.approx(t / ref)
    # It trains: the weights moved.
    assert any((w != v).any() for w, v in zip(weights, b.get_weights()))


def test_bad_inputs():
    with pytest.raises(ValueError, match="models"):
        measure_train_step({})
    with pytest.raises(ValueError, match="repeats"):
        measure_train_step([_tiny(2)], repeats=0)
