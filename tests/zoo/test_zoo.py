"""Tests for `kerascnn.zoo`: every model, every template, and the builders' arguments.

Runtime budget: this file is the largest part of the default suite, so the
every-(model, template) matrix builds narrow models (`width_multiplier=1/16`,
the compact nets at full width) and runs one forward pass; the heavy checks
(one training step, `get_config`/`from_config`, `.keras` and `.weights.h5`
round trips) run once per model, with the template rotating across models so
that every template goes through them. The complete heavy matrix, and the
template matrix of the two deepest ResNets beyond "base", are marked `slow`.
Full-width models are only built for the parameter counts.
"""

import re
import time

import keras
import numpy as np
import pytest

from kerascnn import builder, zoo
from kerascnn.transforms import templates
from kerascnn.zoo import compact

MODELS = zoo.list_models()
# The two deepest nets are ResNet-50 with more repeated blocks; building
# them costs 2-3x ResNet-50, so in the default run they go through the
# template matrix under "base" only (and the heavy checks under a rotated
# template); their other templates run with the `slow` matrix.
DEEPEST = ("resnet101", "resnet152")


def _input_shape(name):
    return (28, 28, 1) if name.startswith("compact_mnist") else (32, 32, 3)


def _width(name):
    # The compact nets are already tiny; everything else is built at 1/16 width.
    return 1.0 if name.startswith("compact") else 0.0625


def _build(name, template="base", **kwargs):
    kwargs.setdefault("input_shape", _input_shape(name))
    kwargs.setdefault("width_multiplier", _width(name))
    kwargs.setdefault("classes", 10)
    return zoo.build(name, template=template, **kwargs)


def _batch(shape, n=2, seed=0):
    rng = np.random.default_rng(seed)
    return rng.random((n, *shape), dtype=np.float32)


def _trainable(model):
    return sum(int(np.prod(w.shape)) for w in model.trainable_weights)


# ------------------------------------------------------- every model x every template
@pytest.mark.parametrize(
    "name, template",
    [
        pytest.param(n, t, marks=[pytest.mark.slow] if n in DEEPEST and t != "base" else [])
        for n in MODELS
        for t in templates.TEMPLATES
    ],
)
def test_build_and_forward(name, template):
    model = _build(name, template)
    expected = zoo.get_spec(
        name,
        input_shape=_input_shape(name),
        template=template,
        width_multiplier=_width(name),
    )
    assert model.name == name
    assert model.input_shape == (None, *_input_shape(name))
    # The built model follows the spec: every stage output carries the
    # channels of the stage's last unit.
    for stage, layer_name in zip(expected.stages, builder.stage_output_names(expected)):
        if stage.units:
            channels = model.get_layer(layer_name).output.shape[-1]
            assert channels == stage.units[-1].output_channels, layer_name
    assert model.get_layer("predictions").units == 10
    out = np.asarray(model(_batch(_input_shape(name)), training=False))
    assert out.shape == (2, 10)
    assert np.all(np.isfinite(out))
    np.testing.assert_allclose(out.sum(axis=1), 1.0, rtol=1e-5)


# ------------------------------------------------------- heavy checks
def _train_config_save_load(name, template, tmp_path):
    shape = _input_shape(name)
    model = _build(name, template)
    x = _batch(shape)
    y = np.array([0, 1])
    # Tracing the training graph of a deep net costs 5-15 s on 2 CPU cores,
    # the (identical) eager step ~1 s: nets deeper than ResNet-18 train
    # eagerly; the VGGs, ResNet-18 and the compact nets take the compiled path.
    model.compile(
        optimizer=keras.optimizers.SGD(0.01),
        loss="sparse_categorical_crossentropy",
        run_eagerly=len(model.layers) > 80,
    )
    before = [w.numpy().copy() for w in model.trainable_weights]
    loss = model.train_on_batch(x, y)
    assert np.isfinite(loss)
    changed = [not np.array_equal(b, w.numpy()) for b, w in zip(before, model.trainable_weights)]
    assert any(changed), "one SGD step changed no weight"
    expected = np.asarray(model(x, training=False))

    # get_config / from_config: same architecture, same outputs with the same weights.
    clone = keras.Model.from_config(model.get_config())
    assert [layer.name for layer in clone.layers] == [layer.name for layer in model.layers]
    clone.set_weights(model.get_weights())
    np.testing.assert_allclose(np.asarray(clone(x, training=False)), expected, atol=1e-6)

    # .keras round trip.
    path = tmp_path / f"{name}.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert loaded.name == name
    np.testing.assert_allclose(np.asarray(loaded(x, training=False)), expected, atol=1e-6)


