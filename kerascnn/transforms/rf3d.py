"""The 3D receptive field (3DRF) of a network's stages and its gain.

Implements section 3 of "An Efficient Quantitative Approach for Optimizing
Convolutional Neural Networks" (Wang et al., CIKM 2021,
`../shared/papers/3drf_quantitative-cnn-optimizer.txt`).

A *stage* is a run of layers whose inputs have the same spatial size: a
pooling layer or a unit with stride >= 2 starts a new stage. The stage's
input tensor is `w0 x w0 x c0` (`V0 = w0 * w0 * c0`). For the k-th layer of a
stage (equations 4-7):

- `3DRF^w_k = min(3DRF^w_{k-1} + w_k - 1, w0)` with `3DRF^w_0 = 1`,
- `3DRF^c_k = min(g(3DRF^c_{k-1}, T_k), c0)`,
- `3DRF_k = (3DRF^w_k)^2 * 3DRF^c_k`,
- `D3DRF_k = (3DRF_k - 3DRF_{k-1}) / 3DRF_{k-1} * exp(-alpha * 3DRF_{k-1} / V0)`.

The property function g. The paper gives g as a count: `g(c, PW) = c0`,
`g(c, DW) = c`. Counting is not enough once kernels are grouped (two stacked
group-pointwise layers without shuffle keep seeing the same `c0/g` channels,
with a shuffle they see `g` times more), so kerascnn tracks, for every output
channel of the current layer, *which* input channels of the stage flow into
it (a boolean coverage matrix) and propagates it through each kernel's exact
channel connectivity; `3DRF^c` is the number of stage-input channels seen by
one output neuron (the minimum over output channels; all are equal for every
kernel except rolling-pointwise with wrapping windows of uneven coverage).
This reproduces the scalar g of the paper: standard and pointwise -> c0,
depthwise -> c, group / group-pointwise (g groups) on a fresh input -> c0/g,
group-pointwise with channel shuffle after a group layer -> g * c, and
rolling-pointwise (see `kerascnn.layers.RollingPointwiseConv2D`) -> the
union of its rolling windows.

Units are the blocks of a spec: a `conv` unit is one standard (or pointwise)
kernel, a `separable` unit is DW then PW / GPW / RPW, a `basic` block is two
kxk standard kernels, a `bottleneck` is 1x1, kxk, 1x1 and an `inception`
module is one kernel of its widest spatial extent (5, or two 3x3). The gain
of a unit is the gain of its last kernel over the 3DRF before the unit.

Example:

>>> from kerascnn.transforms.rf3d import stage_table, Kernel
>>> rows = stage_table([Kernel("standard", 3)] * 3, w0=8, c0=128)
>>> [r.rf for r in rows]
[1152, 3200, 6272]
>>> round(rows[1].gain, 2)
1.17
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from kerascnn.arch.channels import check_groups_overlap, rolling_windows  # noqa: F401
from kerascnn.arch.geometry import conv_output_size
from kerascnn.arch.naming import unit_prefix
from kerascnn.arch.spec import ArchSpec

#: Kernel types known to the property function g.
KERNEL_TYPES = (
    "standard",
    "pointwise",
    "depthwise",
    "group",
    "group_pointwise",
    "rolling_pointwise",
)

DEFAULT_ALPHA = 3.0


def check_alpha(alpha):
    """Raises a ValueError unless `alpha` is a finite number > 0."""
    if (
        isinstance(alpha, bool)
        or not isinstance(alpha, (int, float))
        or not math.isfinite(alpha)
        or alpha <= 0
    ):
        raise ValueError(f"alpha must be a finite number > 0. Received: alpha={alpha!r}")
    return float(alpha)


@dataclasses.dataclass(frozen=True)
class Kernel:
    """One convolution layer, as the 3DRF calculus sees it.

    Args:
        type: one of `KERNEL_TYPES`.
        kernel_size: spatial width w_k. Defaults to 3 (1 for pointwise types).
        filters: output channels (None: same as input channels).
        groups: groups of `group`, `group_pointwise`, `rolling_pointwise`.
        shuffle: channel shuffle after a `group`/`group_pointwise` kernel.
        overlap: overlap ratio of `rolling_pointwise`, in [0, 1).
        strides: stride (only used to locate stage boundaries).
        name: label shown in tables.
    """

    type: str
    kernel_size: int = 3
    filters: int | None = None
    groups: int = 1
    shuffle: bool = False
    overlap: float = 0.0
    strides: int = 1
    name: str = ""

    def __post_init__(self):
        if self.type not in KERNEL_TYPES:
            raise ValueError(
                f"Unknown kernel type. Expected one of {KERNEL_TYPES}. Received: type={self.type!r}"
            )
        if self.type in ("pointwise", "group_pointwise", "rolling_pointwise"):
            object.__setattr__(self, "kernel_size", 1)
        check_groups_overlap(None, self.groups, self.overlap)


def _connectivity(kernel, in_channels):
    """(out_channels, in_channels) boolean mask; None means fully connected."""
    out = kernel.filters or in_channels
    if kernel.type in ("standard", "pointwise"):
        return None, out
    if kernel.type == "depthwise":
        mult = max(1, out // in_channels)
        mask = np.zeros((out, in_channels), bool)
        mask[np.arange(out), np.arange(out) // mult] = True
        return mask, out
    if kernel.type == "rolling_pointwise":
        windows = rolling_windows(in_channels, out, kernel.groups, kernel.overlap)
        mask = np.zeros((out, in_channels), bool)
        mask[np.repeat(np.arange(out), windows.shape[1]), windows.ravel()] = True
        return mask, out
    # group / group_pointwise.
    g = kernel.groups
    check_groups_overlap(in_channels, g, 0.0, "input channels")
    check_groups_overlap(out, g, 0.0, "output channels")
    mask = np.zeros((out, in_channels), bool)
    ci, co = in_channels // g, out // g
    for i in range(g):
        mask[i * co : (i + 1) * co, i * ci : (i + 1) * ci] = True
    if kernel.shuffle:
        # Shuffled position m * g + i holds channel i * co + m.
        order = np.arange(out).reshape(g, co).T.ravel()
        mask = mask[order]
    return mask, out


class Coverage:
    """Which stage-input channels flow into every channel of the current layer."""

    def __init__(self, c0):
        self.c0 = c0
        self.matrix = None  # None: identity (the stage input itself)
        self.full = False
        self.channels = c0

    def count(self):
        """3DRF^c: stage-input channels seen by one output neuron (minimum)."""
        if self.full:
            return self.c0
        if self.matrix is None:
            return 1
        return int(self.matrix.sum(axis=1).min())

    def apply(self, kernel):
        """The property function g: coverage after `kernel`."""
        mask, out = _connectivity(kernel, self.channels)
        new = Coverage(self.c0)
        new.channels = out
        if mask is None:
            new.full = True
            return new
        if self.full:
            new.full = True
            return new
        if self.matrix is None:
            matrix = mask
        else:
            matrix = (mask.astype(np.float32) @ self.matrix.astype(np.float32)) > 0
        if matrix.all():
            new.full = True
        else:
            new.matrix = matrix
        return new

    def union(self, other):
        """Coverage of a sum of two paths (residual shortcut)."""
        new = Coverage(self.c0)
        new.channels = self.channels
        if self.full or other.full:
            new.full = True
            return new
        a = self.matrix if self.matrix is not None else np.eye(self.c0, dtype=bool)
        b = other.matrix if other.matrix is not None else np.eye(self.c0, dtype=bool)
        if a.shape == b.shape:
            new.matrix = a | b
            new.full = bool(new.matrix.all())
        else:
            new.matrix = a if a.sum() >= b.sum() else b
        return new


def g(coverage, kernel):
    """The property function g of equation 6 (exact channel form).

    Args:
        coverage: a `Coverage` (or an int `c0` for the stage input).
        kernel: a `Kernel`.

    Returns:
        The `Coverage` after `kernel`; `.count()` is `3DRF^c` before the
        `min(., c0)` of equation 6 (already implied).
    """
    if isinstance(coverage, int):
        coverage = Coverage(coverage)
    return coverage.apply(kernel)


def gain(rf, rf_prev, v0, alpha=DEFAULT_ALPHA):
    """Equation 7: the 3DRF gain of a layer.

    Example:

    >>> round(gain(3200, 1152, 8 * 8 * 128), 2)  # Table 1, layer 2
    1.17
    """
    alpha = check_alpha(alpha)
    return (rf - rf_prev) / rf_prev * math.exp(-alpha * rf_prev / v0)


@dataclasses.dataclass
class Row:
    """One row of a 3DRF table (one kernel, or one unit)."""

    name: str
    type: str
    rf_w: int
    rf_c: int
    rf: int
    gain: float | None
    unit: int | None = None  # index of the unit in the stage (unit rows)

    def to_dict(self):
        return dataclasses.asdict(self)


def stage_table(kernels, w0, c0, alpha=DEFAULT_ALPHA, rf_w=1, coverage=None):
    """3DRF rows of a sequence of kernels applied to a `w0 x w0 x c0` input.

    Args:
        kernels: sequence of `Kernel`.
        w0: spatial width of the stage input.
        c0: channels of the stage input.
        alpha: decay of equation 7. Defaults to 3.
        rf_w, coverage: state before the first kernel (default: the input).

    Returns:
        A list of `Row`, one per kernel; the first kernel of a stage has
        `gain=None` (the paper's "-").
    """
    alpha = check_alpha(alpha)
    cov = coverage if coverage is not None else Coverage(c0)
    v0 = w0 * w0 * c0
    rows = []
    prev = None
    for i, kernel in enumerate(kernels):
        rf_w = min(rf_w + kernel.kernel_size - 1, w0)
        cov = cov.apply(kernel)
        rf_c = min(cov.count(), c0)
        rf = rf_w * rf_w * rf_c
        delta = None if prev is None else gain(rf, prev, v0, alpha)
        rows.append(Row(kernel.name or f"layer{i + 1}", kernel.type, rf_w, rf_c, rf, delta))
        prev = rf
    return rows


# --------------------------------------------------------------------------
# Specs -> stages of units -> kernels.
# --------------------------------------------------------------------------
def unit_kernels(unit, in_channels):
    """The `Kernel`s of a spec unit, in order (the 3DRF view of the unit)."""
    k, f = unit.kernel_size, unit.filters
    if unit.kind == "conv":
        groups = int(unit.option("groups", 1))
        if groups > 1:
            return [Kernel("group", k, f, groups=groups, strides=unit.strides)]
        return [Kernel("standard" if k > 1 else "pointwise", k, f, strides=unit.strides)]
    if unit.kind == "separable":
        dw = Kernel("depthwise", k, in_channels, strides=unit.strides, name="dw")
        kind = unit.option("pointwise", "pw")
        groups = int(unit.option("groups", 1))
        if kind == "gpw":
            pw = Kernel(
                "group_pointwise",
                1,
                f,
                groups=groups,
                shuffle=bool(unit.option("shuffle", False)),
                name="gpw",
            )
        elif kind == "rpw":
            pw = Kernel(
                "rolling_pointwise",
                1,
                f,
                groups=groups,
                overlap=float(unit.option("overlap", 0.0)),
                name="rpw",
            )
        else:
            pw = Kernel("pointwise", 1, f, name="pw")
        return [dw, pw]
    if unit.kind == "basic":
        return [Kernel("standard", k, f, strides=unit.strides), Kernel("standard", k, f)]
    if unit.kind == "bottleneck":
        return [
            Kernel("pointwise", 1, f),
            Kernel("standard", k, f, strides=unit.strides),
            Kernel("pointwise", 1, unit.output_channels),
        ]
    # inception: widest branch (5x5, or two 3x3 = 5), full channel mixing.
    return [Kernel("standard", 5, unit.output_channels)]


@dataclasses.dataclass
class StageInfo:
    """A 3DRF stage of a spec: its input geometry and its units.

    Attributes:
        index: 0-based stage index.
        w0, c0: input tensor width and channels (`V0 = w0 * w0 * c0`).
        units: `[(spec_stage_index, unit_index, unit), ...]`.
        rows: one `Row` per unit (3DRF after the unit and its gain).
        layer_rows: one `Row` per kernel.
    """

    index: int
    w0: int
    c0: int
    units: list
    rows: list
    layer_rows: list

    @property
    def v0(self):
        return self.w0 * self.w0 * self.c0

    @property
    def last_gain(self):
        return self.rows[-1].gain if self.rows else None

    def to_dict(self):
        return {
            "index": self.index,
            "w0": self.w0,
            "c0": self.c0,
            "v0": self.v0,
            "units": [r.to_dict() for r in self.rows],
            "layers": [r.to_dict() for r in self.layer_rows],
        }


def _check_spec(spec):
    if not isinstance(spec, ArchSpec):
        raise TypeError(
            f"spec must be a kerascnn.arch.spec.ArchSpec. Received: {type(spec).__name__}"
        )
    if not spec.units():
        raise ValueError(f"The spec has no convolution. Received: spec={spec.name!r}")


def _check_input_shape(input_shape):
    if (
        not isinstance(input_shape, (tuple, list))
        or len(input_shape) != 3
        or any(isinstance(d, bool) or not isinstance(d, int) or d < 1 for d in input_shape)
    ):
        raise ValueError(
            "input_shape must be three positive integers (height, width, channels). "
            f"Received: input_shape={input_shape!r}"
        )
    if input_shape[0] != input_shape[1]:
        raise ValueError(
            f"3DRF needs a square input (w0 x w0). Received: input_shape={tuple(input_shape)!r}"
        )
    return tuple(input_shape)


def split_stages(spec, input_shape=(32, 32, 3)):
    """Splits a spec into 3DRF stages.

    A stage starts at the network input, after every pooling layer and at
    every unit with stride >= 2. The input of a stage is the tensor at the
    stage's resolution: after the pool, or the output resolution of its
    strided first unit, with the channels entering the stage (`c0`).

    Returns:
        A list of `[w0, c0, [(spec_stage_index, unit_index, unit, in_channels), ...]]`.
    """
    _check_spec(spec)
    input_shape = _check_input_shape(input_shape)
    size, channels = input_shape[0], input_shape[2]
    stages = []
    current = None
    for si, stage in enumerate(spec.stages):
        for ui, unit in enumerate(stage.units):
            padding = unit.option("padding", "same")
            out_size = conv_output_size(size, unit.kernel_size, unit.strides, padding)
            if current is None or unit.strides >= 2:
                current = [out_size, channels, []]
                stages.append(current)
            current[2].append((si, ui, unit, channels))
            size, channels = out_size, unit.output_channels
            if size < 1:
                raise ValueError(
                    f"Input too small for {spec.name!r}. Received: input_shape={input_shape!r}"
                )
        if stage.pool is not None:
            size = conv_output_size(
                size,
                stage.pool_size,
                stage.pool_strides or stage.pool_size,
                stage.pool_padding,
            )
            if size < 1:
                raise ValueError(
                    f"Input too small for {spec.name!r}. Received: input_shape={input_shape!r}"
                )
            current = None
    return stages


def analyze(spec, input_shape=(32, 32, 3), alpha=DEFAULT_ALPHA):
    """Per-stage 3DRF of a spec.

    Args:
        spec: an `ArchSpec`.
        input_shape: `(height, width, channels)` (square). Defaults to
            `(32, 32, 3)`.
        alpha: decay of equation 7 (> 0). Defaults to 3.

    Returns:
        A list of `StageInfo`.

    Example:

    >>> from kerascnn.zoo import vgg
    >>> stages = analyze(vgg.vgg_spec("vgg11"), (32, 32, 3))
    >>> [s.w0 for s in stages]
    [32, 16, 8, 4, 2]
    """
    alpha = check_alpha(alpha)
    infos = []
    for index, (w0, c0, units) in enumerate(split_stages(spec, input_shape)):
        rf_w, cov, prev = 1, Coverage(c0), None
        v0 = w0 * w0 * c0
        rows, layer_rows = [], []
        for si, ui, unit, in_channels in units:
            name = unit_prefix(spec.stages[si], ui, unit)
            start_cov = cov
            for kernel in unit_kernels(unit, in_channels):
                before = rf_w * rf_w * min(cov.count(), c0)
                rf_w = min(rf_w + kernel.kernel_size - 1, w0)
                cov = cov.apply(kernel)
                rf = rf_w * rf_w * min(cov.count(), c0)
                first = not layer_rows
                layer_rows.append(
                    Row(
                        f"{name}_{kernel.name}" if kernel.name else name,
                        kernel.type,
                        rf_w,
                        min(cov.count(), c0),
                        rf,
                        None if first else gain(rf, before, v0, alpha),
                    )
                )
            if unit.kind in ("basic", "bottleneck"):
                # The shortcut adds the block input: channels are the union.
                cov = cov.union(start_cov)
            rf_c = min(cov.count(), c0)
            rf = rf_w * rf_w * rf_c
            rows.append(
                Row(
                    name,
                    unit.kind,
                    rf_w,
                    rf_c,
                    rf,
                    None if prev is None else gain(rf, prev, v0, alpha),
                    unit=len(rows),
                )
            )
            prev = rf
        infos.append(StageInfo(index, w0, c0, [u[:3] for u in units], rows, layer_rows))
    return infos


def total_gain(stages):
    """Sum of the unit gains of all stages (first units count 0)."""
    return float(sum(r.gain or 0.0 for s in stages for r in s.rows))


def format_table(stages):
    """A plain-text per-stage table (what `kerascnn rf3d` prints)."""
    lines = []
    for s in stages:
        lines.append(f"stage {s.index + 1}: input {s.w0}x{s.w0}x{s.c0} (V0={s.v0})")
        lines.append(
            f"  {'unit':<22} {'kind':<11} {'3DRF^w':>6} {'3DRF^c':>6} {'3DRF':>10} {'gain':>7}"
        )
        for r in s.rows:
            delta = "-" if r.gain is None else f"{r.gain:.2f}"
            lines.append(
                f"  {r.name:<22} {r.type:<11} {r.rf_w:>6} {r.rf_c:>6} {r.rf:>10} {delta:>7}"
            )
    return "\n".join(lines)
