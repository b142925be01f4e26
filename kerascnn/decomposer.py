"""Deprecated path of `kerascnn.transforms.decomposer` (forwards for one release)."""

from kerascnn._deprecation import forward_module

forward_module(__name__, "kerascnn.transforms.decomposer")
