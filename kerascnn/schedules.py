"""Deprecated module path: `kerascnn.schedules` moved to `kerascnn.training.schedules` (kept for one release).

Importing this module warns with a `DeprecationWarning` and returns `kerascnn.training.schedules`
itself, so attribute access and monkeypatching act on the real module.
"""

from kerascnn._deprecation import forward_module

forward_module(__name__, "kerascnn.training.schedules")
