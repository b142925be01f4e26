"""Tests for `kerascnn.builder`: layer names, stage outputs, spatial checks, heads."""

import keras
import numpy as np
import pytest

from kerascnn import builder
from kerascnn.arch.spec import ArchSpec, Head, Stage, Unit
from kerascnn.builder.model import build_model


def _spec(head="gap_dense", **head_kwargs):
    return ArchSpec(
        name="mini",
        family="custom",
        stages=(
            Stage("stem", (Unit("conv", 4, options={"templated": False}),)),
            Stage("stage1", (Unit("conv", 8), Unit("conv", 8)), pool="max"),
            Stage("stage2", (Unit("separable", 12, strides=2),)),
            Stage("stage3", (Unit("basic", 8, strides=2), Unit("bottleneck", 4))),
            Stage("stage4", (Unit("inception", (2, 2, 3, 2, 3, 2), options={"double3x3": True}),)),
        ),
        head=Head(head, **head_kwargs),
        batch_norm_momentum=0.8,
        batch_norm_epsilon=1e-3,
    )


def _names(model):
    return {layer.name for layer in model.layers}


def test_layer_names_and_filters():
    model = build_model(_spec(), input_shape=(16, 16, 3), classes=5)
    names = _names(model)
    expected = {
        "input",
        "stem_conv1_conv",
        "stem_conv1_bn",
        "stem_conv1_relu",
        "stage1_conv2_relu",
        "stage1_pool",
        "stage2_sep1_dw_conv",
        "stage2_sep1_dw_bn",
        "stage2_sep1_pw_conv",
        "stage3_block1_1_conv",
        "stage3_block1_2_bn",
        "stage3_block1_0_conv",  # projection shortcut (stride 2)
        "stage3_block1_out",
        "stage3_block2_3_conv",
        "stage3_block2_0_conv",  # projection: 8 -> 16 channels
        "stage4_mixed1_b3c_conv",  # double 3x3 branch
        "stage4_mixed1_b4_pool",
        "stage4_mixed1_concat",
        "head_gap",
        "predictions",
    }
    assert expected <= names
    assert model.get_layer("stage1_conv1_conv").filters == 8
    assert model.get_layer("stage3_block2_3_conv").filters == 16  # expansion 4
    assert model.get_layer("stage4_mixed1_concat").output.shape[-1] == 2 + 3 + 3 + 2
    bn = model.get_layer("stem_conv1_bn")
    assert bn.momentum == 0.8 and bn.epsilon == 1e-3
    # Convolutions before BatchNorm have no bias.
    assert model.get_layer("stem_conv1_conv").use_bias is False


def test_identity_shortcut_when_shapes_match():
    spec = ArchSpec("res", "resnet", (Stage("stage1", (Unit("basic", 8), Unit("basic", 8))),))
    names = _names(build_model(spec, input_shape=(8, 8, 8), classes=2))
    assert "stage1_block1_0_conv" not in names
    assert "stage1_block2_0_conv" not in names
    assert "stage1_block2_add" in names


def test_stage_output_names_exist_and_shapes():
    spec = _spec()
    model = build_model(spec, input_shape=(16, 16, 3), classes=5)
    outputs = builder.stage_output_names(spec)
    assert outputs == [
        "stem_conv1_relu",
        "stage1_pool",
        "stage2_sep1_pw_relu",
        "stage3_block2_out",
        "stage4_mixed1_concat",
    ]
    sizes = [model.get_layer(n).output.shape[1] for n in outputs]
    assert sizes == builder.spatial_trace(spec, 16) == [16, 8, 4, 2, 2]


def test_unit_output_name_without_activation_or_bn():
    stage = Stage("s1", (Unit("conv", 4, options={"activation": None}),))
    assert builder.unit_output_name(stage, 0, stage.units[0]) == "s1_conv1_bn"
    unit = Unit("conv", 4, options={"activation": None, "batch_norm": False})
    assert builder.unit_output_name(stage, 0, unit) == "s1_conv1_conv"
    unit = Unit("conv", 4, options={"activation": "gelu"})
    assert builder.unit_output_name(stage, 0, unit) == "s1_conv1_act"


