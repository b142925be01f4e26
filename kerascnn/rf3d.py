"""Deprecated path of `kerascnn.transforms.rf3d` (forwards for one release).

Importing `kerascnn.rf3d` warns with a `DeprecationWarning` and returns the
new module itself, so attribute access and monkeypatching act on it.
"""

from kerascnn._deprecation import forward_module

forward_module(__name__, "kerascnn.transforms.rf3d")
