"""Deprecated module path: `kerascnn.spec` moved to `kerascnn.arch.spec` (kept for one release).

Importing this module warns with a `DeprecationWarning` and returns `kerascnn.arch.spec`
itself, so attribute access and monkeypatching act on the real module.
"""

from kerascnn._deprecation import forward_module

forward_module(__name__, "kerascnn.arch.spec")
