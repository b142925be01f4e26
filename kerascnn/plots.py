"""Deprecated module path: `kerascnn.plots` moved to `kerascnn.observe.plots` (kept for one release).

Importing this module warns with a `DeprecationWarning` and returns `kerascnn.observe.plots`
itself, so attribute access and monkeypatching act on the real module.
"""

from kerascnn._deprecation import forward_module

forward_module(__name__, "kerascnn.observe.plots")
