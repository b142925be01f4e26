"""Tests of RollingPointwiseConv2D (RPW-g-o of the 3DRF paper, Listing 2).

Numerics: on every implementation path, outputs and gradients (input, compact
kernel, bias) equal those of a full 1x1 `Conv2D` whose kernel is the dense
kernel masked to the rolling windows.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf
from harness import dense_kernel_map, output_and_gradients, run_layer_test

from kerascnn.arch.channels import rolling_windows
from kerascnn.layers import RollingPointwiseConv2D


def _dense_reference(layer, dtype):
    ref = keras.layers.Conv2D(layer.filters, 1, dtype=dtype)
    ref.build((None, 1, 1, layer.dense_kernel().shape[0]))
    ref.set_weights([layer.dense_kernel()[None, None], keras.ops.convert_to_numpy(layer.bias)])
    return ref


def _check_against_dense(layer, x, training, tol):
    if not layer.built:
        layer.build(x.shape)
    ref = _dense_reference(layer, layer.dtype_policy.name)
    y, gx, gk, gb = output_and_gradients(layer, x, training)
    ry, rgx, rgk, rgb = output_and_gradients(ref, x, training)

    scaled = "bfloat16" in layer.dtype_policy.name

    def close(actual, desired):
        # bfloat16 only: rounding errors scale with the summed terms, not with a (cancelled)
        # result: on a CPU without bfloat16 instructions (AMD EPYC) one bfloat16 kernel-gradient
        # element came out -0.77 against the dense reference's -0.69, next to elements of 4.6.
        # float32 keeps the plain absolute tolerance.
        atol = tol * max(1.0, float(np.max(np.abs(desired)))) if scaled else tol
        np.testing.assert_allclose(actual, desired, rtol=tol, atol=atol)

    close(y, ry)
    close(gx, rgx)
    rows, cols = dense_kernel_map(layer)
    close(gk.reshape(-1), rgk[0, 0][rows, cols])
    close(gb, rgb)


def test_windows_follow_listing_2():
    # C=16, g=2 -> W=8; o=0.5 -> 4 shared channels, stride 4; windows wrap.
    w = rolling_windows(16, 5, 2, 0.5)
    assert w[0].tolist() == list(range(8))
    assert w[1].tolist() == list(range(4, 12))
    assert w[3].tolist() == [12, 13, 14, 15, 0, 1, 2, 3]
    assert w[4].tolist() == list(range(8))
    # o=0.33 of W=8 shares floor(2.64)=2 channels: stride 6.
    assert rolling_windows(16, 2, 2, 0.33)[1].tolist() == list(range(6, 14))


CASES = [
    # cin, filters, groups, overlap, implementation, expected path
    (16, 32, 2, 0.5, "split", "split"),  # 2 taps, D = 4 chunks of 4
    (32, 32, 4, 0.75, "split", "split"),  # 4 taps, 16 windows: 64 matmuls
    (10, 5, 5, 0.0, "split", "split"),  # a GPW with interleaved output
    (8, 16, 1, 0.5, "split", "split"),  # groups=1: windows wrap the whole axis
    (9, 9, 3, 0.67, "split", "split"),  # stride 1, 3 taps, one filter per window
    (32, 16, 2, 0.875, "split", "split"),  # 8 taps
    (16, 32, 2, 0.5, "auto", "dense"),  # too few channels for "split" to pay
    (24, 12, 4, 0.5, "auto", "dense"),  # 8 windows do not divide 12 filters
    (16, 16, 4, 0.33, "auto", "dense"),  # stride 3 does not divide width 4
    (16, 32, 2, 0.5, "sliced", "sliced"),
    (32, 32, 4, 0.75, "sliced", "sliced"),
    (9, 9, 3, 0.67, "sliced", "sliced"),
    (16, 16, 4, 0.33, "gather", "gather"),
    (12, 24, 4, 0.5, "gather", "gather"),  # 6 distinct windows, 4 filters each
    (8, 7, 2, 0.25, "gather", "gather"),
    (12, 10, 3, 0.0, "gather", "gather"),  # 3 windows do not divide 10 filters
    (16, 32, 2, 0.5, "dense", "dense"),
]


@pytest.mark.parametrize("training", [False, True])
@pytest.mark.parametrize("cin,filters,groups,overlap,impl,path", CASES)
def test_outputs_and_gradients_match_dense_conv(
    cin, filters, groups, overlap, impl, path, training
):
    layer = RollingPointwiseConv2D(
        filters, groups, overlap, implementation=impl, bias_initializer="random_normal"
    )
    x = np.random.default_rng(cin + filters).normal(size=(2, 3, 4, cin)).astype("float32")
    _check_against_dense(layer, x, training, 1e-5)
    assert layer._mode == path
    # Every filter reads exactly C / g channels: the mask has W nonzeros per column.
    assert ((layer.dense_kernel() != 0).sum(axis=0) == cin // groups).all()
    assert layer.count_params() == cin // groups * filters + filters


@pytest.mark.parametrize("impl", ["split", "sliced", "dense"])
def test_mixed_bfloat16_matches_dense_conv(impl):
    layer = RollingPointwiseConv2D(32, 4, 0.5, implementation=impl, dtype="mixed_bfloat16")
    x = np.random.default_rng(5).normal(size=(2, 3, 3, 16)).astype("float32")
    assert layer(x).dtype == "bfloat16" and layer.kernel.dtype == "float32"
    # bfloat16 keeps 8 bits of mantissa: agreement to its rounding, not 1e-5.
    _check_against_dense(layer, x, True, 3e-2)


@pytest.mark.parametrize("impl,matmuls", [("split", 16), ("sliced", 2)])
def test_tiled_paths_have_no_conv_and_follow_the_macs(impl, matmuls):
    layer = RollingPointwiseConv2D(64, 4, 0.5, implementation=impl)
    layer.build((None, 4, 4, 64))
    graph = tf.function(layer).get_concrete_function(tf.TensorSpec((None, 4, 4, 64))).graph
    ops = [op for op in graph.get_operations()]
    assert not any("Conv" in op.type for op in ops)
    # D = 8 chunks of 8 channels, 2 taps: "split" runs one (8, 8) matmul per
    # window and tap (16), "sliced" one batched matmul over the 8 chunks per
    # tap (2); both 2 * 8 * 8 * (64 / 8) = 1024 = W * filters MACs per pixel.
    found = [op for op in ops if "MatMul" in op.type]
    assert len(found) == matmuls
    macs = sum(int(np.prod(op.inputs[1].shape)) for op in found)
    assert macs == layer.compute_macs((1, 1, 64), (1, 1, 64)) == 16 * 64


@pytest.mark.parametrize(
    "cin,groups,overlap,path",
    [
        (256, 4, 0.5, "split"),  # saves (256 - 64) * 256 MACs per pixel
        (256, 2, 0.5, "split"),
        (128, 2, 0.5, "split"),  # (128 - 64) * 128 = 32 * (128 + 128): the crossover
        (64, 4, 0.5, "dense"),  # (64 - 16) * 64 < 32 * 128: copies cost more
        (256, 4, 0.33, "dense"),  # windows do not tile
        (512, 2, 0.875, "sliced"),  # 16 windows x 8 taps > 64 matmuls
    ],
)
def test_auto_picks_the_path(cin, groups, overlap, path):
    layer = RollingPointwiseConv2D(cin, groups, overlap)
    layer.build((None, 1, 1, cin))
    assert layer._mode == path


def test_compute_macs():
    layer = RollingPointwiseConv2D(256, groups=2, overlap=0.5)
    assert layer.compute_macs((16, 16, 256), (16, 16, 256)) == 16 * 16 * 256 * 128


def test_run_layer_test():
    run_layer_test(
        RollingPointwiseConv2D,
        init_kwargs={"filters": 8, "groups": 2, "overlap": 0.5},
        input_shape=(2, 4, 4, 8),
        expected_output_shape=(2, 4, 4, 8),
        expected_num_trainable_weights=2,
        expected_num_non_trainable_weights=0,
        supports_masking=False,
    )


def test_config_round_trip_and_keras_file(tmp_path):
    layer = RollingPointwiseConv2D(12, groups=4, overlap=0.33, name="rpw")
    config = layer.get_config()
    assert RollingPointwiseConv2D.from_config(config).get_config() == config
    inputs = keras.Input((4, 4, 8))
    model = keras.Model(inputs, layer(inputs))
    assert tuple(layer.kernel.shape) == (2, 12)
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


@pytest.mark.parametrize("impl", ["split", "sliced"])
def test_tiled_paths_refused_where_windows_do_not_tile(impl):
    layer = RollingPointwiseConv2D(16, groups=4, overlap=0.33, implementation=impl)
    with pytest.raises(ValueError, match=f"implementation=.{impl}."):
        layer.build((None, 2, 2, 16))