def test_minimum_input_size():
    spec = _spec()
    assert spec.downsampling == 8
    # Only the valid 2x2 max-pool needs 2 pixels; strided "same" convolutions
    # round up (ceil division), so 2 -> 1 -> 1 -> 1.
    assert builder.minimum_input_size(spec) == 2
    assert builder.spatial_trace(spec, 2) == [2, 1, 1, 1, 1]
    with pytest.raises(ValueError, match=r"Input too small.*at least 2"):
        build_model(spec, input_shape=(1, 16, 3))
    build_model(spec, input_shape=(2, 2, 3), classes=2)
    valid = ArchSpec(
        "v", "custom", (Stage("s1", (Unit("conv", 4, options={"padding": "valid"}),), pool="max"),)
    )
    assert builder.minimum_input_size(valid) == 4  # 3x3 valid conv -> 2, pool 2 -> 1


@pytest.mark.parametrize(
    "head, extra",
    [
        ("flatten_dense", {"head_flatten"}),
        ("gap_dense", {"head_gap"}),
        ("gap_conv1x1", {"head_gap"}),
        ("vgg_imagenet", {"head_flatten", "head_fc1", "head_fc2"}),
        ("gap_dropout_dense", {"head_gap", "head_dropout"}),
    ],
)
def test_heads(head, extra):
    kwargs = {"dropout": 0.5} if head == "gap_dropout_dense" else {}
    model = build_model(_spec(head, **kwargs), input_shape=(16, 16, 3), classes=3)
    assert extra <= _names(model)
    assert model.get_layer("predictions").use_bias is (head != "gap_conv1x1")
    assert model.output_shape == (None, 3)
    if head == "vgg_imagenet":
        assert model.get_layer("head_fc1").units == 4096


def test_no_top_pooling_and_name():
    spec = _spec()
    model = build_model(spec, include_top=False, input_shape=(16, 16, 3), name="features")
    assert model.name == "features"
    assert model.output_shape == (None, 2, 2, 10)
    avg = build_model(spec, include_top=False, pooling="avg", input_shape=(16, 16, 3))
    assert avg.output_shape == (None, 10)
    # classes is not checked without a top.
    build_model(spec, include_top=False, classes=0, input_shape=(16, 16, 3))


def test_unknown_spatial_size():
    model = build_model(_spec(), input_shape=(None, None, 3), classes=4)
    x = np.zeros((1, 24, 40, 3), "float32")
    assert model(x, training=False).shape == (1, 4)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"input_shape": (16, 16)}, "input_shape must be a tuple"),
        ({"input_shape": (16, 0, 3)}, "positive integers"),
        ({"input_shape": (16, 16, None)}, "channel dimension"),
        ({"pooling": "sum"}, "pooling='sum'"),
        ({"classes": 0}, "classes=0"),
        ({"weights": "imagenet"}, "weights='imagenet'"),
    ],
)
def test_argument_errors(kwargs, match):
    kwargs.setdefault("input_shape", (16, 16, 3))
    with pytest.raises(ValueError, match=match):
        build_model(_spec(), **kwargs)


def test_spec_type_error():
    with pytest.raises(TypeError, match="ArchSpec"):
        build_model({"stages": []})


def test_input_tensor_single_input():
    inputs = keras.Input((16, 16, 3))
    model = build_model(_spec(), input_tensor=inputs, classes=2)
    assert model.inputs[0] is inputs
    assert model(np.zeros((1, 16, 16, 3), "float32")).shape == (1, 2)


def test_mixed_precision_logits_are_float32():
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_float16")
    try:
        model = build_model(_spec(), input_shape=(16, 16, 3), classes=2)
    finally:
        keras.config.set_dtype_policy(previous)
    assert model.get_layer("predictions").dtype_policy.compute_dtype == "float32"
    assert model.get_layer("stem_conv1_conv").dtype_policy.compute_dtype == "float16"


def test_budget_is_checked_before_any_layer_is_built():
    spec = _spec()
    cost = builder.estimate_cost(spec, (16, 16, 3), classes=2)
    model = build_model(spec, input_shape=(16, 16, 3), classes=2)
    assert cost["params"] == model.count_params()
    with pytest.raises(ValueError, match=r"max_params=\.\.\..*Received: input_shape=\(16, 16, 3\)"):
        build_model(spec, input_shape=(16, 16, 3), classes=2, max_params=cost["params"] - 1)
    with pytest.raises(ValueError, match="more than the limit of 1 "):
        build_model(spec, input_shape=(16, 16, 3), classes=2, max_units=1)
    with pytest.raises(ValueError, match="classifier_activation='nope'"):
        build_model(spec, input_shape=(16, 16, 3), classifier_activation="nope")
