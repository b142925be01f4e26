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
    `f` reads window `f mod D`. Where the stride divides the width (e.g.
    `overlap` 0, 0.5 or 0.75 with even widths) and `D` divides `filters`, the
    windows tile the channel axis in `D` chunks of `s` channels, window `k`
    being chunks `k .. k + T - 1` (mod `D`, the wrap-around part), `T = W / s`
    taps. `"split"`: the channels are split once into the `D` chunks (each
    chunk shared by the `T` windows that read it, nothing copied per window),
    each window is `T` plain matmuls of its chunks by its kernel rows, summed,
    and the `D` window outputs are stacked and moved to the filter order
    `k + D * m` by one transpose: the MACs are the RPW's, `W * filters` per
    pixel, in `D * T` matmuls. `"sliced"`: the same tiling as one batched
    matmul over the `D` chunks per tap (the chunks moved to a leading axis,
    tap `t` reading them rolled by `t`); slower than `"split"` wherever both
    were measured (TF's CPU batched matmul and the roll), kept for
    configurations with more than `MAX_SPLIT_MATMULS` (64) windows x taps.
    `"gather"`: the `D` distinct windows are gathered once (a static `take`
    of `D * W` channels) and multiplied by one batched matmul (for any
    configuration with `D` dividing `filters`, else one window per filter).
    `"dense"`: the compact kernel is scattered once per call into a dense
    `(C, filters)` kernel and one matmul runs: `g` times the MACs in one
    plain GEMM, the cost of a full pointwise convolution. No Python loop
    over windows runs at call time; no grouped `Conv2D`. `compute_macs`
    reports the RPW's own MACs whatever the path.

    `"auto"` (default) takes `"dense"` where the windows do not tile (e.g.
    `overlap=0.33`) and where `"split"` saves fewer than 32 MACs per pixel
    per value it copies: `(C - W) * filters < 32 * (C + filters)` (its split,
    stack and transpose move about `C + filters` values per pixel, fwd and
    bwd, which small layers do not pay back); else `"split"` (`"sliced"`
    beyond 64 matmuls). Measured fwd+bwd, paired medians against a dense 1x1
    `Conv2D` on a 2-core CPU (`benchmarks/bench_rpw.py`, A/A 0.97-1.00; two
    runs): at 32x16x16x256 -> 256, o=0.5, "split" 0.80-0.84x at g=2 and
    0.52-0.61x at g=4 (1.13-1.23x and 1.14-1.22x the GPW of the same g;
    paired 0.86-0.92x the time of "sliced", 0.56-0.87x that of "dense"); at
    64x16x16x128 -> 128 "split" 0.84x / 0.79x against "dense" 0.85x / 0.81x
    (the crossover); at 64x32x32x64 -> 64 "dense" 0.99x / 1.00x against
    "split" 1.27x / 1.39x. Over seven runs on three CPUs, "split" at g=4,
    o=0.5 took 1.14-1.29x the GPW's time (median 1.22): its `D * T` half-size
    matmuls, the tap sums and the interleaved output cost about a fifth more
    than the GPW's `g` matmuls, although the MACs are equal.

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
        implementation: `"auto"` (default), `"split"`, `"sliced"`,
            `"gather"` or `"dense"`; `"split"` and `"sliced"` raise a
            `ValueError` at build time where the windows do not tile the
            channels.
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

    IMPLEMENTATIONS = ("auto", "split", "sliced", "gather", "dense")
    # "auto" takes "split" up to this many matmuls (windows x taps), a bound
    # on the graph size; above it the batched "sliced" path.
    MAX_SPLIT_MATMULS = 64
    # ... and only where it saves at least this many MACs per copied value
    # over "dense" (the crossover measured on a 2-core CPU, see the docstring).
    SPLIT_MIN_SAVED_MACS_PER_COPY = 32

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
        self._mode = self._resolve_mode(channels, width, stride)
        self._stride = stride
        if self._mode in ("split", "sliced"):
            self._distinct = channels // stride
        else:
            distinct = min(channels // math.gcd(stride, channels), self.filters)
            self._distinct = distinct if self.filters % distinct == 0 else self.filters
        if self._mode == "gather":
            # Gathered channel block k is the window of filters k, k + D, ...
            self._gather_index = self.windows[: self._distinct].reshape(-1).astype("int32")
        elif self._mode == "dense":
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

    def _resolve_mode(self, channels, width, stride):
        """The path taken: `implementation`, or the fastest exact one for `"auto"`."""
        # The windows tile the channel axis in chunks of `stride` channels.
        tiles = width % stride == 0 and self.filters % (channels // stride) == 0
        mode = self.implementation
        if mode in ("split", "sliced") and not tiles:
            raise ValueError(
                f"implementation={mode!r} needs the window stride to divide the window "
                "width and the number of distinct windows to divide filters. Received: "
                f"implementation={mode!r} with channels={channels}, filters={self.filters}, "
                f"groups={self.groups}, overlap={self.overlap} (width {width}, stride {stride})"
            )
        if mode != "auto":
            return mode
        # "split" saves (C - W) * F MACs per pixel over "dense" and pays about
        # C + F values of extra copies per pixel (split, stack, transpose).
        saved = (channels - width) * self.filters
        if not tiles or saved < self.SPLIT_MIN_SAVED_MACS_PER_COPY * (channels + self.filters):
            return "dense"
        # "split" runs one matmul per window and tap: bound the graph size.
        matmuls = (channels // stride) * (width // stride)
        return "split" if matmuls <= self.MAX_SPLIT_MATMULS else "sliced"

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

    def _call_split(self, inputs):
        # The channels split once into the D chunks of `stride` channels (no
        # copy of a chunk per window); window k is chunks k .. k + T - 1 (mod
        # D): one matmul per window and tap, the taps summed. The D window
        # outputs are stacked on a leading axis and moved to the filter order
        # `k + D * m` by one transpose.
        rows, out_shape = self._to_rows(inputs)
        d, stride = self._distinct, self._stride
        taps = self.windows.shape[1] // stride
        chunks = ops.split(rows, d, axis=-1)
        # (W, F) -> (D * T, stride, F / D): block k * T + t = rows of tap t, filters k + D * m.
        kernel = ops.reshape(self.kernel, (taps, stride, self.filters // d, d))
        blocks = ops.unstack(
            ops.reshape(ops.transpose(kernel, (3, 0, 1, 2)), (d * taps, stride, -1)), axis=0
        )
        outputs = []
        for k in range(d):
            y = ops.matmul(chunks[k], blocks[k * taps])
            for t in range(1, taps):
                y = y + ops.matmul(chunks[(k + t) % d], blocks[k * taps + t])
            outputs.append(y)
        return self._from_windows(ops.stack(outputs, axis=0), out_shape)

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
        if self._mode == "split":
            return self._call_split(inputs)
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