@pytest.mark.parametrize(
    "name, template",
    [(n, templates.TEMPLATES[i % len(templates.TEMPLATES)]) for i, n in enumerate(MODELS)],
)
def test_train_config_save_load(name, template, tmp_path):
    _train_config_save_load(name, template, tmp_path)


def test_heavy_checks_cover_every_template():
    rotated = {templates.TEMPLATES[i % len(templates.TEMPLATES)] for i in range(len(MODELS))}
    assert rotated == set(templates.TEMPLATES)


@pytest.mark.slow
@pytest.mark.parametrize("template", templates.TEMPLATES)
@pytest.mark.parametrize("name", MODELS)
def test_train_config_save_load_full_matrix(name, template, tmp_path):
    _train_config_save_load(name, template, tmp_path)


# ------------------------------------------------------- parameter counts (full width)
@pytest.mark.parametrize(
    "name, approx, exact",
    [
        # CIFAR models (32x32x3, 10 classes), trainable parameters. The
        # filter-template paper's Table 2 "Base" column gives 20.0M (VGG-19),
        # 23.5M (ResNet-50), 6.2M (Inception), 3.2M (MobileNet); ResNet-18 is
        # the standard CIFAR ResNet-18 (11.17M). `exact` pins our counts.
        ("vgg19_bn", 20.0e6, 20_035_018),
        ("resnet50", 23.5e6, 23_520_842),
        ("mobilenet", 3.2e6, 3_217_226),
        ("resnet18", 11.17e6, 11_173_962),
        ("inception", 6.2e6, 6_158_346),
    ],
)
def test_parameter_counts(name, approx, exact):
    model = zoo.build(name, input_shape=(32, 32, 3), classes=10)
    count = _trainable(model)
    assert count == pytest.approx(approx, rel=0.01)
    assert count == exact


@pytest.mark.parametrize("name", sorted(compact.PAPER_PARAMS))
def test_compact_parameter_counts_match_the_paper_exactly(name):
    # "Efficient CNN: nuts and bolts", Table 1 (MNIST nets, 28x28x1) and
    # Table 2 (CIFAR-10 nets, 32x32x3), 10 classes.
    model = zoo.build(name, input_shape=_input_shape(name), classes=10)
    assert _trainable(model) == compact.PAPER_PARAMS[name]


# ------------------------------------------------------- errors
def test_unknown_model():
    with pytest.raises(ValueError, match="Unknown model.*name='resnet51'"):
        zoo.build("resnet51")
    with pytest.raises(ValueError, match="Unknown model"):
        zoo.get_spec("alexnet")


def test_unknown_template():
    with pytest.raises(ValueError, match="Unknown template.*template='cubic'"):
        zoo.resnet18(template="cubic")


@pytest.mark.parametrize("width", [0, -1.0, float("nan"), True])
def test_bad_width_multiplier(width):
    with pytest.raises(ValueError, match="width_multiplier"):
        zoo.vgg11(width_multiplier=width)


@pytest.mark.parametrize("stages", [(), (2, 2, 2), (2, -1, 2, 2), (2, 0, 2, 2)])
def test_bad_stages(stages):
    with pytest.raises(ValueError, match="stages="):
        zoo.resnet18(stages=stages)


def test_input_too_small():
    with pytest.raises(ValueError, match=r"Input too small.*at least 32.*\(16, 16, 3\)"):
        zoo.vgg19(input_shape=(16, 16, 3))
    # The limit is exactly the downsampling (5 max-pools: 32).
    assert zoo.get_spec("vgg19").downsampling == 32


@pytest.mark.parametrize("classes", [0, -3, 2.5, True])
def test_bad_classes(classes):
    with pytest.raises(ValueError, match="classes"):
        zoo.compact_mnist_25k(classes=classes)


