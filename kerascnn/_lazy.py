"""A module stand-in that imports the real module on first attribute access.

Modules that only need Keras inside their functions (`kerascnn.builder`) use
it so that spec-only commands (`kerascnn list`, `rf3d`, `plot-filters`) do not
import TensorFlow.

Example:

>>> keras = LazyModule("keras")  # nothing imported yet
>>> keras.__name__  # doctest: +SKIP
'keras'
"""

import importlib


class LazyModule:
    """Stands for the module `name`, imported on first attribute access.

    Args:
        name: the module's full name, e.g. `"keras.layers"`.
    """

    def __init__(self, name):
        object.__setattr__(self, "_lazy_name", name)

    def __getattr__(self, attr):
        # Only called for attributes not found on the stand-in itself.
        return getattr(importlib.import_module(self._lazy_name), attr)

    def __setattr__(self, attr, value):
        setattr(importlib.import_module(self._lazy_name), attr, value)

    def __dir__(self):
        return dir(importlib.import_module(self._lazy_name))

    def __repr__(self):
        return f"<lazy module {self._lazy_name!r}>"
