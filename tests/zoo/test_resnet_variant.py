"""The keras.applications ResNet v1 layout (`variant="v1"`) against keras.applications.

`zoo.resnet50(variant="v1")` must be the same network as
`keras.applications.ResNet50` (stride on the first 1x1 of a downsampling
bottleneck, conv biases, BatchNorm epsilon 1.001e-5): equal parameters, equal
weight shapes and equal MACs at the builder benchmark's input size (64x64x3,
`benchmarks/bench_builder_throughput.py`), so that the benchmark compares like
with like. The default stays ResNet v1.5 (stride on the 3x3, no conv bias).
"""

import collections

import keras
import numpy as np
import pytest

from kerascnn import builder, zoo
from kerascnn.arch.spec import ArchSpec, Unit
from kerascnn.observe import summary
from kerascnn.zoo import resnet

BENCH_SHAPE = (64, 64, 3)


def _weight_shapes(model):
    return collections.Counter(tuple(w.shape) for w in model.weights)


def _bn_layers(model):
    return [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]


def test_v1_equals_keras_applications_resnet50():
    ours = zoo.resnet50(input_shape=BENCH_SHAPE, classes=10, variant="v1")
    ref = keras.applications.ResNet50(weights=None, input_shape=BENCH_SHAPE, classes=10)
    assert ours.count_params() == ref.count_params() == 23_608_202
    assert _weight_shapes(ours) == _weight_shapes(ref)
    assert summary.summarize(ours).macs == summary.summarize(ref).macs
    assert {(b.epsilon, b.momentum) for b in _bn_layers(ours)} == {(1.001e-5, 0.99)}
    assert {(b.epsilon, b.momentum) for b in _bn_layers(ref)} == {(1.001e-5, 0.99)}
    # ResNet v1: the stride is on the first 1x1 of a downsampling block, as in
    # keras.applications' conv3_block1_1_conv.
    assert ours.get_layer("stage2_block1_1_conv").strides == (2, 2)
    assert ours.get_layer("stage2_block1_2_conv").strides == (1, 1)
    assert ref.get_layer("conv3_block1_1_conv").strides == (2, 2)
    convs = [layer for layer in ours.layers if isinstance(layer, keras.layers.Conv2D)]
    assert all(layer.use_bias for layer in convs)
    # The estimate from the spec alone counts the biases too.
    spec = zoo.get_spec("resnet50", input_shape=BENCH_SHAPE, variant="v1")
    assert builder.estimate_cost(spec, BENCH_SHAPE, classes=10)["params"] == ours.count_params()


def test_default_stays_v1_5():
    # The default layouts are unchanged: stride on the 3x3, no conv bias, epsilon 1e-5.
    for variant in ("cifar", "imagenet"):
        spec = resnet.resnet_spec("resnet50", variant)
        assert spec.batch_norm_epsilon == 1e-5 and spec.batch_norm_momentum == 0.9
        assert all(u.option("stride_on") is None for _, _, u in spec.units())
        assert all(u.option("use_bias") is None for _, _, u in spec.units())
    model = zoo.resnet50(
        input_shape=BENCH_SHAPE, classes=10, variant="imagenet", width_multiplier=0.125
    )
    assert model.get_layer("stage2_block1_1_conv").strides == (1, 1)
    assert model.get_layer("stage2_block1_2_conv").strides == (2, 2)
    assert not model.get_layer("stage2_block1_2_conv").use_bias


def test_v1_spec_round_trips_and_keeps_its_layout_under_templates():
    spec = zoo.get_spec("resnet101", variant="v1", template="uniform", width_multiplier=0.5)
    assert ArchSpec.from_json(spec.to_json()) == spec
    assert spec.batch_norm_epsilon == 1.001e-5
    body = [u for _, _, u in spec.units()][1:]
    assert {u.option("stride_on") for u in body} == {"first"}
    assert {u.option("use_bias") for _, _, u in spec.units()} == {True}
    assert len(set(spec.filters())) == 1  # the template applied


def test_v1_model_serializes(tmp_path):
    model = zoo.resnet50(
        input_shape=(32, 32, 3),
        classes=3,
        variant="v1",
        width_multiplier=0.0625,
        stages=(1, 1, 1, 1),
    )
    x = np.random.default_rng(0).random((2, 32, 32, 3), dtype=np.float32)
    want = np.asarray(model(x, training=False))
    clone = keras.Model.from_config(model.get_config())
    clone.set_weights(model.get_weights())
    np.testing.assert_allclose(np.asarray(clone(x, training=False)), want, atol=1e-6)
    path = tmp_path / "v1.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    np.testing.assert_allclose(np.asarray(loaded(x, training=False)), want, atol=1e-6)
    assert loaded.get_layer("stage2_block1_1_conv").strides == (2, 2)
    assert loaded.get_layer("stage2_block1_1_bn").epsilon == 1.001e-5


@pytest.mark.slow
@pytest.mark.parametrize("name, keras_fn", [("resnet101", "ResNet101"), ("resnet152", "ResNet152")])
def test_v1_equals_keras_applications_deeper(name, keras_fn):
    ours = zoo.build(name, input_shape=BENCH_SHAPE, classes=10, variant="v1")
    ref = getattr(keras.applications, keras_fn)(weights=None, input_shape=BENCH_SHAPE, classes=10)
    assert ours.count_params() == ref.count_params()
    assert _weight_shapes(ours) == _weight_shapes(ref)
    assert summary.summarize(ours).macs == summary.summarize(ref).macs


def test_bad_stride_on_and_variant_name_the_argument():
    with pytest.raises(ValueError, match=r"stride_on.*Received: stride_on='last'"):
        Unit("bottleneck", 64, options={"stride_on": "last"})
    with pytest.raises(ValueError, match=r"Received: stride_on='first' \(kind='basic'\)"):
        Unit("basic", 64, options={"stride_on": "first"})
    with pytest.raises(ValueError, match=r"'resnet18' has the variants.*Received: variant='v1'"):
        zoo.resnet18(variant="v1")
    with pytest.raises(ValueError, match=r"Received: variant='v2'"):
        zoo.resnet50(variant="v2")
    with pytest.raises(ValueError, match=r"Received: variant='v1'"):
        resnet.resnet_spec("resnet34", "v1")