@pytest.mark.parametrize("weights", ["imagenet", "/nonexistent/weights.h5", 3])
def test_bad_weights(weights):
    with pytest.raises(ValueError, match="weights"):
        zoo.compact_mnist_25k(weights=weights)


def test_bad_variant_and_kwargs():
    with pytest.raises(ValueError, match="variant="):
        zoo.resnet18(variant="mnist")
    with pytest.raises(ValueError, match="no 'imagenet' variant"):
        zoo.compact_mnist_25k(variant="imagenet")
    with pytest.raises(TypeError, match="depth"):
        zoo.build("resnet18", depth=3)


def test_weights_file_loads(tmp_path):
    model = zoo.compact_mnist_1k5_dw()
    x = _batch((28, 28, 1))
    # Change the BN statistics and weights away from their initial values.
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    model.train_on_batch(x, np.array([3, 7]))
    path = tmp_path / "net.weights.h5"
    model.save_weights(path)
    expected = np.asarray(model(x, training=False))
    loaded = zoo.compact_mnist_1k5_dw(weights=str(path))
    np.testing.assert_allclose(np.asarray(loaded(x, training=False)), expected, atol=1e-6)


# ------------------------------------------------------- names, variants, top, inputs
@pytest.mark.parametrize("name", ["resnet18", "inception", "mobilenet", "compact_cifar_143k_dw"])
def test_deterministic_layer_names(name):
    first = [layer.name for layer in _build(name).layers]
    # A second build in the same session gets the same names (no "_1" suffixes).
    second = [layer.name for layer in _build(name).layers]
    assert first == second
    assert len(set(first)) == len(first)


def test_resnet_layer_names():
    names = {layer.name for layer in _build("resnet50").layers}
    assert {"stem_conv1_conv", "stage2_block1_1_conv", "stage2_block1_0_conv"} <= names
    assert {"stage2_block1_out", "stage4_block3_out", "predictions"} <= names


@pytest.mark.parametrize("name", ["resnet50", "mobilenet", "inception"])
def test_variant_auto(name):
    # ImageNet stem at 224x224, CIFAR stem at 32x32.
    big = zoo.build(name, input_shape=(224, 224, 3), width_multiplier=0.0625, include_top=False)
    small = zoo.build(name, input_shape=(32, 32, 3), width_multiplier=0.0625, include_top=False)
    big_stem = big.get_layer("stem_conv1_conv")
    small_stem = small.get_layer("stem_conv1_conv")
    assert big_stem.strides == (2, 2)
    assert small_stem.strides == (1, 1)
    assert big.output_shape[1:3] == (7, 7)  # /32: the ImageNet downsampling
    # CIFAR downsampling: /8 (ResNet), /16 (MobileNet), /4 (Inception).
    assert small.output_shape[1] == {"resnet50": 4, "mobilenet": 2, "inception": 8}[name]
    explicit = zoo.get_spec(name, variant="imagenet")
    assert zoo.get_spec(name, input_shape=(224, 224, 3)) == explicit
    assert zoo.get_spec(name, input_shape=(32, 32, 3)) == zoo.get_spec(name, variant="cifar")


@pytest.mark.parametrize(
    "pooling, shape", [(None, (None, 4, 4, 32)), ("avg", (None, 32)), ("max", (None, 32))]
)
def test_include_top_false(pooling, shape):
    model = zoo.resnet18(include_top=False, pooling=pooling, width_multiplier=0.0625)
    assert model.output_shape == shape
    out = np.asarray(model(_batch((32, 32, 3)), training=False))
    assert out.shape == (2, *shape[1:])
    if pooling == "max":
        assert np.all(out >= 0)  # after the last ReLU


def test_bad_pooling():
    with pytest.raises(ValueError, match="pooling='sum'"):
        zoo.resnet18(include_top=False, pooling="sum")


def test_input_tensor():
    inputs = keras.Input(shape=(32, 32, 3), name="images")
    model = zoo.mobilenet(input_tensor=inputs, width_multiplier=0.125, classes=7)
    assert model.inputs[0] is inputs
    assert model.output_shape == (None, 7)
    # A tensor made by other layers: the model starts at its source input.
    source = keras.Input(shape=(64, 64, 3))
    x = keras.layers.AveragePooling2D(2)(source)
    model = zoo.resnet18(input_tensor=x, width_multiplier=0.0625)
    assert model.inputs[0] is source
    assert model(_batch((64, 64, 3)), training=False).shape == (2, 10)


