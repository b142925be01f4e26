"""Architecture comparison under equal resources (`kerascnn compare`).

`compare(...)` trains a grid of variants of one zoo model (filter templates x
width multipliers x stage layouts x kernel decompositions) with one recipe,
measures parameters, MACs, peak memory and inference latency, and draws
accuracy-vs-resource Pareto plots: the templates paper's Tables 1-2 and
Figures 3-5, the 3DRF paper's Tables 3 and 6. Modules: `variants` (the grid
and its validation), `measure` (the measured resources), `runner` (training,
compare.json, the summary).

The package itself is callable: `kerascnn.compare(...)` is `compare(...)`.

Example:

```python
import kerascnn

grid = kerascnn.compare.variants.expand("vgg11_bn", templates=("base", "uniform"),
                                        widths=(0.5, 0.25))
print([v.name for v in grid])
```
"""

import sys
import types

from kerascnn.compare import measure, runner, variants  # noqa: F401
from kerascnn.compare.runner import compare  # noqa: F401
from kerascnn.compare.variants import Variant, expand, validate  # noqa: F401

__all__ = ["Variant", "compare", "expand", "measure", "runner", "validate", "variants"]


class _CallableModule(types.ModuleType):
    """`kerascnn.compare(...)` calls `kerascnn.compare.runner.compare(...)`."""

    def __call__(self, *args, **kwargs):
        return compare(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
