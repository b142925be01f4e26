"""Deprecated path of `kerascnn.transforms.organizer` (forwards for one release).

Importing `kerascnn.organizer` warns with a `DeprecationWarning` and returns the
new module itself, so attribute access and monkeypatching act on it.
"""

from kerascnn._deprecation import forward_module

forward_module(__name__, "kerascnn.transforms.organizer")
