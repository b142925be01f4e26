"""Tests of kerascnn.callbacks.learn_drop.model_split (cut points, tail/head sub-models)."""

import keras
import numpy as np
import pytest

from kerascnn import zoo
from kerascnn.callbacks.learn_drop.model_split import conv_cut_points, split_model, sub_model


def chain_model():
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3, padding="same", name="c1")(inputs)
    x = keras.layers.ReLU(name="r1")(x)
    x = keras.layers.Conv2D(4, 3, padding="same", name="c2")(x)
    x = keras.layers.MaxPooling2D(name="p2")(x)
    x = keras.layers.Conv2D(4, 3, padding="same", name="c3")(x)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    return keras.Model(inputs, keras.layers.Dense(2, name="dense")(x), name="chain")


def test_resnet_cuts_at_block_boundaries():
    model = zoo.resnet18(input_shape=(16, 16, 3), width_multiplier=0.125, classes=3)
    plan = conv_cut_points(model)
    assert len(plan.convs) == 21  # 1 stem + 8 blocks x 2 + 4 projection shortcuts (zoo)
    # Only block outputs (and the stem) are cuts: inside a block the skip path crosses.
    assert plan.cuts == {
        1: "stem_conv1_relu",
        4: "stage1_block1_out",
        6: "stage1_block2_out",
        9: "stage2_block1_out",
        11: "stage2_block2_out",
        14: "stage3_block1_out",
        16: "stage3_block2_out",
        19: "stage4_block1_out",
    }
    assert "stem_conv1_relu" in plan.blocked["stage1_block1_0_conv"]
    assert plan.round_down(8) == 6 and plan.round_down(3, minimum=1) is None


def test_bottleneck_resnet_and_vgg_bn_groups():
    r50 = zoo.resnet50(input_shape=(32, 32, 3), width_multiplier=0.125, classes=3)
    cuts = conv_cut_points(r50).cuts
    assert cuts[1] == "stem_conv1_relu" and cuts[5] == "stage1_block1_out"
    assert all(c.endswith("_out") for k, c in cuts.items() if k > 1)
    vgg = zoo.vgg11_bn(input_shape=(32, 32, 3), width_multiplier=0.125, classes=3)
    # The cut after a conv takes its BN, ReLU and pool with it.
    assert conv_cut_points(vgg).cuts == {
        1: "stage1_pool",
        2: "stage2_pool",
        3: "stage3_conv1_relu",
        4: "stage3_pool",
        5: "stage4_conv1_relu",
        6: "stage4_pool",
        7: "stage5_conv1_relu",
    }


def test_split_shares_layers_and_composes():
    model = zoo.resnet18(input_shape=(16, 16, 3), width_multiplier=0.125, classes=3)
    tail, head = split_model(model, "stage2_block2_out")
    x = np.random.default_rng(0).normal(size=(2, 16, 16, 3)).astype("float32")
    np.testing.assert_allclose(head(tail(x)), model(x), rtol=1e-5, atol=1e-6)
    assert head.get_layer("stage3_block1_1_conv") is model.get_layer("stage3_block1_1_conv")
    assert tail.get_layer("stem_conv1_conv") is model.get_layer("stem_conv1_conv")
    names = {layer.name for layer in head.layers}
    assert "stem_conv1_conv" not in names and "predictions" in names
    middle = sub_model(model, "stage1_block2_out", "stage2_block2_out")
    mid_tail = sub_model(model, None, "stage1_block2_out")
    np.testing.assert_allclose(middle(mid_tail(x)), tail(x), rtol=1e-5, atol=1e-6)


def test_user_chain_and_sequential():
    plan = conv_cut_points(chain_model())
    assert plan.cuts == {1: "r1", 2: "p2"}
    seq = keras.Sequential(
        [
            keras.Input((8, 8, 3)),
            keras.layers.Conv2D(4, 3, name="s1"),
            keras.layers.Conv2D(4, 3, name="s2"),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(2),
        ]
    )
    tail, head = split_model(seq, "s1")
    x = np.ones((1, 8, 8, 3), "float32")
    np.testing.assert_allclose(head(tail(x)), seq(x), rtol=1e-6)


def test_clear_errors():
    inputs = keras.Input((8, 8, 3))
    a = keras.layers.Conv2D(4, 3, padding="same", name="a")(inputs)
    b = keras.layers.Conv2D(4, 3, padding="same", name="b")(a)
    skip = keras.layers.Concatenate(name="cat")([b, inputs])  # the input skips every cut
    out = keras.layers.Dense(2)(keras.layers.GlobalAveragePooling2D()(skip))
    with pytest.raises(ValueError, match="after layer 'a'.*'input.*' is also used by 'cat'"):
        conv_cut_points(keras.Model(inputs, out))
    with pytest.raises(ValueError, match="not a single-tensor cut point"):
        split_model(
            zoo.resnet18(input_shape=(16, 16, 3), width_multiplier=0.125), "stage1_block1_1_relu"
        )
    one = keras.Sequential([keras.Input((4, 4, 1)), keras.layers.Conv2D(1, 3)])
    with pytest.raises(ValueError, match="at least two convolution"):
        conv_cut_points(one)


def test_nested_functional_models_are_inlined():
    inner = keras.Sequential(
        [
            keras.Input((8, 8, 3)),
            keras.layers.Conv2D(4, 3, padding="same", name="in_c1"),
            keras.layers.ReLU(name="in_r1"),
            keras.layers.Conv2D(4, 3, padding="same", name="in_c2"),
        ],
        name="inner",
    )
    backbone_in = keras.Input((8, 8, 4))
    backbone = keras.Model(
        backbone_in,
        keras.layers.Conv2D(2, 3, padding="same", name="bb_c")(backbone_in),
        name="backbone",
    )
    inputs = keras.Input((8, 8, 3))
    x = backbone(inner(inputs))
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    model = keras.Model(inputs, keras.layers.Dense(2, name="dense")(x), name="outer")
    plan = conv_cut_points(model)
    assert plan.convs == ["in_c1", "in_c2", "bb_c"]
    assert plan.cuts == {1: "in_r1", 2: "in_c2"}
    tail, head = split_model(model, "in_r1")
    assert tail.get_layer("in_c1") is inner.get_layer("in_c1")  # shared objects
    x = np.random.default_rng(0).normal(size=(2, 8, 8, 3)).astype("float32")
    np.testing.assert_allclose(head(tail(x)), model(x), rtol=1e-5, atol=1e-6)
    # The user's model still saves and its layers' first outputs are unchanged.
    assert inner.get_layer("in_c1").output is inner.layers[0].output


def test_nested_subclassed_model_stays_opaque_and_top_level_subclassed_errors():
    class Sub(keras.Model):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.conv = keras.layers.Conv2D(2, 3, padding="same")

        def call(self, x):
            return self.conv(x)

    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3, padding="same", name="c0")(inputs)
    x = keras.layers.Conv2D(4, 3, padding="same", name="c1")(x)
    x = Sub(name="sub")(x)
    model = keras.Model(inputs, keras.layers.GlobalAveragePooling2D()(x))
    plan = conv_cut_points(model)
    assert plan.convs == ["c0", "c1"] and plan.cuts == {1: "c0"}
    with pytest.raises(ValueError, match="functional \\(or Sequential\\) model"):
        conv_cut_points(Sub(name="top"))
