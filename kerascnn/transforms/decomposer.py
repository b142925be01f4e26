"""The kernel-level decomposer of the 3DRF optimizer (section 4.2 of the paper).

Standard convolutions are replaced by cheaper blocks of factorized kernels:

- `"dw_pw"`: depthwise + pointwise (MobileNet's block B);
- `"dw_gpw"`: depthwise + channel shuffle + group pointwise (the paper's
  block E, Figure 5; `shuffle=False` gives a plain DW+GPW-g);
- `"dw_rpw"`: depthwise + rolling pointwise RPW-g-o (block F, the paper's new
  block, `kerascnn.layers.RollingPointwiseConv2D`).

Rule of Kernel Replacement. A block N may replace standard convolutions S
only if (1) *quality*: `3DRF(N) = 3DRF(S)` for the same input tensor and (2)
*compact*: removing any factorized kernel x from N gives `3DRF(N - x) <
3DRF(S)`. As for the paper's blocks C and D, a block whose pointwise kernel
sees only part of the channels reaches the 3DRF of the standard convolutions
after several blocks: `replacement_rule` finds the smallest number n of
stacked blocks whose 3DRF equals that of n standard convolutions (on an input
large enough not to saturate), and checks compactness of those n blocks.

`decompose` then replaces every standard kxk `conv` unit (k > 1; the first
convolution of the network, on the image, is kept by default) with a
`separable` unit using the chosen pointwise kernel, and checks the quality
condition stage by stage with the 3DRF calculus on the real geometry: if a
stage's final 3DRF drops (too few blocks in the stage to reach all
channels), then with `fallback=True` (the default) its last replaced unit
uses a full pointwise kernel (DW+PW), which restores the stage's 3DRF; the
report says so. With `fallback=False` every convolution gets the chosen
block and the report only flags the stages whose 3DRF dropped: this is the
setting that reproduces the paper's Table 6 (VGG16-opt {5,4,2,1,1} on
CIFAR-10, where the one-conv stages 4 and 5 would otherwise keep dense
512x512 pointwise kernels; see docs/rf3d.md). The default stays `True`
because the paper's own Rule of Kernel Replacement (quality condition)
asks for it; the paper's Table 6 counts do not apply it.

Example:

>>> from kerascnn.zoo import vgg
>>> from kerascnn.transforms.decomposer import decompose
>>> spec = decompose(vgg.vgg_spec("vgg11"), kernel="dw_rpw", groups=2, overlap=0.5)
>>> spec.stages[2].units[0].kind, spec.stages[2].units[0].option("pointwise")
('separable', 'rpw')
"""

from __future__ import annotations

import dataclasses

from kerascnn import _checks
from kerascnn.arch.channels import check_groups_overlap
from kerascnn.arch.naming import unit_prefix
from kerascnn.arch.spec import ArchSpec
from kerascnn.transforms import rf3d

#: Block name -> pointwise kind of the separable unit.
KERNELS = {"dw_pw": "pw", "dw_gpw": "gpw", "dw_rpw": "rpw"}


def check_kernel(kernel):
    if kernel not in KERNELS:
        raise ValueError(f"kernel must be one of {sorted(KERNELS)}. Received: kernel={kernel!r}")
    return kernel


def block_kernels(kernel, filters, groups=2, overlap=0.5, shuffle=True, kernel_size=3):
    """The `rf3d.Kernel`s of one replacement block (depthwise, then pointwise)."""
    check_kernel(kernel)
    dw = rf3d.Kernel("depthwise", kernel_size, name="dw")
    if kernel == "dw_pw":
        pw = rf3d.Kernel("pointwise", 1, filters, name="pw")
    elif kernel == "dw_gpw":
        pw = rf3d.Kernel("group_pointwise", 1, filters, groups=groups, shuffle=shuffle, name="gpw")
    else:
        pw = rf3d.Kernel(
            "rolling_pointwise", 1, filters, groups=groups, overlap=overlap, name="rpw"
        )
    return [dw, pw]


def _rf(kernels, w0, c0):
    rows = rf3d.stage_table(kernels, w0, c0)
    return rows[-1].rf if rows else 1


