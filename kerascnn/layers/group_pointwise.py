"""Group pointwise convolution (GPW), optionally followed by a channel shuffle.

The factorized kernel of ShuffleNet (Zhang et al., 2018) used by the 3DRF
optimizer's kernel decomposer (`kerascnn.transforms.decomposer`, block "DW+GPW-g").
"""

import keras
import numpy as np
from keras import ops

from kerascnn.layers._factorized_pointwise import FactorizedPointwiseConv2D


@keras.saving.register_keras_serializable(package="kerascnn")
class GroupPointwiseConv2D(FactorizedPointwiseConv2D):
    """A 1x1 convolution split into `groups` groups, with an optional shuffle.

    Input channels are split into `groups` consecutive groups of
    `C_in / groups` channels; output channels `[i * F/g, (i + 1) * F/g)` only
    see input group `i` (one grouped 1x1 convolution). With `shuffle=True` the
    output channels are then shuffled (reshape to `(groups, F / groups)`,
    transpose, flatten), so that output channel `m * groups + i` is channel
    `i * F/g + m` of the grouped convolution: consecutive channels come from
    different groups and a following grouped layer mixes all groups.

    Args:
        filters: output channels; must be divisible by `groups`.
        groups: number of groups; must divide the input channels. Defaults to 1.
        shuffle: channel shuffle after the convolution. Defaults to False.
        use_bias: add a bias. Defaults to True.
        kernel_initializer: initializer of the `(1, 1, C_in / groups, filters)`
            kernel. Defaults to `"glorot_uniform"`.
        bias_initializer: defaults to `"zeros"`.
        kernel_regularizer: optional regularizer of the kernel.
        **kwargs: base `Layer` arguments (`name`, `dtype`, ...).

    Input shape: `(batch, height, width, C_in)` (channels last).
    Output shape: `(batch, height, width, filters)`.

    Example:

    >>> layer = GroupPointwiseConv2D(64, groups=4, shuffle=True)
    >>> layer(np.zeros((2, 8, 8, 32), "float32")).shape
    (2, 8, 8, 64)
    """

    def __init__(
        self,
        filters,
        groups=1,
        shuffle=False,
        use_bias=True,
        kernel_initializer="glorot_uniform",
        bias_initializer="zeros",
        kernel_regularizer=None,
        **kwargs,
    ):
        super().__init__(
            filters,
            groups,
            use_bias=use_bias,
            kernel_initializer=kernel_initializer,
            bias_initializer=bias_initializer,
            kernel_regularizer=kernel_regularizer,
            **kwargs,
        )
        if self.filters % self.groups:
            raise ValueError(
                f"groups must divide filters. Received: groups={groups}, filters={filters}"
            )
        if not isinstance(shuffle, bool):
            raise TypeError(f"shuffle must be a bool. Received: shuffle={shuffle!r}")
        self.shuffle = shuffle

    def build(self, input_shape):
        channels = self._input_channels(input_shape)
        self._build_weights((1, 1, channels // self.groups, self.filters), channels)

    def call(self, inputs):
        # A kernel with C_in / groups input channels makes ops.conv grouped.
        y = ops.conv(inputs, self.kernel, strides=1, padding="valid")
        if self.bias is not None:
            y = y + self.bias
        if self.shuffle and self.groups > 1:
            shape = ops.shape(y)
            y = ops.reshape(
                y, (shape[0], shape[1], shape[2], self.groups, self.filters // self.groups)
            )
            y = ops.transpose(y, (0, 1, 2, 4, 3))
            y = ops.reshape(y, (shape[0], shape[1], shape[2], self.filters))
        return y

    def dense_kernel(self):
        """The equivalent `(C_in, filters)` dense 1x1 kernel (zeros off-group), numpy."""
        kernel = np.asarray(keras.ops.convert_to_numpy(self.kernel))[0, 0]
        cin_g, co = kernel.shape[0], self.filters // self.groups
        dense = np.zeros((cin_g * self.groups, self.filters), kernel.dtype)
        for i in range(self.groups):
            dense[i * cin_g : (i + 1) * cin_g, i * co : (i + 1) * co] = kernel[
                :, i * co : (i + 1) * co
            ]
        if self.shuffle:
            order = np.arange(self.filters).reshape(self.groups, co).T.ravel()
            dense = dense[:, order]
        return dense

    def get_config(self):
        config = super().get_config()
        config["shuffle"] = self.shuffle
        return config
