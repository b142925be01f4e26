"""Deprecated path of `kerascnn.training.sam` (forwards for one release).

Importing `kerascnn.sam` warns with a `DeprecationWarning` and returns the
new module itself, so attribute access and monkeypatching act on it.
"""

from kerascnn._deprecation import forward_module

forward_module(__name__, "kerascnn.training.sam")
