"""The one spec -> spec pipeline: depths, 3DRF organizer, template, width, kernels.

`transform` applies kerascnn's architecture transforms in one documented
order, so that `kerascnn.zoo.get_spec`, `kerascnn train`, the tuner and
`kerascnn optimize` derive the identical spec from the same options:

1. `stages`: units per body stage (`ArchSpec.with_depths`), then `filters`
   (explicit per-layer filters, `ArchSpec.with_filters`);
2. `organize`: the 3DRF stage organizer (`kerascnn.transforms.organizer`,
   section 4 of Wang et al., CIKM 2021) moves units between stages;
3. `template`: the filter-distribution template
   (`kerascnn.transforms.templates`, Jeong et al.);
4. `width_multiplier`: every templated filter count is scaled;
5. `kernel`: the kernel decomposer (`kerascnn.transforms.decomposer`) replaces
   standard convolutions with DW+PW / DW+GPW / DW+RPW blocks.

The organizer runs before the template because it decides *how many* units
each stage has from the architecture's own geometry, while a template only
redistributes the filters over the units that exist: templating first would
let the template's filter counts steer the depths, and the template would then
be applied to a depth it was not computed for. The decomposer runs last
because it needs the final channel counts (GPW/RPW groups must divide them).

Every argument is checked before any transform runs.

Example:

>>> from kerascnn.zoo import vgg
>>> spec = transform(vgg.vgg_spec("vgg11"), organize=True, template="uniform")
>>> len(set(spec.filters()))
1
"""

from __future__ import annotations

import dataclasses

from kerascnn import _checks
from kerascnn.arch.geometry import check_depth
from kerascnn.arch.spec import ArchSpec
from kerascnn.transforms import decomposer, organizer, rf3d, templates

#: The order in which `transform` applies its steps.
ORDER = ("stages", "filters", "organize", "template", "width_multiplier", "kernel")

DEFAULT_INPUT_SHAPE = (32, 32, 3)


@dataclasses.dataclass(frozen=True)
class TransformReport:
    """What the steps of `transform` did (with `return_report=True`).

    Attributes:
        organizer: the `kerascnn.transforms.organizer.OrganizerResult` (step log,
            3DRF tables before and after), or None without `organize`.
        decomposer: the report dict of `decomposer.decompose_with_report`, or
            None without `kernel`.
        before: the spec after `stages` and `filters`, before the organizer.
    """

    organizer: object = None
    decomposer: dict | None = None
    before: ArchSpec | None = None


def check_stages_size(spec, stages, max_units=None):
    """Refuses a huge `stages` before the spec is expanded (which is O(units))."""
    try:
        depths = [int(d) for d in stages if _checks._is_int(d)]
    except TypeError:
        return  # not iterable: `with_depths` raises the standard message
    body = spec.body_stage_indices()
    stems = sum(len(s.units) for i, s in enumerate(spec.stages) if i not in body)
    check_depth(stems + sum(d for d in depths if d > 0), max_units, value=stages)


def check_kernel_args(kernel_groups, kernel_overlap):
    """Checks the decomposer's `kernel_groups` (positive int) and `kernel_overlap`."""
    _checks.check_positive_int(kernel_groups, "kernel_groups")
    _checks.check_fraction(kernel_overlap, "kernel_overlap")


def _check_filters(filters):
    if isinstance(filters, (str, bytes)) or not hasattr(filters, "__iter__"):
        raise ValueError(
            "filters must be a list of positive integers, one per layer or "
            f"block. Received: filters={filters!r}"
        )
    return list(filters)


def _check_options(spec, options):
    """Checks every option of `transform` (cheap), before any transform runs."""
    if not isinstance(spec, ArchSpec):
        raise TypeError(
            f"spec must be a kerascnn.arch.spec.ArchSpec. Received: {type(spec).__name__}"
        )
    options["template"] = templates.canonical_template(options["template"])
    templates.check_width_multiplier(options["width_multiplier"])
    kernel, groups = options["kernel"], options["kernel_groups"]
    overlap = options["kernel_overlap"]
    if kernel is not None or groups != 2 or overlap != 0.5:
        check_kernel_args(groups, overlap)
    if kernel is not None:
        decomposer.check_kernel(kernel)
    _checks.check_bool(options["organize"], "organize")
    if options["organize"]:
        if options["theta"] is not None:
            organizer.check_theta(options["theta"])
        if options["rule"] is not None:
            _checks.check_one_of(options["rule"], "rule", organizer.RULES)
        rf3d.check_alpha(options["alpha"])
    _checks.check_bool(options["kernel_fallback"], "kernel_fallback")
    if options["filters"] is not None:
        options["filters"] = _check_filters(options["filters"])
    options["input_shape"] = tuple(options["input_shape"] or DEFAULT_INPUT_SHAPE)


