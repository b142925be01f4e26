"""kerascnn: cheaper-to-train, better-designed convolutional networks for Keras 3.

Modules:
    spec: plain-data architecture specs (stages of units) with a JSON round trip.
    templates: filter-distribution templates and the width multiplier.
    builder: spec -> Keras functional model, with deterministic layer names.
    zoo: VGG, ResNet, Inception, MobileNet and the compact GAP nets.
    summary: per-layer parameters, MACs and activation memory.
"""

__version__ = "0.1.0"

from kerascnn import builder, spec, templates, zoo  # noqa: E402,F401
