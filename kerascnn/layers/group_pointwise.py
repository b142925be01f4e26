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

    Implementation: the pixels are flattened to rows, the channels split into
    the `groups` groups and every group multiplied by its `(C_in / g, F / g)`
    kernel block (one matmul per group, the blocks concatenated
    and the shuffle one transpose of the `(groups, F / groups)` channel grid),
    so that the time follows the MACs on every backend.
    TF's grouped `Conv2D` (several times slower than a dense 1x1 convolution
    on CPU) is never used. Measured fwd+bwd, paired medians against a dense
    1x1 `Conv2D` at 32x16x16x256 -> 256 on a 2-core CPU
    (`benchmarks/bench_rpw.py`, A/A 1.00): 0.71x at g=2, 0.48x at g=4, 0.39x
    at g=8. With few channels per group (VGG16-opt's 64-channel layers, 16
    per group at g=4) the split and concatenation copies cost about what the
    smaller matmuls save: GPW-4 with shuffle measured 1.03-1.07x PW at
    64x32x32x64 -> 64, 0.59-0.64x at 64x16x16x128, 0.42-0.45x at 64x8x8x256
    (a dense block-diagonal kernel with the shuffle folded into its columns:
    1.00x, 0.82x, 0.77x, so it is not used).

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
        # Channel split + one matmul per group on `(pixels, C / g)` rows: the
        # cost follows the MACs (TF's grouped Conv2D is several times slower
        # than a dense 1x1 convolution on CPU, see `bench_rpw.py`).
        rows, out_shape = self._to_rows(inputs)
        kernel = ops.reshape(self.kernel, self.kernel.shape[2:])
        if self.groups == 1:
            return self._finish(ops.matmul(rows, kernel), out_shape)
        parts = ops.split(rows, self.groups, axis=-1)
        kernels = ops.split(kernel, self.groups, axis=-1)
        y = ops.concatenate([ops.matmul(x, k) for x, k in zip(parts, kernels)], axis=-1)
        if not self.shuffle:
            return self._finish(y, out_shape)
        # Shuffle: output channel m * g + i is channel m of group i, one
        # transpose of the `(g, F / g)` channel grid (a stack on a new last
        # axis, an element-wise interleave, measured 1.76x PW against 1.07x
        # at 64x32x32x64, g=4). The bias belongs to the grouped convolution's channels:
        # it is added before the shuffle.
        if self.bias is not None:
            y = y + self.bias
        co = self.filters // self.groups
        y = ops.transpose(ops.reshape(y, (-1, self.groups, co)), (0, 2, 1))
        return ops.reshape(y, out_shape)

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
