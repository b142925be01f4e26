"""Deprecated module path: `kerascnn.stability_plot` moved to `kerascnn.observe.stability_logs` (kept for one release).

Importing this module warns with a `DeprecationWarning` and returns `kerascnn.observe.stability_logs`
itself, so attribute access and monkeypatching act on the real module.
"""

from kerascnn._deprecation import forward_module

forward_module(__name__, "kerascnn.observe.stability_logs")
