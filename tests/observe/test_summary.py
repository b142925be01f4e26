import json
import math

import keras
import pytest
from keras import layers

import kerascnn
from kerascnn.observe import summary


def _model(input_shape, *layer_list):
    inputs = keras.Input(input_shape)
    x = inputs
    for layer in layer_list:
        x = layer(x)
    return keras.Model(inputs, x)


def _row(s, name):
    return next(r for r in s.layers if r.name == name)


# --------------------------------------------------------------------------
# Hand-computed small cases.
# --------------------------------------------------------------------------
def test_conv2d_by_hand():
    # 10x12x6 input, 8 filters of 3x5, stride 2, valid: output 4x4x8.
    s = summary.summarize(
        _model((10, 12, 6), layers.Conv2D(8, (3, 5), strides=2, padding="valid", name="c"))
    )
    row = _row(s, "c")
    assert row.output_shape == (None, 4, 4, 8)
    assert row.macs == 4 * 4 * 8 * (3 * 5 * 6)  # 11,520
    assert row.params == 3 * 5 * 6 * 8 + 8
    assert row.filters == 8
    assert row.activation_bytes == 4 * 4 * 8 * 4  # float32
    assert s.macs == 11520


def test_grouped_conv2d_by_hand():
    # 12 input channels in 3 groups: each output sees 4 input channels.
    s = summary.summarize(
        _model((8, 8, 12), layers.Conv2D(6, 3, padding="same", groups=3, name="g"))
    )
    assert _row(s, "g").macs == 8 * 8 * 6 * (3 * 3 * 4)  # 13,824
    assert _row(s, "g").params == 3 * 3 * 4 * 6 + 6


def test_pointwise_conv2d_by_hand():
    s = summary.summarize(_model((7, 7, 32), layers.Conv2D(64, 1, use_bias=False, name="pw")))
    assert _row(s, "pw").macs == 7 * 7 * 32 * 64


def test_depthwise_conv2d_by_hand():
    # 9x9x5, stride 2 same -> 5x5, depth multiplier 2 -> 10 channels.
    s = summary.summarize(
        _model(
            (9, 9, 5),
            layers.DepthwiseConv2D(3, strides=2, padding="same", depth_multiplier=2, name="dw"),
        )
    )
    row = _row(s, "dw")
    assert row.output_shape == (None, 5, 5, 10)
    assert row.macs == 5 * 5 * 5 * 2 * 9  # 2,250
    assert row.filters is None


def test_separable_conv2d_by_hand():
    # 8x8x4 valid 3x3 -> 6x6; depthwise 4*2 channels, then pointwise to 7.
    s = summary.summarize(
        _model((8, 8, 4), layers.SeparableConv2D(7, 3, depth_multiplier=2, name="sep"))
    )
    depthwise = 6 * 6 * 8 * 9  # 2,592
    pointwise = 6 * 6 * 8 * 7  # 2,016
    assert _row(s, "sep").macs == depthwise + pointwise
    assert _row(s, "sep").filters == 7


def test_dense_by_hand():
    s = summary.summarize(_model((20,), layers.Dense(5, name="d")))
    assert _row(s, "d").macs == 100
    assert _row(s, "d").filters == 5
    # A Dense applied to a sequence: one matrix-vector product per row.
    s = summary.summarize(_model((3, 20), layers.Dense(5, name="d")))
    assert _row(s, "d").macs == 300


def test_pooling_bn_and_zero_cost_layers():
    inputs = keras.Input((8, 8, 4))
    x = layers.BatchNormalization(name="bn")(inputs)
    y = layers.Activation("relu", name="act")(x)
    x = layers.Add(name="add")([x, y])
    x = layers.MaxPooling2D(2, name="pool")(x)
    x = layers.Dropout(0.5, name="drop")(x)
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    s = summary.summarize(keras.Model(inputs, x))
    for name in ("bn", "act", "add", "drop"):
        assert _row(s, name).macs == 0, name
    assert _row(s, "pool").macs == 4 * 4 * 4 * (2 * 2)  # output elements x window
    assert _row(s, "gap").macs == 4 * 4 * 4  # the input elements
    # BN: gamma/beta trainable, moving mean/variance not.
    assert _row(s, "bn").params == 16
    assert _row(s, "bn").trainable_params == 8
    assert s.params == 16 and s.trainable_params == 8 and s.non_trainable_params == 8
    assert s.layers[0].class_name == "InputLayer"
    assert s.layers[0].activation_bytes == 8 * 8 * 4 * 4  # float32 input


class _CountedConv(layers.Layer):
    """A custom layer following the compute_macs protocol."""

    def __init__(self, filters, **kwargs):
        super().__init__(**kwargs)
        self.filters = filters
        self.conv = layers.Conv2D(filters, 1)

    def call(self, x):
        return self.conv(x)

    def compute_macs(self, input_shape, output_shape):
        # Deliberately not the Conv2D count, to see the protocol wins.
        assert input_shape[0] == 1 and output_shape[0] == 1
        return 7 * output_shape[-1]


