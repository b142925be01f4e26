"""Deprecated module path: `kerascnn.rf3d` moved to `kerascnn.transforms.rf3d` (kept for one release).

Importing this module warns with a `DeprecationWarning` and returns `kerascnn.transforms.rf3d`
itself, so attribute access and monkeypatching act on the real module.
"""

from kerascnn._deprecation import forward_module

forward_module(__name__, "kerascnn.transforms.rf3d")
