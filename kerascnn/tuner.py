"""Deprecated path of `kerascnn.tuning` (forwards for one release).

Importing `kerascnn.tuner` warns with a `DeprecationWarning` and returns the
new module itself, so attribute access and monkeypatching act on it.
"""

from kerascnn._deprecation import forward_module

forward_module(__name__, "kerascnn.tuning")
