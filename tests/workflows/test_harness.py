"""Tests of the shared test harness (`tests/harness.py`) itself.

The 2-replica runner is exercised by the MirroredStrategy tests of
`tests/callbacks/test_layer_stats.py`, `tests/callbacks/test_layer_dropping.py`,
`tests/training/test_sam.py` and `tests/training/test_train_distributed.py`.
"""

import keras
import numpy as np
import pytest
from harness import fit_with_callbacks, run_layer_test, run_serialization_test, tiny_model

from kerascnn.layers import GroupPointwiseConv2D


def test_run_layer_test_from_a_function():
    run_layer_test(
        GroupPointwiseConv2D,
        init_kwargs={"filters": 4, "groups": 2},
        input_shape=(2, 3, 3, 4),
        expected_output_shape=(2, 3, 3, 4),
        expected_num_trainable_weights=2,
        expected_num_non_trainable_weights=0,
        supports_masking=False,
    )
    with pytest.raises(AssertionError):
        run_layer_test(
            GroupPointwiseConv2D,
            init_kwargs={"filters": 4, "groups": 2},
            input_shape=(2, 3, 3, 4),
            expected_output_shape=(2, 3, 3, 5),
            supports_masking=False,
        )


def test_fit_with_callbacks_calls_the_callbacks(tiny_data):
    epochs = []
    callback = keras.callbacks.LambdaCallback(on_epoch_end=lambda e, logs: epochs.append(e))
    model, history = fit_with_callbacks([callback], data=tiny_data, epochs=3)
    assert epochs == [0, 1, 2] and len(history.history["loss"]) == 3
    assert model.get_layer("c1").kernel.shape == (3, 3, 1, 4)


def test_serialization_round_trip_in_a_fresh_process(tmp_path):
    inputs = keras.Input((8, 8, 1))
    x = tiny_model()(inputs)
    outputs = GroupPointwiseConv2D(2, groups=1, name="gpw")(keras.layers.Reshape((1, 1, 3))(x))
    model = keras.Model(inputs, outputs)
    x = np.random.default_rng(0).normal(size=(2, 8, 8, 1)).astype("float32")
    got = run_serialization_test(model, x, tmp_path)
    assert got.shape == (2, 1, 1, 2)
