"""Deprecated path of `kerascnn.tuning` (forwards for one release)."""

from kerascnn._deprecation import forward_module

forward_module(__name__, "kerascnn.tuning")
