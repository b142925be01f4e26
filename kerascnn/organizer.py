"""Deprecated module path: `kerascnn.organizer` moved to `kerascnn.transforms.organizer` (kept for one release).

Importing this module warns with a `DeprecationWarning` and returns `kerascnn.transforms.organizer`
itself, so attribute access and monkeypatching act on the real module.
"""

from kerascnn._deprecation import forward_module

forward_module(__name__, "kerascnn.transforms.organizer")
