"""Keras callbacks of kerascnn (TensorFlow backend).

Per-layer statistics for every callback come from one mechanism,
`kerascnn.callbacks.layer_stats.LayerStatistics`.
"""

from kerascnn.callbacks.layer_metrics import LayerMetrics  # noqa: F401
from kerascnn.callbacks.layer_stats import (  # noqa: F401
    LayerStatistics,
    default_monitored_layers,
)
from kerascnn.callbacks.learn_drop.dropping import LayerDropping  # noqa: F401
from kerascnn.callbacks.learn_drop.freezing import LayerFreezing  # noqa: F401
from kerascnn.callbacks.stability_stopping import StabilityStopping  # noqa: F401
from kerascnn.callbacks.swa import StochasticWeightAveraging  # noqa: F401
