"""Deprecated path of `kerascnn.callbacks.learn_drop.model_split` (forwards for one release).

Importing `kerascnn.model_split` warns with a `DeprecationWarning` and returns the
new module itself, so attribute access and monkeypatching act on it.
"""

from kerascnn._deprecation import forward_module

forward_module(__name__, "kerascnn.callbacks.learn_drop.model_split")
