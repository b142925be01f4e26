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

    Implementation. Windows repeat with period `D = C / gcd(s, C)`; filter
    `f` reads window `f mod D`. `"sliced"` (taken by `"auto"` whenever the
    stride divides the width, e.g. `overlap` 0, 0.5 or 0.75 with even widths,
    and `D` divides `filters`): the windows tile the channel axis in `D`
    chunks of `s` channels, window `k` being chunks `k .. k + W/s - 1`
    (mod `D`, the wrap-around part). The pixels are flattened, the chunks
    moved to a leading axis once, and each of the `W / s` taps is one batched
    matmul over the `D` chunks (tap `t` reads the chunks rolled by `t`),
    summed: the cost follows the RPW's MACs, `W * filters` per pixel.
    `"gather"`: the `D` distinct windows are gathered once (a static `take`
    of `D * W` channels) and multiplied by one batched matmul (for any
    configuration with `D` dividing `filters`, else one window per filter;
    the gathered tensor is `D * W / C` times the input). `"dense"`: the
    compact kernel is scattered once per call into a dense `(C, filters)`
    kernel and one matmul runs: `g` times the MACs in one plain GEMM, the
    cost of a full pointwise convolution. `"auto"` takes `"dense"` where
    `"sliced"` does not apply (e.g. `overlap=0.33`, whose windows do not
    tile the channels). No Python loop over windows runs at call time; no
    grouped `Conv2D`. `compute_macs` reports the RPW's own MACs whatever
    the path. Measured fwd+bwd, paired medians against a dense 1x1 `Conv2D`
    at 32x16x16x256 -> 256 on a 2-core CPU (`benchmarks/bench_rpw.py`, A/A
    1.00): o=0.5 "sliced" 0.91x at g=2 and 0.66x at g=4 (1.30x the GPW of
    the same g: two taps of half-width chunks and the stride-`D` interleave
    of the output that the filter order needs), "dense" 1.00x and 0.99x;
    o=0.33 ("auto" = "dense") 1.00x and 0.95x. The dense path is faster
    only where "sliced" does not apply.

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
        implementation: `"auto"` (default), `"sliced"`, `"gather"` or
            `"dense"`; `"sliced"` raises a `ValueError` at build time where
            the windows do not tile the channels.
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

    IMPLEMENTATIONS = ("auto", "sliced", "gather", "dense")

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
        # "sliced": the windows tile the channel axis in chunks of `stride`.
        sliced = width % stride == 0 and self.filters % (channels // stride) == 0
        mode = self.implementation
        if mode == "sliced" and not sliced:
            raise ValueError(
                'implementation="sliced" needs the window stride to divide the window '
                "width and the number of distinct windows to divide filters. Received: "
                f"implementation={mode!r} with channels={channels}, filters={self.filters}, "
                f"groups={self.groups}, overlap={self.overlap} (width {width}, stride {stride})"
            )
        if mode == "auto":
            mode = "sliced" if sliced else "dense"
        self._mode = mode
        self._stride = stride
        self._distinct = channels // stride if mode == "sliced" else distinct
        if mode == "gather":
            # Gathered channel block k is the window of filters k, k + D, ...
            self._gather_index = self.windows[:distinct].reshape(-1).astype("int32")
        elif mode == "dense":
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

    def _grouped_kernel(self, kernel, taps):
        """`(W, F)` -> `(taps, D, W / taps, F / D)`: block `[t, k]` holds rows
        `t * W / taps ...` of the filters `k, k + D, k + 2D, ...` (window `k`)."""
        d = self._distinct
        width = kernel.shape[0]
        kernel = ops.reshape(kernel, (taps, width // taps, self.filters // d, d))
        return ops.transpose(kernel, (0, 3, 1, 2))

    def _from_windows(self, y, out_shape):
        """`(D, pixels, F / D)` -> `(batch, h, w, F)`: filter `k + D * m` is `y[k, :, m]`."""
        return self._finish(ops.transpose(y, (1, 2, 0)), out_shape)

    def _call_sliced(self, inputs):
        # Window k is the channel chunks k, k+1, ..., k+T-1 (mod D) of `stride`
        # channels: tap t multiplies the chunks rolled by t (one batched
        # matmul over the D chunks) and the taps are summed.
        rows, out_shape = self._to_rows(inputs)
        d, stride = self._distinct, self._stride
        taps = self.windows.shape[1] // stride
        chunks = ops.transpose(ops.reshape(rows, (-1, d, stride)), (1, 0, 2))
        kernel = self._grouped_kernel(self.kernel, taps)
        y = ops.matmul(chunks, kernel[0])
        for t in range(1, taps):
            y = y + ops.matmul(ops.roll(chunks, -t, axis=0), kernel[t])
        return self._from_windows(y, out_shape)

    def _call_gather(self, inputs):
        rows, out_shape = self._to_rows(inputs)
        d, width = self._distinct, self.windows.shape[1]
        x = ops.take(rows, self._gather_index, axis=-1)
        x = ops.transpose(ops.reshape(x, (-1, d, width)), (1, 0, 2))
        y = ops.matmul(x, self._grouped_kernel(self.kernel, 1)[0])
        return self._from_windows(y, out_shape)

    def _call_dense(self, inputs):
        rows, out_shape = self._to_rows(inputs)
        values = ops.take(ops.reshape(self.kernel, (-1,)), self._scatter_order, axis=0)
        dense = ops.scatter(self._scatter_index, values, (self._channels, self.filters))
        return self._finish(ops.matmul(rows, dense), out_shape)

    def call(self, inputs):
        if self._mode == "sliced":
            return self._call_sliced(inputs)
        if self._mode == "gather":
            return self._call_gather(inputs)
        return self._call_dense(inputs)

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
