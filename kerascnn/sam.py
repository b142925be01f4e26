"""Deprecated module path: `kerascnn.sam` moved to `kerascnn.training.sam` (kept for one release).

Importing this module warns with a `DeprecationWarning` and returns `kerascnn.training.sam`
itself, so attribute access and monkeypatching act on the real module.
"""

from kerascnn._deprecation import forward_module

forward_module(__name__, "kerascnn.training.sam")