def replacement_rule(
    kernel, channels, groups=2, overlap=0.5, shuffle=True, kernel_size=3, max_blocks=8
):
    """Checks the Rule of Kernel Replacement for a block on `channels` channels.

    Args:
        kernel: `"dw_pw"`, `"dw_gpw"` or `"dw_rpw"`.
        channels: input (= output) channels of the convolutions.
        groups, overlap, shuffle: the pointwise kernel's settings.
        kernel_size: spatial size of the standard convolution. Defaults to 3.
        max_blocks: largest number of stacked blocks tried. Defaults to 8.

    Returns:
        A dict: `blocks` (smallest n such that n blocks have the 3DRF of n
        standard convolutions, or None), `quality` (bool), `compact` (bool),
        `rf_standard`, `rf_block` (3DRF of the n standard convolutions and of
        the n blocks) and `rf_without` (3DRF of the n blocks without each
        factorized kernel).

    Example:

    >>> replacement_rule("dw_rpw", 64, groups=2, overlap=0.5)["blocks"]
    2
    """
    check_kernel(kernel)
    check_groups_overlap(channels, groups, overlap)
    w0 = 1 + max_blocks * (kernel_size - 1) + 1  # never saturated
    block = block_kernels(kernel, channels, groups, overlap, shuffle, kernel_size)
    last = None
    for n in range(1, max_blocks + 1):
        standard = [rf3d.Kernel("standard", kernel_size, channels)] * n
        stacked = block * n
        rf_s, rf_n = _rf(standard, w0, channels), _rf(stacked, w0, channels)
        last = (n, rf_s, rf_n, stacked)
        if rf_n == rf_s:
            without = [
                _rf(stacked[:i] + stacked[i + 1 :], w0, channels) for i in range(len(stacked))
            ]
            return {
                "blocks": n,
                "quality": True,
                "compact": all(r < rf_s for r in without),
                "rf_standard": rf_s,
                "rf_block": rf_n,
                "rf_without": without,
            }
    n, rf_s, rf_n, _ = last
    return {
        "blocks": None,
        "quality": False,
        "compact": False,
        "rf_standard": rf_s,
        "rf_block": rf_n,
        "rf_without": [],
    }


def _replacement_unit(unit, kernel, groups, overlap, shuffle):
    options = dict(unit.options)
    options.pop("groups", None)
    if kernel != "dw_pw":
        options.update(pointwise=KERNELS[kernel], groups=groups)
        if kernel == "dw_gpw":
            options["shuffle"] = bool(shuffle)
        else:
            options["overlap"] = float(overlap)
    return dataclasses.replace(unit, kind="separable", options=options)


def _with_units(spec, new_units):
    """`spec` with the units of every stage replaced by `new_units[stage]`."""
    stages = tuple(dataclasses.replace(s, units=tuple(u)) for s, u in zip(spec.stages, new_units))
    return dataclasses.replace(spec, stages=stages)


def _replace_convs(spec, stages, kernel, groups, overlap, shuffle, keep_first):
    """Replaces the standard convolutions: `(new_units, replaced, rules)`."""
    new_units = [list(s.units) for s in spec.stages]
    replaced = []  # (3DRF stage, si, ui, name)
    rules = {}
    first_conv = True
    for index, (_, _, units) in enumerate(stages):
        for si, ui, unit, in_channels in units:
            is_first = first_conv
            first_conv = False
            if unit.kind != "conv" or unit.kernel_size == 1 or unit.option("groups", 1) != 1:
                continue
            if keep_first and is_first:
                continue
            name = unit_prefix(spec.stages[si], ui, unit)
            if kernel != "dw_pw":
                if in_channels % groups or (kernel == "dw_gpw" and unit.filters % groups):
                    raise ValueError(
                        f"groups must divide the channels of every replaced convolution. "
                        f"Received: groups={groups} for {name} ({in_channels} -> "
                        f"{unit.filters} channels)"
                    )
                if unit.filters not in rules:
                    rules[unit.filters] = replacement_rule(
                        kernel, unit.filters, groups, overlap, shuffle, unit.kernel_size
                    )
            new_units[si][ui] = _replacement_unit(unit, kernel, groups, overlap, shuffle)
            replaced.append((index, si, ui, name))
    return new_units, replaced, rules