class _Wrapper(layers.Layer):
    """Unknown layer with a known sublayer and no compute_macs."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.conv = layers.Conv2D(3, 3, padding="same")

    def call(self, x):
        return self.conv(x)


class _Opaque(layers.Layer):
    """Unknown layer with its own weight and no rule."""

    def build(self, input_shape):
        self.scale = self.add_weight(shape=(input_shape[-1],), initializer="ones")

    def call(self, x):
        return x * self.scale


def test_custom_layers_protocol_sublayers_and_notes():
    inputs = keras.Input((6, 6, 2))
    x = _CountedConv(5, name="counted")(inputs)
    x = _Wrapper(name="wrapper")(x)
    x = _Opaque(name="opaque")(x)
    s = summary.summarize(keras.Model(inputs, x))
    assert _row(s, "counted").macs == 35
    assert _row(s, "counted").filters == 5
    assert _row(s, "wrapper").macs == 6 * 6 * 3 * (3 * 3 * 5)
    assert _row(s, "wrapper").note == ""
    assert _row(s, "opaque").macs == 0
    assert "not counted" in _row(s, "opaque").note
    assert "* opaque" in summary.format_table(s)


def test_nested_model_counts_its_layers():
    inner = _model((8, 8, 3), layers.Conv2D(4, 3, padding="same"))
    outer = _model((8, 8, 3), inner, layers.GlobalAveragePooling2D(), layers.Dense(2))
    s = summary.summarize(outer)
    assert s.macs == 8 * 8 * 4 * 27 + 8 * 8 * 4 + 4 * 2
    assert s.params == outer.count_params()


def test_shared_layer_counts_every_call_and_weights_once():
    inputs = keras.Input((4,))
    dense = layers.Dense(4, name="shared")
    outputs = dense(dense(inputs))
    s = summary.summarize(keras.Model(inputs, outputs))
    assert _row(s, "shared").macs == 2 * 16
    assert s.params == 20


def test_variable_input_shape_is_a_clear_error():
    model = _model((None, None, 3), layers.Conv2D(4, 3))
    with pytest.raises(ValueError, match="not fully defined"):
        summary.summarize(model)
    with pytest.raises(TypeError, match="keras.Model"):
        summary.summarize(layers.Dense(3))


def test_table_and_dict():
    model = kerascnn.zoo.vgg11(input_shape=(32, 32, 3), classes=10, width_multiplier=0.125)
    s = summary.summarize(model)
    assert s.params == model.count_params()
    table = summary.format_table(s)
    assert f"{s.params:,}" in table and f"{s.macs:,}" in table
    assert "stage1_conv1_conv (Conv2D)" in table
    data = json.loads(json.dumps(summary.to_dict(s)))
    assert data["model"] == model.name
    assert data["totals"]["params"] == model.count_params()
    assert data["totals"]["macs"] == sum(r["macs"] for r in data["layers"])
    assert len(data["layers"]) == len(model.layers)
    assert data["layers"][1]["output_shape"] == [None, 32, 32, 8]


# --------------------------------------------------------------------------
# Published figures (224x224x3, 1000 classes, ImageNet variants).
# --------------------------------------------------------------------------
@pytest.mark.parametrize(
    "name, published",
    [
        # torchvision ResNet50_Weights.IMAGENET1K_V1 (v1.5, stride on the 3x3):
        # 4.09 GFLOPS (multiply-adds), also ptflops' figure for conv/fc.
        ("resnet50", 4.09e9),
        # torchvision VGG16_Weights.IMAGENET1K_V1: 15.47 GFLOPS (multiply-adds).
        ("vgg16", 15.47e9),
        # MobileNet paper (Howard et al., 2017), Table 8: 1.0 MobileNet-224,
        # 569 million mult-adds.
        ("mobilenet", 569e6),
    ],
)
def test_published_macs(name, published):
    model = kerascnn.zoo.build(
        name, include_top=True, classes=1000, input_shape=(224, 224, 3), variant="imagenet"
    )
    s = summary.summarize(model)
    assert abs(s.macs - published) / published < 0.03, (name, s.macs)
    assert s.params == model.count_params()
    expected_trainable = sum(math.prod(w.shape) for w in model.trainable_weights)
    assert s.trainable_params == expected_trainable


def test_layers_shared_with_a_sub_model_are_counted_once():
    # A sub-model that reuses the model's layers adds calls to those layers;
    # summarize(model) must count only the model's own calls.
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3, padding="same", name="c1")(inputs)
    outputs = keras.layers.Conv2D(4, 3, padding="same", name="c2")(x)
    model = keras.Model(inputs, outputs)
    before = summary.summarize(model).macs
    head_in = keras.Input((8, 8, 4))
    keras.Model(head_in, model.get_layer("c2")(head_in))  # shares c2
    assert summary.summarize(model).macs == before == 8 * 8 * 4 * 9 * (3 + 4)
