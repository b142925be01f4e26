"""kerascnn: cheaper-to-train, better-designed convolutional networks for Keras 3.

`import kerascnn` registers every kerascnn object that a `.keras` file can
hold (layers, schedules: see `kerascnn._registration`), so a saved model
loads in a fresh process after `import keras, kerascnn`. That imports Keras
and TensorFlow; the `kerascnn` command line defers it until a command runs,
so `kerascnn --help` stays fast.

Packages, in the order of the flow (imported on first attribute access):
    arch: architectures as data (`ArchSpec`: stages of units), no Keras.
    transforms: spec -> spec, no Keras: filter templates (templates paper),
        3DRF, stage organizer and kernel decomposer (3DRF paper).
    layers: Keras layers (BlurPool, squeeze-excite, cutout, GPW/RPW).
    builder: spec -> Keras functional model, with deterministic layer names.
    zoo: VGG, ResNet, Inception, MobileNet and the compact GAP nets
        (efficient-CNN paper).
    callbacks: stability stopping (when-do-CNNs-stop-learning paper),
        Learn&Drop (layer dropping paper), layer metrics, SWA.
    data: datasets (shipped subset, MNIST, Fashion-MNIST, CIFAR-10, tfds).
    training: the main job (`kerascnn train`), its recipe, SAM, schedules.
    tuning: keras-tuner search spaces.
    compare: train a grid of architecture variants and compare accuracy against
        measured resources (`kerascnn compare`; `kerascnn.compare(...)` runs it).
    observe: summaries (params, MACs, memory), plots, stability logs.

Example:

>>> import kerascnn
>>> model = kerascnn.zoo.resnet18(input_shape=(32, 32, 3), classes=10)
"""

import importlib
import os
import sys

from kerascnn._warnings import NoEffectWarning  # noqa: F401

__version__ = "0.1.0"

#: The flow: arch -> transforms -> builder -> zoo -> training/tuning -> observe.
_SUBMODULES = (
    "arch",
    "transforms",
    "layers",
    "builder",
    "zoo",
    "callbacks",
    "data",
    "training",
    "tuning",
    "compare",
    "observe",
)
#: Old module paths, forwarding with a DeprecationWarning for one release.
_DEPRECATED = (
    "decomposer",
    "model_split",
    "organizer",
    "plots",
    "rf3d",
    "sam",
    "schedules",
    "spec",
    "stability_plot",
    "summary",
    "templates",
    "train",
    "tuner",
)


def __getattr__(name):
    if name in _SUBMODULES or name in _DEPRECATED:
        return importlib.import_module(f"kerascnn.{name}")
    raise AttributeError(f"module 'kerascnn' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + list(_SUBMODULES))


#: Set by the console-script launcher (`kerascnn_cli.py`) for one import.
_DEFER_ENV = "KERASCNN_CLI_DEFER_REGISTRATION"


def _started_as_module():
    """True while `python -m kerascnn` imports this package (before `__main__`)."""
    if sys.argv[:1] != ["-m"]:
        return False
    for index, token in enumerate(getattr(sys, "orig_argv", ())):
        if token == "-m":
            return sys.orig_argv[index + 1 : index + 2] == ["kerascnn"]
        if token.startswith("-m"):
            return token == "-mkerascnn"
    return False


def _defer_registration():
    """Whether the command line asked to defer `kerascnn._registration`.

    The launcher's environment flag is removed here, so that processes the
    command starts (and later imports) register as usual.
    """
    launcher = os.environ.pop(_DEFER_ENV, None) == "1"
    return launcher or _started_as_module()


if not _defer_registration():
    from kerascnn import _registration  # noqa: E402, F401
