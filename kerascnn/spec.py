"""Deprecated path of `kerascnn.arch.spec` (forwards for one release)."""

from kerascnn._deprecation import forward_module

forward_module(__name__, "kerascnn.arch.spec")