def test_classifier_activation_and_name():
    model = zoo.vgg11(width_multiplier=0.125, classifier_activation=None, name="logits_net")
    out = np.asarray(model(_batch((32, 32, 3)), training=False))
    assert model.name == "logits_net"
    assert not np.allclose(out.sum(axis=1), 1.0)


def test_stages_and_filters_arguments():
    spec = zoo.get_spec("resnet50", stages=(5, 5, 4, 2))
    assert spec.stage_depths() == (1, 5, 5, 4, 2)
    spec = zoo.get_spec("vgg11", filters=[8, 16, 16, 32, 32, 32, 32, 32], template="reverse")
    assert spec.filters() == [32, 32, 32, 32, 32, 16, 16, 8]
    with pytest.raises(ValueError, match="Expected 8 filter values"):
        zoo.get_spec("vgg11", filters=[8, 16])
    model = zoo.resnet50(stages=(1, 1, 1, 1), width_multiplier=0.0625)
    assert "stage3_block2_out" not in {layer.name for layer in model.layers}


def test_alpha_is_a_width_multiplier():
    assert zoo.get_spec("mobilenet", width_multiplier=0.5).filters() == [
        f // 2 for f in zoo.get_spec("mobilenet").filters()
    ]
    model = zoo.mobilenet(alpha=0.25, width_multiplier=0.5)
    assert model.get_layer("stage5_sep2_pw_conv").filters == 128


def test_aliases_and_list_models():
    assert zoo.get_spec("GoogLeNet") == zoo.get_spec("inception")
    assert zoo.get_spec("mobilenet-v1") == zoo.get_spec("mobilenet")
    assert zoo.list_models("resnet") == [
        "resnet101",
        "resnet152",
        "resnet18",
        "resnet34",
        "resnet50",
    ]
    assert len(MODELS) == len(set(MODELS)) == 23
    assert callable(zoo.resnet152)


@pytest.mark.parametrize("kernel", ["dw_pw", "dw_gpw", "dw_rpw"])
def test_kernel_decomposition_builds_and_shrinks(kernel):
    # The kernel decomposer's output builds, runs and has fewer parameters than
    # the standard-convolution model (3DRF paper, section 4.2).
    base = zoo.vgg11_bn(width_multiplier=0.25)
    model = zoo.vgg11_bn(width_multiplier=0.25, kernel=kernel)
    assert model.count_params() < base.count_params()
    out = model(np.zeros((2, 32, 32, 3), "float32"))
    assert out.shape == (2, 10)
    if kernel != "dw_pw":
        kinds = {type(layer).__name__ for layer in model.layers}
        assert kinds & {"GroupPointwiseConv2D", "RollingPointwiseConv2D"}


# --------------------------------------------------------------------------
# Up-front validation and size limits (issue #12).
# --------------------------------------------------------------------------
@pytest.mark.parametrize(
    "name, shape, kwargs",
    [
        ("compact_mnist_5k", (28, 28, 1), {}),
        ("compact_cifar_143k_dw", (32, 32, 3), {}),
        ("resnet18", (32, 32, 3), {"width_multiplier": 0.125}),
        ("resnet50", (64, 64, 3), {"width_multiplier": 0.125, "stages": (1, 2, 1, 1)}),
        ("vgg11_bn", (32, 32, 3), {"width_multiplier": 0.125}),
        ("mobilenet", (32, 32, 3), {"width_multiplier": 0.125}),
        ("inception", (32, 32, 3), {"width_multiplier": 0.125}),
        ("mobilenet", (32, 32, 3), {"width_multiplier": 0.25, "kernel": "dw_gpw"}),
    ],
)
def test_estimate_cost_matches_count_params(name, shape, kwargs):
    spec = zoo.get_spec(name, input_shape=shape, **kwargs)
    estimate = builder.estimate_cost(spec, shape, classes=7)
    model = zoo.build(name, input_shape=shape, classes=7, **kwargs)
    assert estimate["params"] == model.count_params()
    assert estimate["units"] == sum(len(s.units) for s in spec.stages)
    assert estimate["activation_bytes"] > 4 * np.prod(shape)


