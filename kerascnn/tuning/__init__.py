"""Architecture search with keras-tuner over kerascnn's zoo and its techniques.

- `kerascnn.tuning.space`: `CNNHyperModel`, the search space (zoo model,
  template, width, stage layout with the 3DRF organizer, kernel type,
  efficiency flags, optimizer); `CNNHyperModel.spec_for(hp)` gives the spec of
  a point through the one transform pipeline.
- `kerascnn.tuning.tuners`: `make_tuner` (random search, Hyperband, Bayesian
  optimization).
- `kerascnn.tuning.search`: `search`, `SearchResult`, `print_best`.

Example:

>>> from kerascnn import tuning
>>> result = tuning.search(x, y, validation_data=(xv, yv), input_shape=(28, 28, 1),
...                        classes=10, families=["compact"], max_trials=6, epochs=2)
>>> tuning.print_best(result.tuner, 3)
"""

from kerascnn.tuning.search import (
    SearchResult,
    check_deepcopyable,
    format_best,
    print_best,
    search,
    trial_report,
)
from kerascnn.tuning.space import (
    DEFAULT_FAMILIES,
    DEFAULT_MODELS,
    EFFICIENCY_FLAGS,
    KERNEL_TYPES,
    LAYOUTS,
    OPTIMIZERS,
    CNNHyperModel,
)
from kerascnn.tuning.tuners import (
    TUNERS,
    BayesianOptimization,
    Hyperband,
    RandomSearch,
    make_tuner,
    role,
)

__all__ = [
    "DEFAULT_FAMILIES",
    "DEFAULT_MODELS",
    "EFFICIENCY_FLAGS",
    "KERNEL_TYPES",
    "LAYOUTS",
    "OPTIMIZERS",
    "TUNERS",
    "BayesianOptimization",
    "CNNHyperModel",
    "Hyperband",
    "RandomSearch",
    "SearchResult",
    "check_deepcopyable",
    "format_best",
    "make_tuner",
    "print_best",
    "role",
    "search",
    "trial_report",
]
