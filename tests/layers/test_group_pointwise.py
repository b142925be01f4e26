"""Tests of GroupPointwiseConv2D (GPW-g, with and without channel shuffle)."""

import keras
import numpy as np
import pytest
from harness import TestCase

from kerascnn.layers import GroupPointwiseConv2D


@pytest.mark.parametrize("shuffle", [False, True])
def test_matches_masked_dense_convolution(shuffle):
    layer = GroupPointwiseConv2D(12, groups=3, shuffle=shuffle, bias_initializer="random_normal")
    x = np.random.default_rng(0).normal(size=(2, 3, 3, 9)).astype("float32")
    y = keras.ops.convert_to_numpy(layer(x))
    dense = layer.dense_kernel()
    ref = (
        np.einsum("bhwc,cf->bhwf", x, dense)
        + keras.ops.convert_to_numpy(layer.bias)[None, None, None, :][
            ..., np.arange(12).reshape(3, 4).T.ravel() if shuffle else slice(None)
        ]
    )
    np.testing.assert_allclose(y, ref, rtol=1e-4, atol=1e-4)
    # Block structure: every filter reads exactly 9 / 3 = 3 channels.
    assert ((dense != 0).sum(axis=0) == 3).all()
    if shuffle:
        # Consecutive output channels come from different groups.
        first = [int(np.flatnonzero(dense[:, f])[0]) // 3 for f in range(3)]
        assert first == [0, 1, 2]


def test_compute_macs_and_params():
    layer = GroupPointwiseConv2D(256, groups=4)
    layer.build((None, 16, 16, 256))
    assert layer.count_params() == 64 * 256 + 256
    assert layer.compute_macs((16, 16, 256), (16, 16, 256)) == 16 * 16 * 256 * 64


class GroupPointwiseLayerTest(TestCase):
    def test_run_layer_test(self):
        self.run_layer_test(
            GroupPointwiseConv2D,
            init_kwargs={"filters": 8, "groups": 2, "shuffle": True},
            input_shape=(2, 4, 4, 6),
            expected_output_shape=(2, 4, 4, 8),
            expected_num_trainable_weights=2,
            expected_num_non_trainable_weights=0,
            supports_masking=False,
        )


def test_keras_round_trip(tmp_path):
    inputs = keras.Input((4, 4, 8))
    outputs = GroupPointwiseConv2D(8, groups=4, shuffle=True, name="gpw")(inputs)
    model = keras.Model(inputs, outputs)
    model.save(tmp_path / "gpw.keras")
    loaded = keras.saving.load_model(tmp_path / "gpw.keras")
    x = np.random.default_rng(1).normal(size=(1, 4, 4, 8)).astype("float32")
    np.testing.assert_allclose(model.predict(x, verbose=0), loaded.predict(x, verbose=0))


def test_bad_arguments():
    with pytest.raises(ValueError, match="groups must divide filters"):
        GroupPointwiseConv2D(10, groups=4)
    with pytest.raises(ValueError, match="groups"):
        GroupPointwiseConv2D(8, groups=0)
    with pytest.raises(ValueError, match="groups must divide the input channels"):
        GroupPointwiseConv2D(8, groups=4)(np.zeros((1, 2, 2, 6), "float32"))
