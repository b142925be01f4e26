"""Deprecated path of `kerascnn.callbacks.learn_drop.model_split` (forwards for one release)."""

from kerascnn._deprecation import forward_module

forward_module(__name__, "kerascnn.callbacks.learn_drop.model_split")
