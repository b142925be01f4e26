"""Tests of RollingPointwiseConv2D (RPW-g-o of the 3DRF paper, Listing 2)."""

import keras
import numpy as np
import pytest
from harness import TestCase

from kerascnn.arch.channels import rolling_windows
from kerascnn.layers import RollingPointwiseConv2D


def _reference(layer, x):
    """A dense 1x1 convolution whose kernel is masked to the layer's windows."""
    return np.einsum("bhwc,cf->bhwf", x, layer.dense_kernel()) + keras.ops.convert_to_numpy(
        layer.bias
    )


def test_windows_follow_listing_2():
    # C=16, g=2 -> W=8; o=0.5 -> 4 shared channels, stride 4; windows wrap.
    w = rolling_windows(16, 5, 2, 0.5)
    assert w[0].tolist() == list(range(8))
    assert w[1].tolist() == list(range(4, 12))
    assert w[3].tolist() == [12, 13, 14, 15, 0, 1, 2, 3]
    assert w[4].tolist() == list(range(8))
    # o=0.33 of W=8 shares floor(2.64)=2 channels: stride 6.
    assert rolling_windows(16, 2, 2, 0.33)[1].tolist() == list(range(6, 14))


@pytest.mark.parametrize(
    "cin,filters,groups,overlap,impl",
    [
        (16, 32, 2, 0.5, "auto"),
        (16, 32, 2, 0.5, "dense"),
        (16, 16, 4, 0.33, "auto"),
        (16, 16, 4, 0.33, "gather"),
        (12, 10, 3, 0.0, "auto"),
        (8, 7, 2, 0.25, "gather"),
    ],
)
def test_matches_masked_dense_convolution(cin, filters, groups, overlap, impl):
    layer = RollingPointwiseConv2D(
        filters, groups, overlap, implementation=impl, bias_initializer="random_normal"
    )
    x = np.random.default_rng(0).normal(size=(2, 3, 3, cin)).astype("float32")
    y = keras.ops.convert_to_numpy(layer(x))
    np.testing.assert_allclose(y, _reference(layer, x), rtol=1e-4, atol=1e-4)
    # Every filter reads exactly C / g channels: the mask has W nonzeros per column.
    mask = layer.dense_kernel() != 0
    assert (mask.sum(axis=0) == cin // groups).all()
    assert layer.count_params() == cin // groups * filters + filters


def test_paths_agree_and_gradients():
    x = np.random.default_rng(1).normal(size=(2, 4, 4, 32)).astype("float32")
    a = RollingPointwiseConv2D(32, 4, 0.5, implementation="gather")
    b = RollingPointwiseConv2D(32, 4, 0.5, implementation="dense")
    a.build(x.shape)
    b.build(x.shape)
    b.set_weights(a.get_weights())
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(a(x)), keras.ops.convert_to_numpy(b(x)), atol=1e-4
    )
    import tensorflow as tf

    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(a(x) ** 2)
    grad = tape.gradient(loss, a.kernel)
    assert grad.shape == (8, 32) and float(tf.reduce_sum(tf.abs(grad))) > 0


def test_compute_macs():
    layer = RollingPointwiseConv2D(256, groups=2, overlap=0.5)
    assert layer.compute_macs((16, 16, 256), (16, 16, 256)) == 16 * 16 * 256 * 128


class RollingPointwiseLayerTest(TestCase):
    def test_run_layer_test(self):
        self.run_layer_test(
            RollingPointwiseConv2D,
            init_kwargs={"filters": 8, "groups": 2, "overlap": 0.5},
            input_shape=(2, 4, 4, 8),
            expected_output_shape=(2, 4, 4, 8),
            expected_num_trainable_weights=2,
            expected_num_non_trainable_weights=0,
            supports_masking=False,
        )


def test_keras_round_trip(tmp_path):
    inputs = keras.Input((4, 4, 8))
    outputs = RollingPointwiseConv2D(12, groups=4, overlap=0.33, name="rpw")(inputs)
    model = keras.Model(inputs, outputs)
    path = tmp_path / "rpw.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    x = np.random.default_rng(2).normal(size=(1, 4, 4, 8)).astype("float32")
    np.testing.assert_allclose(model.predict(x, verbose=0), loaded.predict(x, verbose=0))
    assert loaded.get_layer("rpw").get_config()["overlap"] == 0.33


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"filters": 8, "groups": 2, "overlap": 1.0}, "overlap"),
        ({"filters": 8, "groups": 2, "overlap": -0.1}, "overlap"),
        ({"filters": 8, "groups": 0}, "groups"),
        ({"filters": 0}, "filters"),
        ({"filters": 8, "implementation": "loop"}, "implementation"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        RollingPointwiseConv2D(**kwargs)


def test_groups_must_divide_channels():
    with pytest.raises(ValueError, match="groups must divide"):
        RollingPointwiseConv2D(8, groups=3)(np.zeros((1, 2, 2, 8), "float32"))
