"""Rolling pointwise convolution (RPW), the 3DRF paper's new factorized kernel.

Wang et al., "An Efficient Quantitative Approach for Optimizing Convolutional
Neural Networks" (CIKM 2021), section 4.2, Figure 5 and Listing 2.
"""

import math

import keras
import numpy as np
from keras import ops

from kerascnn.arch.channels import check_groups_overlap, rolling_windows
from kerascnn.layers._factorized_pointwise import FactorizedPointwiseConv2D


@keras.saving.register_keras_serializable(package="kerascnn")
class RollingPointwiseConv2D(FactorizedPointwiseConv2D):
    """RPW-g-o: a 1x1 convolution whose filters read rolling channel windows.

    Channel windows (the paper's Listing 2). With `C` input channels, every
    filter reads a window of `W = C / groups` consecutive input channels, and
    adjacent filters' windows overlap by `floor(overlap * W)` channels: the
    window of filter `f` is the channels `(f * s + j) mod C`, `j = 0..W-1`,
    with stride `s = W - floor(overlap * W)`; windows wrap around the channel
    axis. With `overlap=0` filter `f` reads group `f mod groups` (a GPW-g
    whose output is interleaved across groups). Parameters: `W * filters`
    (+ bias), the same as GPW-g; MACs per pixel: `W * filters`.

    Implementation. Windows repeat with period `P = C / gcd(s, C)`; the
    `D = min(P, filters)` distinct windows are gathered once (one static
    `take` of `D * W` channels, index built in `build`) and convolved by one
    grouped 1x1 convolution (`D` groups of `filters / D` filters), then the
    output is reordered (reshape/transpose) to filter order ("gather" path).
    The "dense" path scatters the compact kernel once per call into a dense
    `(C, filters)` kernel (static index) and applies one 1x1 convolution: `g`
    times the MACs, but one plain GEMM and no large gather. `"auto"` takes
    the dense path for `groups <= 4` or when the gathered tensor would exceed
    `2 * C` channels (many distinct windows, e.g. `overlap=0.33`), the gather
    path otherwise. No Python loop over slices runs at call time.
    `compute_macs` reports the RPW's own MACs whatever the path.

    Args:
        filters: output channels.
        groups: `g`: each filter reads `C / g` channels; must divide `C`.
            Defaults to 2.
        overlap: `o` in [0, 1): the fraction of a window shared by adjacent
            filters. Defaults to 0.5.
        use_bias: add a bias. Defaults to True.
        kernel_initializer: initializer of the compact `(W, filters)` kernel
            (fan-in `W`). Defaults to `"glorot_uniform"`.
        bias_initializer: defaults to `"zeros"`.
        kernel_regularizer: optional regularizer of the kernel.
        implementation: `"auto"` (default), `"gather"` or `"dense"`.
        **kwargs: base `Layer` arguments.

    Input shape: `(batch, height, width, C)` (channels last).
    Output shape: `(batch, height, width, filters)`.

    Example:

    >>> layer = RollingPointwiseConv2D(32, groups=2, overlap=0.5)
    >>> layer(np.zeros((1, 4, 4, 16), "float32")).shape
    (1, 4, 4, 32)
    >>> layer.windows[:3].tolist()  # W = 8, s = 4
    [[0, 1, 2, 3, 4, 5, 6, 7], [4, 5, 6, 7, 8, 9, 10, 11], [8, 9, 10, 11, 12, 13, 14, 15]]
    """

    IMPLEMENTATIONS = ("auto", "gather", "dense")

    def __init__(
        self,
        filters,
        groups=2,
        overlap=0.5,
        use_bias=True,
        kernel_initializer="glorot_uniform",
        bias_initializer="zeros",
        kernel_regularizer=None,
        implementation="auto",
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
        check_groups_overlap(None, self.groups, overlap)
        if implementation not in self.IMPLEMENTATIONS:
            raise ValueError(
                f"implementation must be one of {self.IMPLEMENTATIONS}. "
                f"Received: implementation={implementation!r}"
            )
        self.overlap = float(overlap)
        self.implementation = implementation

    def build(self, input_shape):
        channels = self._input_channels(input_shape)
        self.windows = rolling_windows(channels, self.filters, self.groups, self.overlap)
        width = self.windows.shape[1]
        stride = width - int(math.floor(self.overlap * width))
        period = channels // math.gcd(stride, channels)
        distinct = min(period, self.filters)
        if self.filters % distinct:
            distinct = self.filters  # one window per filter
        mode = self.implementation
        if mode == "auto":
            # The dense path costs `groups` times the MACs in one plain GEMM,
            # which beats a gather + grouped convolution for small `groups`
            # (TF's grouped-convolution gradients are slow, on CPU above all).
            small_gather = distinct * width <= 2 * channels
            mode = "gather" if small_gather and self.groups > 4 else "dense"
        self._mode = mode
        self._distinct = distinct
        per = self.filters // distinct
        if mode == "gather":
            # Gathered channel block k is the window of filters k, k + D, ...
            self._gather_index = self.windows[:distinct].reshape(-1).astype("int32")
            # Grouped-conv column k * per + m holds filter k + D * m.
            k, m = np.meshgrid(np.arange(distinct), np.arange(per), indexing="ij")
            self._kernel_order = (k + distinct * m).reshape(-1).astype("int32")
        else:
            rows = self.windows.reshape(-1)
            cols = np.repeat(np.arange(self.filters), width)
            # Flat index into the (C, filters) dense kernel of kernel[j, f].
            self._scatter_index = np.stack([rows, cols], axis=1).astype("int32")
            self._scatter_order = (
                (np.arange(width)[None, :] * self.filters + np.arange(self.filters)[:, None])
                .reshape(-1)
                .astype("int32")
            )
        self._build_weights((width, self.filters), channels)
        self._channels = channels

    def call(self, inputs):
        width = self.windows.shape[1]
        if self._mode == "gather":
            x = inputs
            if self._distinct * width != self._channels or self._distinct > 1:
                x = ops.take(inputs, self._gather_index, axis=-1)
            kernel = self.kernel
            if self._distinct > 1 and self._distinct < self.filters:
                kernel = ops.take(kernel, self._kernel_order, axis=1)
            kernel = ops.reshape(kernel, (1, 1, width, self.filters))
            y = ops.conv(x, kernel, strides=1, padding="valid")
            per = self.filters // self._distinct
            if self._distinct > 1 and per > 1:
                shape = ops.shape(y)
                y = ops.reshape(y, (shape[0], shape[1], shape[2], self._distinct, per))
                y = ops.transpose(y, (0, 1, 2, 4, 3))
                y = ops.reshape(y, (shape[0], shape[1], shape[2], self.filters))
        else:
            values = ops.take(ops.reshape(self.kernel, (-1,)), self._scatter_order, axis=0)
            dense = ops.scatter(self._scatter_index, values, (self._channels, self.filters))
            y = ops.conv(inputs, ops.reshape(dense, (1, 1, self._channels, self.filters)))
        if self.bias is not None:
            y = y + self.bias
        return y

    def dense_kernel(self):
        """The equivalent `(C, filters)` dense 1x1 kernel (zeros outside windows), numpy."""
        kernel = np.asarray(keras.ops.convert_to_numpy(self.kernel))
        dense = np.zeros((self._channels, self.filters), kernel.dtype)
        for f in range(self.filters):
            dense[self.windows[f], f] += kernel[:, f]
        return dense

    def get_config(self):
        config = super().get_config()
        config.update(overlap=self.overlap, implementation=self.implementation)
        return config
