"""Filter-distribution templates and the width multiplier.

Implements section 3 of "Filter redistribution templates for iteration-less
convolutional model reduction" (`../shared/papers/filter-redistribution-templates.txt`).
A network is seen as D layers with filters f_1..f_D and total F = sum f_l
(the classifier is not counted). For ResNet and Inception a block counts as
one layer (its bottleneck width, or the module's output channels), as the
paper does. A template keeps F (up to rounding) and changes how it is
distributed:

- ``base``: the original distribution.
- ``reverse``: f'_l = f_{D-l+1}.
- ``uniform``: f'_l = F / D (VGG-19: 5504 / 16 = 344, the paper's example).
- ``quadratic``: f'_l = a l^2 + b l + c with (i) sum f'_l = F,
  (ii) f'_{D/2} = f_min and (iii) f'_1 = f'_D.
- ``negative_quadratic``: same parabola with (i), f'_1 = f_min and
  f'_D = f_min.
- ``quadratic_ends`` (not one of the paper's five names, so not in
  `TEMPLATES`): the quadratic read from the paper's Table 2 rather than from
  its equations: (i) and f'_1 = f'_D = f_max ("we find the maximum value in
  both the initial and final convolutional layers"), the mirror of the
  negative quadratic. It reproduces Table 2's quadratic parameter counts of
  VGG-19 (15.78M vs 15.8M) and Inception (7.11M vs 7.2M), which the
  equations do not (19.42M, 7.63M); `tools/table2_search.py` and
  docs/templates.md show the search. ``quadratic`` stays the default
  reading because it is what section 3 defines (vertex at f_min).

Reading of equation (ii). The paper writes the vertex condition as
``(D^2/2) a + (D/2) b + c = f_min`` while stating it at l = D/2, where
a l^2 = (D^2/4) a. We take the condition exactly as the text states it,
``f'_{D/2} = f_min`` with l = D/2, i.e. ``(D^2/4) a + (D/2) b + c = f_min``:
the printed D^2/2 is a typo, since it evaluates a l^2 at l = D/sqrt(2)
instead of the l = D/2 the same sentence names (docs/templates.md compares
both readings on VGG-19).
Note that (iii) puts the true vertex at l = (D+1)/2, so for even D the
smallest value is slightly below f_min; we keep the paper's equations as
written rather than moving the point.

Rounding rule. Every template value and every width-multiplied value is
rounded half up to an integer and clipped to at least 1:
``max(1, floor(x + 0.5))``. The width multiplier is applied after the
template, to every templated layer, exactly as the paper does.

Example:

>>> from kerascnn.transforms import templates
>>> vgg19 = [64, 64, 128, 128] + [256] * 4 + [512] * 8
>>> templates.redistribute(vgg19, "uniform")[:3]
[344, 344, 344]
>>> templates.scale([344, 344], 0.5)
[172, 172]
"""

from __future__ import annotations

import math

import numpy as np

#: The template names, in the paper's order.
TEMPLATES = ("base", "reverse", "uniform", "quadratic", "negative_quadratic")

#: Other accepted templates (not in the sweeps over `TEMPLATES`): readings of the paper.
EXTRA_TEMPLATES = ("quadratic_ends",)

_ALIASES = {
    "reverse_base": "reverse",
    "neg_quadratic": "negative_quadratic",
    "negquad": "negative_quadratic",
    "original": "base",
    "none": "base",
    "quadratic_fmax": "quadratic_ends",
}


def canonical_template(template):
    """Returns the canonical name of `template`, or raises a ValueError.

    Accepts `None` (base), dashes or underscores and the paper's names
    ("Reverse-Base", "Negative-Quadratic").
    """
    if template is None:
        return "base"
    if not isinstance(template, str):
        raise TypeError(
            f"template must be a string, one of {TEMPLATES}. "
            f"Received: template={template!r} of type {type(template).__name__}"
        )
    key = template.strip().lower().replace("-", "_").replace(" ", "_")
    key = _ALIASES.get(key, key)
    if key not in TEMPLATES + EXTRA_TEMPLATES:
        raise ValueError(
            f"Unknown template. Expected one of {TEMPLATES + EXTRA_TEMPLATES}. "
            f"Received: template={template!r}"
        )
    return key


def round_filters(value):
    """Rounds half up to an integer of at least 1 (the rounding rule)."""
    return max(1, int(math.floor(float(value) + 0.5)))


def _check_filters(filters):
    filters = list(filters)
    if not filters:
        raise ValueError("filters must be a non-empty list. Received: []")
    for f in filters:
        if isinstance(f, bool) or not isinstance(f, (int, np.integer)) or f < 1:
            raise ValueError(
                f"Every filter count must be a positive integer. Received: filters={filters}"
            )
    return [int(f) for f in filters]


