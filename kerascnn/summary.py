"""Deprecated path of `kerascnn.observe.summary` (forwards for one release)."""

from kerascnn._deprecation import forward_module

forward_module(__name__, "kerascnn.observe.summary")