def _quality_checks(spec, new_units, replaced, input_shape, fallback=True):
    """Checks every 3DRF stage; with `fallback`, DW+PW where the 3DRF shrank (in place)."""
    before = rf3d.analyze(spec, input_shape)
    after = rf3d.analyze(_with_units(spec, new_units), input_shape)
    checks = []
    for b, a in zip(before, after):
        ok = a.rows[-1].rf >= b.rows[-1].rf
        entry = {
            "stage": b.index + 1,
            "rf_standard": b.rows[-1].rf,
            "rf_decomposed": a.rows[-1].rf,
            "quality": ok,
            "fallback": None,
        }
        last = [r for r in replaced if r[0] == b.index]
        if not ok and last and fallback:
            _, si, ui, name = last[-1]
            new_units[si][ui] = new_units[si][ui].with_options(
                pointwise=None, groups=None, overlap=None, shuffle=None
            )
            entry["fallback"] = f"{name}: DW+PW"
        checks.append(entry)
    return checks


def decompose_with_report(
    spec,
    kernel="dw_rpw",
    groups=2,
    overlap=0.5,
    shuffle=True,
    input_shape=(32, 32, 3),
    keep_first=True,
    fallback=True,
):
    """Like `decompose`, and also returns a report (a dict) of the checks."""
    if not isinstance(spec, ArchSpec):
        raise TypeError(
            f"spec must be a kerascnn.arch.spec.ArchSpec. Received: {type(spec).__name__}"
        )
    check_kernel(kernel)
    check_groups_overlap(None, groups, overlap)
    _checks.check_bool(shuffle, "shuffle")
    _checks.check_bool(keep_first, "keep_first")
    _checks.check_bool(fallback, "fallback")
    stages = rf3d.split_stages(spec, input_shape)
    if not any(u.kind == "conv" and u.kernel_size > 1 for _, _, u in spec.units()):
        raise ValueError(
            f"The spec has no standard convolution to decompose. Received: spec={spec.name!r}"
        )
    new_units, replaced, rules = _replace_convs(
        spec, stages, kernel, groups, overlap, shuffle, keep_first
    )
    checks = _quality_checks(spec, new_units, replaced, input_shape, fallback)
    result = _with_units(spec, new_units)
    final = rf3d.analyze(result, input_shape)
    for entry, f in zip(checks, final):
        entry["rf_final"] = f.rows[-1].rf
        entry["quality_final"] = f.rows[-1].rf >= entry["rf_standard"]
    report = {
        "kernel": kernel,
        "groups": groups,
        "overlap": overlap,
        "shuffle": shuffle,
        "fallback": fallback,
        "replaced": [r[3] for r in replaced],
        "rule": {str(k): v for k, v in rules.items()},
        "stages": checks,
    }
    return result, report


def decompose(
    spec,
    kernel="dw_rpw",
    groups=2,
    overlap=0.5,
    shuffle=True,
    input_shape=(32, 32, 3),
    keep_first=True,
    fallback=True,
):
    """Replaces standard convolutions with DW+PW, DW+GPW-g or DW+RPW-g-o blocks.

    Args:
        spec: a `kerascnn.arch.spec.ArchSpec`.
        kernel: `"dw_pw"`, `"dw_gpw"` or `"dw_rpw"`. Defaults to `"dw_rpw"`.
        groups: groups g of GPW/RPW; must divide the channels. Defaults to 2.
        overlap: overlap o of RPW, in [0, 1). Defaults to 0.5.
        shuffle: channel shuffle after the GPW of `"dw_gpw"` (block E).
            Defaults to True.
        input_shape: geometry for the 3DRF checks. Defaults to `(32, 32, 3)`.
        keep_first: keep the network's first convolution. Defaults to True.
        fallback: where a stage's 3DRF would drop (fewer blocks than the
            Rule of Kernel Replacement needs), give its last replaced unit a
            full pointwise kernel (DW+PW). Defaults to True (the quality
            condition of section 4.2); `False` replaces every convolution
            with the chosen block, as the paper's Table 6 counts do.

    Returns:
        The new `ArchSpec` (see `decompose_with_report` for the checks).

    Example:

    >>> from kerascnn.zoo import vgg
    >>> spec = vgg.vgg_spec("vgg16").with_depths((5, 4, 2, 1, 1))
    >>> strict = decompose(spec, "dw_gpw", groups=8, fallback=False)
    >>> {u.option("pointwise") for _, _, u in strict.units() if u.kind == "separable"}
    {'gpw'}
    """
    return decompose_with_report(
        spec, kernel, groups, overlap, shuffle, input_shape, keep_first, fallback
    )[0]
