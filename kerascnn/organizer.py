"""Deprecated path of `kerascnn.transforms.organizer` (forwards for one release)."""

from kerascnn._deprecation import forward_module

forward_module(__name__, "kerascnn.transforms.organizer")
