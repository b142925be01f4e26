"""Deprecated module path: `kerascnn.model_split` moved to `kerascnn.callbacks.learn_drop.model_split` (kept for one release).

Importing this module warns with a `DeprecationWarning` and returns `kerascnn.callbacks.learn_drop.model_split`
itself, so attribute access and monkeypatching act on the real module.
"""

from kerascnn._deprecation import forward_module

forward_module(__name__, "kerascnn.callbacks.learn_drop.model_split")
