"""Learn&Drop: gradient scores, layer dropping with cached features, freezing, model splits."""

from kerascnn.callbacks.learn_drop.dropping import LayerDropping  # noqa: F401
from kerascnn.callbacks.learn_drop.freezing import LayerFreezing  # noqa: F401
