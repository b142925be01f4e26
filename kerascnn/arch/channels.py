"""Channel windows of the factorized pointwise convolutions (no Keras).

Group pointwise (GPW) and rolling pointwise (RPW) convolutions split the input
channels into `groups` windows of `in_channels / groups` channels. RPW's
windows roll along the channel axis with an overlap between neighbours
(Listing 2 of "An Efficient Quantitative Approach for Optimizing Convolutional
Neural Networks", Wang et al., CIKM 2021,
`../shared/papers/3drf_quantitative-cnn-optimizer.txt`). The same windows are
used by the layer (`kerascnn.layers.RollingPointwiseConv2D`) and by the 3DRF
analysis (`kerascnn.transforms.rf3d`).

Example:

>>> rolling_windows(8, 3, 2, 0.5).tolist()
[[0, 1, 2, 3], [2, 3, 4, 5], [4, 5, 6, 7]]
"""

from __future__ import annotations

import math

import numpy as np

from kerascnn import _checks


def check_groups_overlap(channels, groups, overlap=0.0, what="channels"):
    """Validates `groups` (divides `channels`) and `overlap` (in [0, 1))."""
    _checks.check_positive_int(groups, "groups")
    if channels is not None and channels % groups:
        raise ValueError(
            f"groups must divide the number of {what}. Received: groups={groups} "
            f"for {channels} {what}"
        )
    _checks.check_fraction(overlap, "overlap")


def rolling_windows(in_channels, filters, groups, overlap):
    """The input channels of every filter of a rolling-pointwise convolution.

    Filter `f` reads the `W = in_channels / groups` channels
    `(f * s + j) mod in_channels` for `j = 0..W-1`, where the stride between
    adjacent filters is `s = W - floor(overlap * W)` (Listing 2 of the paper:
    adjacent filters share `floor(overlap * W)` channels and windows wrap
    around the channel axis).

    Returns:
        An int array of shape `(filters, W)`.
    """
    check_groups_overlap(in_channels, groups, overlap, "input channels")
    width = in_channels // groups
    stride = width - int(math.floor(overlap * width))
    starts = (np.arange(filters) * stride) % in_channels
    return (starts[:, None] + np.arange(width)[None, :]) % in_channels