def _round_to_groups(spec, groups):
    """Rounds every filter count up to a multiple of `groups` (GPW/RPW need it)."""
    return spec.with_filters([-(-f // groups) * groups for f in spec.filters()])


def _apply(spec, o):
    """Runs the steps of `transform` in `ORDER`; returns `(spec, TransformReport)`."""
    if o["stages"] is not None:
        check_stages_size(spec, o["stages"], o["max_units"])
        spec = spec.with_depths(o["stages"])
    if o["filters"] is not None:
        spec = spec.with_filters(o["filters"])
    before, organized, decomposed = spec, None, None
    if o["organize"]:
        organized = organizer.organize(
            spec,
            theta=o["theta"],
            alpha=o["alpha"],
            input_shape=o["input_shape"],
            rule=o["rule"],
        )
        spec = organized.spec
    spec = templates.apply_template(spec, o["template"], o["width_multiplier"])
    if o["kernel"] is not None:
        if o["round_to_groups"] and o["kernel"] in ("dw_gpw", "dw_rpw"):
            spec = _round_to_groups(spec, o["kernel_groups"])
        spec, decomposed = decomposer.decompose_with_report(
            spec,
            o["kernel"],
            groups=o["kernel_groups"],
            overlap=o["kernel_overlap"],
            shuffle=o["kernel_shuffle"],
            input_shape=o["input_shape"],
            fallback=o["kernel_fallback"],
        )
    return spec, TransformReport(organizer=organized, decomposer=decomposed, before=before)


def transform(
    spec,
    *,
    stages=None,
    filters=None,
    organize=False,
    theta=None,
    alpha=rf3d.DEFAULT_ALPHA,
    rule=None,
    template="base",
    width_multiplier=1.0,
    kernel=None,
    kernel_groups=2,
    kernel_overlap=0.5,
    kernel_shuffle=True,
    kernel_fallback=True,
    round_to_groups=False,
    input_shape=None,
    max_units=None,
    return_report=False,
):
    """Applies kerascnn's transforms to a spec, in the one documented order.

    The order is `stages` -> `filters` -> `organize` -> `template` ->
    `width_multiplier` -> `kernel` (see the module docstring for why).

    Args:
        spec: a `kerascnn.arch.spec.ArchSpec` (for example a zoo model's base spec).
        stages: optional units per body (non-stem) stage. Defaults to None.
        filters: optional explicit per-layer (per-block) filters. Defaults to None.
        organize: reorganize the stages with the 3DRF stage organizer
            (`kerascnn.transforms.organizer.organize`). Defaults to False.
        theta: the organizer's threshold (finite, >= 0). Defaults to None:
            the model's default (`organizer.default_settings`: 0 for VGG, as
            the paper sets it, else the fitted 0.1).
        alpha: decay of the 3DRF gain (> 0). Defaults to 3.0.
        rule: the organizer's rule, `"saturated"` or `"paper"`. Defaults to
            None: the model's default (`"paper"` for VGG, else `"saturated"`).
        template: a filter-distribution template of
            `kerascnn.transforms.templates.TEMPLATES`. Defaults to `"base"`.
        width_multiplier: positive float applied after the template.
            Defaults to 1.0.
        kernel: None (standard convolutions) or a kernel decomposition,
            `"dw_pw"`, `"dw_gpw"` or `"dw_rpw"`. Defaults to None.
        kernel_groups: groups `g` of GPW/RPW. Defaults to 2.
        kernel_overlap: overlap `o` of RPW, in [0, 1). Defaults to 0.5.
        kernel_shuffle: channel shuffle after GPW (`"dw_gpw"`). Defaults to True.
        kernel_fallback: give a full PW to the last replaced unit of a stage
            whose 3DRF the chosen block would shrink (`decomposer.decompose`'s
            `fallback`). Defaults to True; False reproduces the paper's
            Table 6 counts.
        round_to_groups: with `"dw_gpw"`/`"dw_rpw"`, round every filter count
            up to a multiple of `kernel_groups` before decomposing (the tuner
            does, so that a sampled width is never infeasible). Defaults to False.
        input_shape: `(height, width, channels)` of the organizer's and the
            decomposer's 3DRF geometry. Defaults to None (`(32, 32, 3)`).
        max_units: refuse `stages` asking for more layers/blocks than this
            (checked before the spec is expanded). Defaults to None (the
            `KERASCNN_MAX_UNITS` environment variable, else 2,000).
        return_report: also return a `TransformReport` (the organizer's step
            log, the decomposer's checks). Defaults to False.

    Returns:
        The new `ArchSpec`, or `(spec, TransformReport)` with `return_report=True`.

    Example:

    >>> from kerascnn.zoo import vgg
    >>> spec = transform(vgg.vgg_spec("vgg11"), stages=(1, 1, 1, 1, 1), width_multiplier=0.5)
    >>> spec.stage_depths()
    (1, 1, 1, 1, 1)
    """
    options = dict(
        stages=stages,
        filters=filters,
        organize=organize,
        theta=theta,
        alpha=alpha,
        rule=rule,
        template=template,
        width_multiplier=width_multiplier,
        kernel=kernel,
        kernel_groups=kernel_groups,
        kernel_overlap=kernel_overlap,
        kernel_shuffle=kernel_shuffle,
        kernel_fallback=kernel_fallback,
        round_to_groups=round_to_groups,
        input_shape=input_shape,
        max_units=max_units,
    )
    _check_options(spec, options)
    result, report = _apply(spec, options)
    return (result, report) if return_report else result
