"""Tests of GroupPointwiseConv2D (GPW-g, with and without channel shuffle).

Numerics: outputs and gradients (input and compact kernel) equal those of a
full 1x1 `Conv2D` whose kernel is the block-diagonal (shuffled) dense kernel.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf
from harness import dense_kernel_map, output_and_gradients, run_layer_test

from kerascnn.layers import GroupPointwiseConv2D


def _perm(layer):
    """Output channel `p` of the layer is channel `perm[p]` of the grouped conv."""
    if not layer.shuffle:
        return np.arange(layer.filters)
    return np.arange(layer.filters).reshape(layer.groups, -1).T.ravel()


def _shuffled_bias(layer):
    return keras.ops.convert_to_numpy(layer.bias)[_perm(layer)]


def _dense_reference(layer, dtype):
    """A 1x1 Conv2D with the layer's dense kernel and its (shuffled) bias."""
    ref = keras.layers.Conv2D(layer.filters, 1, dtype=dtype)
    ref.build((None, 1, 1, layer.dense_kernel().shape[0]))
    ref.set_weights([layer.dense_kernel()[None, None], _shuffled_bias(layer)])
    return ref


CASES = [
    # cin, filters, groups, shuffle
    (16, 32, 4, False),
    (16, 32, 4, True),
    (12, 6, 3, True),
    (8, 8, 1, False),
    (8, 8, 8, True),  # one input and one output channel per group
    (24, 16, 2, False),
]


@pytest.mark.parametrize("training", [False, True])
@pytest.mark.parametrize("cin,filters,groups,shuffle", CASES)
def test_outputs_and_gradients_match_dense_conv(cin, filters, groups, shuffle, training):
    layer = GroupPointwiseConv2D(filters, groups, shuffle=shuffle, bias_initializer="random_normal")
    x = np.random.default_rng(cin + groups).normal(size=(2, 3, 4, cin)).astype("float32")
    layer.build(x.shape)
    ref = _dense_reference(layer, "float32")
    y, gx, gk, gb = output_and_gradients(layer, x, training)
    ry, rgx, rgk, rgb = output_and_gradients(ref, x, training)
    np.testing.assert_allclose(y, ry, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(gx, rgx, rtol=1e-5, atol=1e-5)
    rows, cols = dense_kernel_map(layer)
    np.testing.assert_allclose(gk.reshape(-1), rgk[0, 0][rows, cols], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(gb, rgb[np.argsort(_perm(layer))], rtol=1e-5, atol=1e-5)
    # Block structure: every filter reads exactly cin / groups channels.
    assert ((layer.dense_kernel() != 0).sum(axis=0) == cin // groups).all()


def test_mixed_bfloat16_matches_dense_conv():
    layer = GroupPointwiseConv2D(32, 4, shuffle=True, dtype="mixed_bfloat16")
    x = np.random.default_rng(3).normal(size=(2, 3, 3, 16)).astype("float32")
    layer.build(x.shape)
    ref = _dense_reference(layer, "mixed_bfloat16")
    y, gx, gk, _ = output_and_gradients(layer, x, True)
    ry, rgx, rgk, _ = output_and_gradients(ref, x, True)
    assert layer(x).dtype == "bfloat16" and layer.kernel.dtype == "float32"
    # bfloat16 keeps 8 bits of mantissa: agreement to its rounding, not 1e-5.
    np.testing.assert_allclose(y, ry, rtol=2e-2, atol=2e-2)
    np.testing.assert_allclose(gx, rgx, rtol=2e-2, atol=2e-2)
    rows, cols = dense_kernel_map(layer)
    np.testing.assert_allclose(gk.reshape(-1), rgk[0, 0][rows, cols], rtol=3e-2, atol=3e-2)


def test_no_conv_op_in_the_graph():
    # Never TF's grouped Conv2D (several times slower than a dense PW on CPU).
    layer = GroupPointwiseConv2D(16, 4)
    layer.build((None, 4, 4, 8))
    graph = tf.function(layer).get_concrete_function(tf.TensorSpec((None, 4, 4, 8))).graph
    kinds = {op.type for op in graph.get_operations()}
    assert not any("Conv" in kind for kind in kinds), kinds
    assert any("MatMul" in kind for kind in kinds), kinds


def test_compute_macs_and_params():
    layer = GroupPointwiseConv2D(256, groups=4)
    layer.build((None, 16, 16, 256))
    assert layer.count_params() == 64 * 256 + 256
    assert tuple(layer.kernel.shape) == (1, 1, 64, 256)
    assert layer.compute_macs((16, 16, 256), (16, 16, 256)) == 16 * 16 * 256 * 64


def test_run_layer_test():
    run_layer_test(
        GroupPointwiseConv2D,
        init_kwargs={"filters": 8, "groups": 2, "shuffle": True},
        input_shape=(2, 4, 4, 6),
        expected_output_shape=(2, 4, 4, 8),
        expected_num_trainable_weights=2,
        expected_num_non_trainable_weights=0,
        supports_masking=False,
    )


def test_config_round_trip_and_keras_file(tmp_path):
    layer = GroupPointwiseConv2D(8, groups=4, shuffle=True, name="gpw")
    config = layer.get_config()
    assert GroupPointwiseConv2D.from_config(config).get_config() == config
    inputs = keras.Input((4, 4, 8))
    model = keras.Model(inputs, layer(inputs))
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
