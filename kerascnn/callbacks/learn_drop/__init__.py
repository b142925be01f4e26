"""Learn&Drop: gradient scores, layer dropping with cached features, freezing, model splits.

Modules (the callbacks are exported by `kerascnn.callbacks`):

- `score`: the gradient score of a layer and the drop/freeze decision rule;
- `dropping`: `LayerDropping`, which drops the converged front of a network
  and trains the rest on cached features (`feature_cache`);
- `freezing`: `LayerFreezing`, which freezes converged layers in place;
- `feature_cache`: the on-disk cache of intermediate features;
- `model_split`: cutting a functional model into a frozen front and a trained tail.

This package imports none of them, so that `kerascnn.callbacks.layer_stats` can
use `model_split` without importing the callbacks built on it.
"""
