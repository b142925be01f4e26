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


def test_resnet_cuts_at_every_conv_single_tensor_at_block_boundaries():
    model = zoo.resnet18(input_shape=(16, 16, 3), width_multiplier=0.125, classes=3)
    plan = conv_cut_points(model)
    assert len(plan.convs) == 21  # 1 stem + 8 blocks x 2 + 4 projection shortcuts (zoo)
    assert sorted(plan.cuts) == list(range(1, 21))  # every conv (no rounding down)
    # One tensor crosses at block outputs (and after the stem), as before.
    single = {k: c for k, c in plan.cuts.items() if c in plan.single}
    assert single == {
        1: "stem_conv1_relu",
        4: "stage1_block1_out",
        6: "stage1_block2_out",
        9: "stage2_block1_out",
        11: "stage2_block2_out",
        14: "stage3_block1_out",
        16: "stage3_block2_out",
        19: "stage4_block1_out",
    }
    # Inside a block: the main path and the shortcut (paper, Figure 3).
    assert plan.cuts[5] == "stage1_block2_1_relu"
    assert plan.crossing["stage1_block2_1_relu"] == ["stage1_block2_1_relu", "stage1_block1_out"]
    assert plan.crossing[plan.cuts[2]] == ["stage1_block1_0_bn", "stem_conv1_relu"]
    assert plan.blocked == {}
    assert plan.round_down(8) == 8 and plan.round_down(3, minimum=3) is None


def test_bottleneck_resnet_and_vgg_bn_groups():
    r50 = zoo.resnet50(input_shape=(32, 32, 3), width_multiplier=0.125, classes=3)
    plan = conv_cut_points(r50)
    cuts = plan.cuts
    assert cuts[1] == "stem_conv1_relu" and cuts[5] == "stage1_block1_out"
    assert sorted(cuts) == list(range(1, len(plan.convs)))
    single = [c for k, c in cuts.items() if k > 1 and c in plan.single]
    assert len(single) == 15 and all(c.endswith("_out") for c in single)  # 16 blocks - last
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


def test_input_skipping_every_cut_is_cached_and_clear_errors():
    inputs = keras.Input((8, 8, 3))
    a = keras.layers.Conv2D(4, 3, padding="same", name="a")(inputs)
    b = keras.layers.Conv2D(4, 3, padding="same", name="b")(a)
    skip = keras.layers.Concatenate(name="cat")([b, inputs])  # the input skips every cut
    out = keras.layers.Dense(2)(keras.layers.GlobalAveragePooling2D()(skip))
    model = keras.Model(inputs, out)
    plan = conv_cut_points(model)
    assert plan.cuts == {1: "a"} and plan.crossing["a"] == ["a", model.layers[0].name]
    tail, head = split_model(model, "a")
    x = np.random.default_rng(1).normal(size=(2, 8, 8, 3)).astype("float32")
    np.testing.assert_allclose(head(tail(x)), model(x), rtol=1e-5, atol=1e-6)
    resnet = zoo.resnet18(input_shape=(16, 16, 3), width_multiplier=0.125)
    with pytest.raises(ValueError, match="'nope' is not a cut point.*not a layer.*cut='nope'"):
        split_model(resnet, "nope")
    with pytest.raises(ValueError, match="is not a cut point.*output layer"):
        split_model(resnet, "predictions")
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


@pytest.mark.parametrize("builder", ["resnet18", "resnet50"])
def test_cut_inside_a_residual_block_outputs_main_path_and_shortcut(builder):
    # Learn&Drop paper, Figure 3 and section 3.4: a ResNet is cut inside a residual
    # block by saving "the features maps but also the output of the skip connections".
    kwargs = dict(input_shape=(16, 16, 3), width_multiplier=0.125, classes=3)
    model = getattr(zoo, builder)(**kwargs)
    plan = conv_cut_points(model)
    cut = plan.cuts[plan.convs.index("stage1_block2_1_conv") + 1]  # after the block's first conv
    assert cut == "stage1_block2_1_relu"
    tail, head = split_model(model, cut)
    assert len(tail.outputs) == 2 and len(head.inputs) == 2
    x = np.random.default_rng(0).normal(size=(2, 16, 16, 3)).astype("float32")
    main, shortcut = tail(x)
    np.testing.assert_allclose(
        shortcut, sub_model(model, None, "stage1_block1_out")(x), rtol=1e-6, atol=1e-6
    )
    assert main.shape[-1] == model.get_layer("stage1_block2_1_conv").filters
    np.testing.assert_allclose(head([main, shortcut]), model(x), rtol=1e-5, atol=1e-5)
    # Composition across cuts: block boundary -> inside a block -> next boundary.
    first = sub_model(model, None, "stage1_block1_out")
    into = sub_model(model, "stage1_block1_out", cut)
    out_of = sub_model(model, cut, "stage1_block2_out")
    np.testing.assert_allclose(
        out_of(into(first(x))), sub_model(model, None, "stage1_block2_out")(x), atol=1e-5
    )
    assert into.get_layer("stage1_block2_1_conv") is model.get_layer("stage1_block2_1_conv")


def test_user_model_still_saves_after_sub_models_with_a_pass_through(tmp_path):
    # `into` passes the shortcut through (it crosses both cuts): built by calling the
    # same layers again; the user's model must still save, load and predict the same.
    model = zoo.resnet18(input_shape=(16, 16, 3), width_multiplier=0.125, classes=3)
    into = sub_model(model, "stage1_block1_out", "stage1_block2_1_relu")
    assert len(into.inputs) == 1 and len(into.outputs) == 2
    x = np.random.default_rng(0).normal(size=(2, 16, 16, 3)).astype("float32")
    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")
    np.testing.assert_allclose(loaded(x), model(x), atol=1e-6)
    assert len(loaded.layers) == len(model.layers)
