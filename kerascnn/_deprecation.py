"""Forwarding of module paths that moved (the restructure of kerascnn 0.2).

Example:

```python
# kerascnn/spec.py, the old path of kerascnn.arch.spec:
from kerascnn._deprecation import forward_module

forward_module(__name__, "kerascnn.arch.spec")
```
"""

import importlib
import sys
import warnings


def forward_module(old, new):
    """Makes module path `old` an alias of module `new`, with a DeprecationWarning.

    Args:
        old: the deprecated module's name (pass `__name__`).
        new: the name of the module that replaces it.
    """
    warnings.warn(
        f"`{old}` is deprecated and will be removed in the next release: import `{new}` instead.",
        DeprecationWarning,
        stacklevel=3,
    )
    module = importlib.import_module(new)
    sys.modules[old] = module
    parent, _, leaf = old.rpartition(".")
    setattr(sys.modules[parent], leaf, module)
