"""Saved models reload in a fresh process that imports only `keras` and `kerascnn`.

Issue #12: a `.keras` file holding kerascnn objects must load after
`import keras, kerascnn` alone (no `import kerascnn.layers`). Every zoo family
(one model each: `compact_cifar_143k`, `vgg11`, `resnet18`, `inception`,
`mobilenet`; tiny widths, 32x32x3 inputs, 3 classes) is built twice:

- model `a`: `blurpool` (min channels 1), `squeeze_excite`
  (`se_min_channels=1`), `kernel="dw_gpw"`; compiled with `SGD(OneCycle)`,
  trained with SAM (`kerascnn.training.sam.enable_sam`);
- model `b`: cutout (a `Cutout` layer in front of the zoo model, then a
  stride-1 `BlurPool2D`, which no zoo flag creates), `kernel="dw_rpw"`;
  compiled with `SGD(OneCycle)`, trained with the
  `StochasticWeightAveraging` callback (batch-norm pass included);

so every family appears with every technique flag (BlurPool, squeeze-excite,
GPW and RPW kernels, cutout) and with OneCycle, SAM and SWA, in 10 models
(family x flag, with the flags that can share a model sharing one). Each is
fit for one step and saved with `model.save`, its outputs on a fixed batch
kept; then ONE fresh subprocess (`import keras, kerascnn, numpy` only) loads
all of them, compiled, and compares outputs (atol 1e-6) and the optimizer's
learning-rate schedule.

Not every flag has a place in every family: the kernel decomposer replaces
only plain `conv` units (ResNet blocks, Inception modules and MobileNet's
separable units are kept), and MobileNet has no max-pool nor strided standard
convolution for BlurPool. Those models are built, saved and reloaded with the
flag anyway; `EXPECTED_LAYERS` records which kerascnn layers each must hold,
and `test_every_registered_class_is_covered` checks that the models together
hold every layer class kerascnn registers (a new registered class fails it
until a model here contains it).
"""

import json
import os
import re

import keras
import numpy as np
import pytest
from harness import run_python

import kerascnn
from kerascnn import zoo
from kerascnn.callbacks import StochasticWeightAveraging
from kerascnn.callbacks.swa import SWALearningRate
from kerascnn.layers import BlurPool2D, Cutout
from kerascnn.training.sam import enable_sam
from kerascnn.training.schedules import OneCycle

SHAPE = (32, 32, 3)
CLASSES = 3

#: family -> (zoo model, size arguments).
FAMILIES = {
    "compact": ("compact_cifar_143k", {"width_multiplier": 0.25}),
    "vgg": ("vgg11", {"width_multiplier": 0.125}),
    "resnet": ("resnet18", {"width_multiplier": 0.125, "stages": (1, 1, 1, 1)}),
    "inception": ("inception", {"width_multiplier": 0.125, "stages": (1, 1, 1)}),
    "mobilenet": ("mobilenet", {"width_multiplier": 0.125, "stages": (1, 1, 1, 1, 1)}),
}

#: Variant -> (zoo.build flags, Cutout in front, training procedure).
VARIANTS = {
    "a": (
        {
            "blurpool": True,
            "blurpool_min_channels": 1,
            "squeeze_excite": True,
            "se_min_channels": 1,
            "kernel": "dw_gpw",
        },
        False,
        "sam",
    ),
    "b": ({"kernel": "dw_rpw"}, True, "swa"),
}

#: Saved with the optimizer's learning rate inside an SWA phase.
SWA_PHASE = "compact_swa_phase"

#: Model -> kerascnn layer classes it must contain (see the module docstring).
EXPECTED_LAYERS = {
    "compact_a": {"BlurMaxPool2D", "SqueezeExcite", "GroupPointwiseConv2D"},
    "compact_b": {"Cutout", "BlurPool2D", "RollingPointwiseConv2D"},
    "vgg_a": {"BlurMaxPool2D", "SqueezeExcite", "GroupPointwiseConv2D"},
    "vgg_b": {"Cutout", "BlurPool2D", "RollingPointwiseConv2D"},
    "resnet_a": {"BlurConv2D", "SqueezeExcite"},
    "resnet_b": {"Cutout", "BlurPool2D"},
    "inception_a": {"BlurMaxPool2D", "SqueezeExcite"},
    "inception_b": {"Cutout", "BlurPool2D"},
    "mobilenet_a": {"SqueezeExcite"},
    "mobilenet_b": {"Cutout", "BlurPool2D"},
}

# Run in a fresh interpreter: imports keras, kerascnn and numpy only.
_LOADER = r"""
import json, sys
import numpy as np
import keras
import kerascnn

directory, expected_modules = sys.argv[1], json.loads(sys.argv[2])
out = {
    "registered_modules": [m for m in expected_modules if m in sys.modules],
    "registered": sorted(
        k.split(">", 1)[1] for k in keras.saving.get_custom_objects() if k.startswith("kerascnn>")
    ),
    "models": {},
}
refs = np.load(f"{directory}/refs.npz")
for name in json.loads(open(f"{directory}/names.json").read()):
    try:
        model = keras.saving.load_model(f"{directory}/{name}.keras")
        y = np.asarray(model(refs["x"], training=False))
        schedule = model.optimizer.get_config()["learning_rate"]
        out["models"][name] = {
            "max_abs_diff": float(np.max(np.abs(y - refs[name]))),
            "schedule": schedule.get("class_name") if isinstance(schedule, dict) else None,
        }
    except Exception as error:
        out["models"][name] = {"error": f"{type(error).__name__}: {error}"[:500]}
print(json.dumps(out))
"""