def quadratic_coefficients(filters, template):
    """Solves the paper's linear system for `(a, b, c)` of f'_l = a l^2 + b l + c.

    Args:
        filters: the base per-layer filters.
        template: `"quadratic"`, `"negative_quadratic"` or `"quadratic_ends"`.

    Returns:
        A tuple of floats `(a, b, c)`.
    """
    filters = _check_filters(filters)
    template = canonical_template(template)
    d = len(filters)
    if d < 3:
        raise ValueError(
            f"The {template} template needs at least 3 layers to define a "
            f"parabola. Received {d} layer(s): filters={filters}"
        )
    total = float(sum(filters))
    f_min = float(min(filters))
    # (i) sum_{l=1}^{D} (a l^2 + b l + c) = F
    row_sum = [d**3 / 3 + d**2 / 2 + d / 6, d**2 / 2 + d / 2, d]
    if template == "quadratic":
        rows = [
            row_sum,
            # (ii) f'_{D/2} = f_min, with (D/2)^2 = D^2/4 (see module docstring).
            [d**2 / 4, d / 2, 1.0],
            # (iii) f'_1 = f'_D  <=>  (D^2 - 1) a + (D - 1) b = 0.
            [d**2 - 1.0, d - 1.0, 0.0],
        ]
        rhs = [total, f_min, 0.0]
    elif template in ("negative_quadratic", "quadratic_ends"):
        # (ii) f'_1 and (iii) f'_D: f_min (negative quadratic) or f_max (quadratic_ends).
        rows = [row_sum, [1.0, 1.0, 1.0], [d**2, d, 1.0]]
        end = f_min if template == "negative_quadratic" else float(max(filters))
        rhs = [total, end, end]
    else:
        raise ValueError(
            "quadratic_coefficients needs template 'quadratic', 'negative_quadratic' or "
            f"'quadratic_ends'. Received: template={template!r}"
        )
    a, b, c = np.linalg.solve(np.array(rows), np.array(rhs))
    return float(a), float(b), float(c)


def redistribute(filters, template="base"):
    """Applies a filter-distribution template to per-layer filters.

    Args:
        filters: list of positive ints, one per layer (or block).
        template: one of `TEMPLATES` or `EXTRA_TEMPLATES`. Defaults to `"base"`.

    Returns:
        A new list of positive ints of the same length.

    Example:

    >>> redistribute([64, 128, 256], "reverse")
    [256, 128, 64]
    """
    filters = _check_filters(filters)
    template = canonical_template(template)
    d = len(filters)
    if template == "base":
        return list(filters)
    if template == "reverse":
        return filters[::-1]
    if template == "uniform":
        return [round_filters(sum(filters) / d)] * d
    if d < 3:
        # A parabola through fewer than 3 layers is not defined: with one or
        # two layers both quadratic templates reduce to the uniform one.
        return [round_filters(sum(filters) / d)] * d
    a, b, c = quadratic_coefficients(filters, template)
    return [round_filters(a * l * l + b * l + c) for l in range(1, d + 1)]


def scale(filters, width_multiplier=1.0):
    """Multiplies every filter count by `width_multiplier` (rounded, >= 1).

    Args:
        filters: list of positive ints.
        width_multiplier: positive float. Defaults to 1.0.
    """
    check_width_multiplier(width_multiplier)
    filters = _check_filters(filters)
    if width_multiplier == 1:
        return filters
    return [round_filters(f * width_multiplier) for f in filters]


def check_width_multiplier(width_multiplier, name="width_multiplier"):
    """Raises a ValueError unless `width_multiplier` is a positive number."""
    if (
        isinstance(width_multiplier, bool)
        or not isinstance(width_multiplier, (int, float, np.floating, np.integer))
        or not math.isfinite(float(width_multiplier))
        or width_multiplier <= 0
    ):
        raise ValueError(f"{name} must be a positive number. Received: {name}={width_multiplier!r}")


def check_no_vanishing_layer(filters, width_multiplier, model_name="the model"):
    """Refuses a width multiplier that would scale a layer to 0 filters.

    The rounding rule clips at one filter so that rounding residue never
    deletes a layer; a multiplier that takes a layer below half a filter
    (rounding to 0) is not residue but a degenerate net (e.g. 1e-6 turns
    every layer into one filter), so it is an error. The message gives the
    smallest multiplier accepted for `filters`.

    Args:
        filters: the per-layer filters the multiplier applies to.
        width_multiplier: a positive number.
        model_name: named in the error message.
    """
    smallest = min(filters)
    if smallest * width_multiplier < 0.5:
        raise ValueError(
            f"width_multiplier={width_multiplier!r} is too small for {model_name}: its "
            f"narrowest layer ({smallest} filters) would get {smallest * width_multiplier:.3g} "
            f"filters, which rounds to 0. The smallest accepted value is "
            f"{0.5 / smallest:.4g}. Received: width_multiplier={width_multiplier!r}"
        )


def apply_template(spec, template="base", width_multiplier=1.0):
    """Returns `spec` with its filters redistributed, then width-multiplied.

    Args:
        spec: a `kerascnn.arch.spec.ArchSpec`.
        template: one of `TEMPLATES` or `EXTRA_TEMPLATES`. Defaults to `"base"`.
        width_multiplier: positive float applied after the template.
            Defaults to 1.0. A value that would round a layer to 0 filters
            raises a `ValueError` (see `check_no_vanishing_layer`).

    Example:

    >>> from kerascnn.zoo import vgg
    >>> spec = apply_template(vgg.vgg_spec("vgg19"), "uniform")
    >>> set(spec.filters())
    {344}
    """
    template = canonical_template(template)
    check_width_multiplier(width_multiplier)
    filters = redistribute(spec.filters(), template)
    check_no_vanishing_layer(filters, width_multiplier, repr(spec.name))
    filters = scale(filters, width_multiplier)
    return spec.with_filters(filters)
