"""Deprecated path of `kerascnn.observe.stability_logs` (forwards for one release)."""

from kerascnn._deprecation import forward_module

forward_module(__name__, "kerascnn.observe.stability_logs")