def _kerascnn_layer_classes(model):
    return {
        type(layer).__name__
        for layer in model._flatten_layers(include_self=False, recursive=True)
        if type(layer).__module__.startswith("kerascnn.")
    }


def _build(family, variant):
    name, size = FAMILIES[family]
    flags, cutout, _ = VARIANTS[variant]
    base = zoo.build(name, input_shape=SHAPE, classes=CLASSES, **size, **flags)
    if not cutout:
        return base
    inputs = keras.Input(SHAPE)
    # BlurPool2D (no zoo flag makes one) as a user would add it: blur, stride 1.
    x = BlurPool2D(strides=1)(Cutout(4, seed=1)(inputs))
    return keras.Model(inputs, base(x), name=f"{family}_{variant}")


def _fit_and_save(model, procedure, x, y, path):
    model.compile(
        optimizer=keras.optimizers.SGD(OneCycle(0.05, total_steps=10), momentum=0.9),
        loss="sparse_categorical_crossentropy",
        run_eagerly=True,  # one step: tracing would cost more than it saves
    )
    callbacks = []
    if procedure == "sam":
        enable_sam(model, rho=0.05)
    else:
        callbacks.append(StochasticWeightAveraging(start=0.0, data=x, batch_size=8))
    model.fit(x, y, batch_size=8, epochs=1, verbose=0, callbacks=callbacks)
    model.save(path)


@pytest.fixture(scope="module")
def saved_models(tmp_path_factory):
    directory = tmp_path_factory.mktemp("saved")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(8,) + SHAPE).astype("float32")
    y = rng.integers(0, CLASSES, size=8)
    refs, contents = {"x": x}, {}
    for family in FAMILIES:
        for variant, (_, _, procedure) in VARIANTS.items():
            name = f"{family}_{variant}"
            keras.utils.set_random_seed(1)
            model = _build(family, variant)
            contents[name] = _kerascnn_layer_classes(model)
            _fit_and_save(model, procedure, x, y, str(directory / f"{name}.keras"))
            refs[name] = np.asarray(model(x, training=False))
            keras.backend.clear_session()
    # A checkpoint written inside an SWA phase with `swa_lr` holds the
    # optimizer's SWALearningRate (wrapping the user's OneCycle).
    keras.utils.set_random_seed(1)
    model = _build("compact", "b")
    contents[SWA_PHASE] = _kerascnn_layer_classes(model) | {"SWALearningRate"}
    model.compile(
        optimizer=keras.optimizers.SGD(SWALearningRate(OneCycle(0.05, total_steps=10))),
        loss="sparse_categorical_crossentropy",
        run_eagerly=True,
    )
    model.fit(x, y, batch_size=8, epochs=1, verbose=0)
    model.save(str(directory / f"{SWA_PHASE}.keras"))
    refs[SWA_PHASE] = np.asarray(model(x, training=False))
    keras.backend.clear_session()
    np.savez(directory / "refs.npz", **refs)
    (directory / "names.json").write_text(json.dumps(sorted(contents)))
    return directory, contents


def _serializable_modules():
    """`kerascnn.*` modules whose source registers a Keras-serializable object."""
    package = os.path.dirname(kerascnn.__file__)
    found = []
    for root, _, files in os.walk(package):
        for file in files:
            if not file.endswith(".py"):
                continue
            path = os.path.join(root, file)
            with open(path, encoding="utf-8") as f:
                if not re.search(r"register_keras_serializable\(", f.read()):
                    continue
            module = os.path.relpath(path, os.path.dirname(package))[: -len(".py")]
            found.append(module.replace(os.sep, ".").removesuffix(".__init__"))
    return sorted(found)


@pytest.fixture(scope="module")
def fresh_load(saved_models):
    directory, _ = saved_models
    return run_python(
        _LOADER,
        directory,
        json.dumps(_serializable_modules()),
        env={"KERASCNN_CLI_DEFER_REGISTRATION": None},
        cwd=str(directory),
    )


def test_models_hold_the_technique_layers(saved_models):
    _, contents = saved_models
    for name, expected in EXPECTED_LAYERS.items():
        assert expected <= contents[name], (name, sorted(contents[name]))
    # No variant-b model got the variant-a flags and vice versa.
    for family in FAMILIES:
        assert not contents[f"{family}_b"] & {"BlurMaxPool2D", "BlurConv2D", "SqueezeExcite"}
        assert "Cutout" not in contents[f"{family}_a"]


def test_every_model_reloads_in_a_fresh_process(saved_models, fresh_load):
    _, contents = saved_models
    assert sorted(fresh_load["models"]) == sorted(contents)
    failures = {n: r["error"] for n, r in fresh_load["models"].items() if "error" in r}
    assert not failures, failures
    for name, result in fresh_load["models"].items():
        assert result["max_abs_diff"] <= 1e-6, (name, result)
        expected = "SWALearningRate" if name == SWA_PHASE else "OneCycle"
        assert result["schedule"] == expected, (name, result)


def test_import_kerascnn_registers_every_serializable_module(fresh_load):
    modules = _serializable_modules()
    assert "kerascnn.layers.blurpool" in modules and "kerascnn.training.schedules" in modules
    assert fresh_load["registered_modules"] == modules


def test_every_registered_class_is_covered(saved_models, fresh_load):
    _, contents = saved_models
    covered = set().union(*contents.values()) | {"OneCycle"}
    missing = set(fresh_load["registered"]) - covered
    assert not missing, f"registered kerascnn classes that no saved model here holds: {missing}"
