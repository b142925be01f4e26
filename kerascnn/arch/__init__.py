"""Architectures as data, no Keras: `ArchSpec` (stages of units) and its helpers.

The first step of kerascnn's flow: arch -> transforms -> builder -> zoo ->
training/tuning -> observe.
"""

from kerascnn.arch.spec import ArchSpec, Head, Stage, Unit  # noqa: F401
