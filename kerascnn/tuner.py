"""Deprecated module path: `kerascnn.tuner` moved to `kerascnn.tuning.space` (kept for one release).

Importing this module warns with a `DeprecationWarning` and returns `kerascnn.tuning.space`
itself, so attribute access and monkeypatching act on the real module.
"""

from kerascnn._deprecation import forward_module

forward_module(__name__, "kerascnn.tuning.space")
