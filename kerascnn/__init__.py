"""kerascnn: cheaper-to-train, better-designed convolutional networks for Keras 3.

Modules (imported lazily, so `import kerascnn` and `kerascnn --help` stay fast):
    spec: plain-data architecture specs (stages of units) with a JSON round trip.
    templates: filter-distribution templates and the width multiplier.
    builder: spec -> Keras functional model, with deterministic layer names.
    zoo: VGG, ResNet, Inception, MobileNet and the compact GAP nets.
    summary: per-layer parameters, MACs and activation memory.
    callbacks, layers, data, rf3d, organizer, decomposer, tuner, ...: see their docstrings.

Example:

>>> import kerascnn
>>> model = kerascnn.zoo.resnet18(input_shape=(32, 32, 3), classes=10)
"""

import importlib

__version__ = "0.1.0"

_SUBMODULES = (
    "builder",
    "callbacks",
    "data",
    "decomposer",
    "layers",
    "organizer",
    "plots",
    "rf3d",
    "sam",
    "schedules",
    "spec",
    "summary",
    "templates",
    "train",
    "tuner",
    "zoo",
)


def __getattr__(name):
    if name in _SUBMODULES:
        return importlib.import_module(f"kerascnn.{name}")
    raise AttributeError(f"module 'kerascnn' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + list(_SUBMODULES))