def test_huge_width_is_refused_before_building():
    start = time.perf_counter()
    with pytest.raises(ValueError, match=r"max_params.*Received: width_multiplier=1000000000\.0"):
        zoo.build("compact_mnist_5k", width_multiplier=1e9)
    assert time.perf_counter() - start < 2


def test_huge_depth_is_refused_before_expanding():
    start = time.perf_counter()
    with pytest.raises(ValueError, match=r"max_units.*Received: stages=\(1000000, 1, 1, 1\)"):
        zoo.build("resnet18", stages=(10**6, 1, 1, 1))
    with pytest.raises(ValueError, match="max_units"):
        zoo.get_spec("resnet18", stages=(10**6, 1, 1, 1))
    assert time.perf_counter() - start < 2


def test_size_limits_can_be_raised_and_lowered(monkeypatch):
    with pytest.raises(ValueError, match="limit of 1,000"):
        zoo.build("compact_mnist_5k", max_params=1000)
    monkeypatch.setenv("KERASCNN_MAX_PARAMS", "1000")
    with pytest.raises(ValueError, match="KERASCNN_MAX_PARAMS"):
        zoo.build("compact_mnist_5k")
    assert zoo.build("compact_mnist_5k", max_params=10_000).count_params() == 5838
    monkeypatch.setenv("KERASCNN_MAX_PARAMS", "lots")
    with pytest.raises(ValueError, match="KERASCNN_MAX_PARAMS='lots'"):
        zoo.build("compact_mnist_5k")
    monkeypatch.delenv("KERASCNN_MAX_PARAMS")
    with pytest.raises(ValueError, match="max_units"):
        zoo.build("resnet18", stages=(3, 1, 1, 1), max_units=5)
    assert len(zoo.get_spec("resnet18", stages=(3, 1, 1, 1), max_units=7).units()) == 7
    monkeypatch.setenv("KERASCNN_MAX_ACTIVATION_BYTES", "1000")
    with pytest.raises(ValueError, match="activations per example.*input_shape"):
        zoo.build("compact_mnist_5k")
    with pytest.raises(ValueError, match="max_params must be an integer >= 1"):
        zoo.build("compact_mnist_5k", max_params=0)


def test_width_that_rounds_a_layer_to_zero_is_refused():
    with pytest.raises(ValueError, match=r"smallest accepted value is 0\.0625.*1e-06"):
        zoo.build("compact_mnist_5k", width_multiplier=1e-6)
    # The smallest accepted value itself builds (8 x 0.0625 = 0.5 rounds to 1).
    model = zoo.build("compact_mnist_5k", width_multiplier=0.0625)
    assert model.get_layer("stage1_conv1_conv").filters == 1


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"classifier_activation": "nope"}, ValueError, "classifier_activation='nope'"),
        ({"classifier_activation": 3}, TypeError, "classifier_activation=3"),
        ({"include_top": "yes"}, TypeError, "include_top='yes'"),
        ({"name": 5}, TypeError, "name=5"),
        ({"input_tensor": np.zeros((1, 28, 28, 1))}, TypeError, "input_tensor"),
        ({"input_shape": "28,28,1"}, ValueError, "input_shape='28,28,1'"),
        ({"blur_first": 1}, TypeError, "blur_first=1"),
        ({"se_latent_channels": 0}, ValueError, "se_latent_channels=0"),
        ({"kernel_groups": 0}, ValueError, "kernel_groups=0"),
        ({"kernel_overlap": 1.0}, ValueError, "kernel_overlap=1.0"),
        ({"alpha": -1}, ValueError, "alpha=-1"),
        ({"squeeze_excite": None}, TypeError, "squeeze_excite=None"),
    ],
)
def test_every_build_argument_is_checked(kwargs, error, match):
    with pytest.raises(error, match=re.escape(match)):
        zoo.build("compact_mnist_5k", **kwargs)


def test_classifier_activation_none_and_callable():
    assert zoo.build("compact_mnist_5k", classifier_activation=None).count_params() == 5838
    model = zoo.build("compact_mnist_5k", classifier_activation=keras.activations.sigmoid)
    assert model.get_layer("predictions").activation is keras.activations.sigmoid
