"""`NoEffectWarning` for building techniques that change nothing in a model.

`build_model(..., squeeze_excite=True)` follows Composer's rule: a
`SqueezeExcite` block goes after a convolution only when
`min(in_channels, filters) >= se_min_channels` (128). The compact nets of
the efficient-CNN paper are far narrower (the MNIST nets have at most 64
channels, the CIFAR-10 net 120), so with the defaults SE adds nothing. In the
same way `blurpool=True` changes nothing in a model without max-pool stages
or strided convolutions of at least `blurpool_min_channels` input channels.
`warn_if_no_effect` says so, and how to get the technique, as Composer's
`NoEffectWarning` does.

Example:

```python
import warnings

import kerascnn

with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    kerascnn.zoo.build("compact_mnist_25k", squeeze_excite=True)
assert caught[0].category is kerascnn.NoEffectWarning
```
"""

from __future__ import annotations

import warnings

import keras

from kerascnn._warnings import NoEffectWarning
from kerascnn.layers.blurpool import BlurConv2D, BlurMaxPool2D
from kerascnn.layers.squeeze_excite import SqueezeExcite


def _convolutions(model):
    for layer in model.layers:
        if isinstance(layer, keras.layers.Conv2D) and layer.input.shape[-1] is not None:
            yield layer, int(layer.input.shape[-1])


def widest_convolution(model):
    """The largest `min(in_channels, filters)` over the model's `Conv2D` layers (0: none)."""
    return max((min(c_in, layer.filters) for layer, c_in in _convolutions(model)), default=0)


def warn_if_no_effect(
    model, *, blurpool, squeeze_excite, blurpool_min_channels, se_min_channels, stacklevel=3
):
    """Warns (`NoEffectWarning`) for each requested technique that added no layer to `model`.

    Args:
        model: the built `keras.Model`.
        blurpool: whether BlurPool was requested.
        squeeze_excite: whether squeeze-excite was requested.
        blurpool_min_channels: the BlurPool threshold used.
        se_min_channels: the squeeze-excite threshold used.
        stacklevel: `warnings.warn`'s. Defaults to 3 (`build_model`'s caller).

    Returns:
        The names of the techniques that changed nothing.
    """
    kinds = {type(layer) for layer in model.layers}
    idle = []
    if squeeze_excite and SqueezeExcite not in kinds:
        idle.append("squeeze_excite")
        widest = widest_convolution(model)
        hint = (
            f"Pass se_min_channels={widest} or lower (`kerascnn train --se-min-channels "
            f"{widest}`), with a small se_latent_channels (e.g. 4, or the fraction 0.25) "
            "to keep the blocks small."
            if widest
            else "The model has no Conv2D layer to follow."
        )
        warnings.warn(
            f"squeeze_excite=True added no SqueezeExcite block to model {model.name!r}: a "
            "block follows a convolution only when min(in_channels, filters) >= "
            f"se_min_channels={se_min_channels}, and the widest convolution here has "
            f"{widest}. {hint}",
            NoEffectWarning,
            stacklevel=stacklevel,
        )
    if blurpool and not kinds & {BlurConv2D, BlurMaxPool2D}:
        idle.append("blurpool")
        strided = [
            layer.name
            for layer, _ in _convolutions(model)
            if max(layer.strides) > 1 and not isinstance(layer, keras.layers.DepthwiseConv2D)
        ]
        hint = (
            f"Its {len(strided)} strided convolution(s) have fewer input channels than "
            f"blurpool_min_channels={blurpool_min_channels}: lower it to blur them."
            if strided
            else "It has no max-pool stage and no strided convolution."
        )
        warnings.warn(
            f"blurpool=True changed nothing in model {model.name!r}. {hint}",
            NoEffectWarning,
            stacklevel=stacklevel,
        )
    return idle
