"""Tests for `kerascnn.transforms.templates` against section 3 and Table 2 of the paper.

Paper: "Filter redistribution templates for iteration-less convolutional model
reduction" (`shared/papers/filter-redistribution-templates.txt`).
"""

import math

import numpy as np
import pytest

from kerascnn import zoo
from kerascnn.arch.geometry import estimate_cost
from kerascnn.transforms import templates
from kerascnn.zoo import vgg

# VGG-19's sixteen convolutional layers (section 3: "a VGG19 model built
# exclusively with sixteen convolutional layers ... F = 5504").
VGG19 = [64, 64, 128, 128] + [256] * 4 + [512] * 8

# Our reading of the templates on VGG-19 (documented in docs/templates.md).
VGG19_LISTS = {
    "base": VGG19,
    "reverse": VGG19[::-1],
    "uniform": [344] * 16,
    "quadratic": [811, 624, 464, 331, 224, 144, 91, 64, 64, 91, 144, 224, 331, 464, 624, 811],
    "negative_quadratic": [
        64, 176, 272, 352, 416, 464, 496, 512, 512, 496, 464, 416, 352, 272, 176, 64
    ],
}  # fmt: skip


def _trainable(model):
    return sum(int(np.prod(w.shape)) for w in model.trainable_weights)


# --------------------------------------------------------------- section 3
def test_vgg19_has_sixteen_layers_and_5504_filters():
    # Section 3: D = 16 convolutional layers, F = 5504.
    filters = vgg.vgg_spec("vgg19").filters()
    assert filters == VGG19
    assert len(filters) == 16
    assert sum(filters) == 5504


def test_uniform_worked_example():
    # Section 3, Uniform Template: "f'_l = 5504/16 = 344 filters in each layer".
    assert templates.redistribute(VGG19, "uniform") == [344] * 16


def test_reverse():
    # Section 3, Reverse Template: f'_l = f_{D-l+1}.
    assert templates.redistribute(VGG19, "reverse") == VGG19[::-1]
    assert templates.redistribute([3, 5, 9], "reverse") == [9, 5, 3]


def test_base_is_identity_copy():
    filters = list(VGG19)
    out = templates.redistribute(filters, "base")
    assert out == VGG19
    assert out is not filters


@pytest.mark.parametrize("template", templates.TEMPLATES)
def test_vgg19_lists(template):
    assert templates.redistribute(VGG19, template) == VGG19_LISTS[template]


def test_quadratic_satisfies_its_equations():
    # Section 3, Quadratic Template: (i) sum = F, (ii) f'_{D/2} = f_min (read
    # with (D/2)^2 = D^2/4), (iii) f'_1 = f'_D.
    d, total, f_min = 16, 5504, 64
    a, b, c = templates.quadratic_coefficients(VGG19, "quadratic")

    def f(l):
        return a * l * l + b * l + c

    assert math.isclose(sum(f(l) for l in range(1, d + 1)), total, rel_tol=1e-9)
    assert math.isclose(f(d / 2), f_min, rel_tol=1e-9)
    assert math.isclose(f(1), f(d), rel_tol=1e-9)
    assert a > 0  # a parabola with a minimum
    rounded = templates.redistribute(VGG19, "quadratic")
    assert rounded[0] == rounded[-1] == max(rounded)
    assert rounded[d // 2 - 1] == f_min
    # Rounding moves the sum by at most 1/2 per layer.
    assert abs(sum(rounded) - total) <= d / 2


def test_negative_quadratic_satisfies_its_equations():
    # Section 3, Negative Quadratic Template: (i) sum = F, (ii) f'_1 = f_min,
    # (iii) f'_D = f_min.
    d, total, f_min = 16, 5504, 64
    a, b, c = templates.quadratic_coefficients(VGG19, "negative_quadratic")
    assert math.isclose(a + b + c, f_min, rel_tol=1e-9)
    assert math.isclose(d * d * a + d * b + c, f_min, rel_tol=1e-9)
    assert math.isclose(sum(a * l * l + b * l + c for l in range(1, d + 1)), total, rel_tol=1e-9)
    assert a < 0
    rounded = templates.redistribute(VGG19, "negative_quadratic")
    assert rounded[0] == rounded[-1] == f_min
    assert abs(sum(rounded) - total) <= d / 2


@pytest.mark.parametrize("template", templates.TEMPLATES)
@pytest.mark.parametrize("model_name", ["resnet50", "inception", "mobilenet", "vgg11"])
def test_templates_keep_total_and_length(model_name, template):
    base = zoo.get_spec(model_name).filters()
    out = templates.redistribute(base, template)
    assert len(out) == len(base)
    assert all(isinstance(f, int) and f >= 1 for f in out)
    assert abs(sum(out) - sum(base)) <= len(base) / 2


def test_quadratic_with_fewer_than_three_layers_is_uniform():
    assert templates.redistribute([10, 31], "quadratic") == [21, 21]
    assert templates.redistribute([7], "negative_quadratic") == [7]
    with pytest.raises(ValueError, match="at least 3 layers"):
        templates.quadratic_coefficients([10, 31], "quadratic")


# --------------------------------------------------------------- rounding rule
@pytest.mark.parametrize(
    "value, expected",
    [(2.5, 3), (3.5, 4), (2.4999, 2), (0.5, 1), (0.49, 1), (0.0, 1), (-3.0, 1), (343.5, 344)],
)
def test_round_filters_is_half_up_and_at_least_one(value, expected):
    # max(1, floor(x + 0.5)): half up (not banker's rounding), never 0.
    assert templates.round_filters(value) == expected


def test_uniform_rounds_half_up():
    # 5 / 2 = 2.5 -> 3 (Python's round would give 2).
    assert templates.redistribute([2, 3], "uniform") == [3, 3]


# --------------------------------------------------------------- width multiplier
def test_scale():
    assert templates.scale([344, 344], 0.5) == [172, 172]
    assert templates.scale([3, 5, 64], 0.5) == [2, 3, 32]  # 1.5 -> 2, 2.5 -> 3
    assert templates.scale([1, 2], 0.1) == [1, 1]  # never below one filter
    assert templates.scale([10, 20], 1.6) == [16, 32]
    assert templates.scale([7, 9], 1) == [7, 9]


def test_width_multiplier_is_applied_after_the_template():
    spec = templates.apply_template(vgg.vgg_spec("vgg19"), "uniform", 0.5)
    assert spec.filters() == [172] * 16
    spec = templates.apply_template(vgg.vgg_spec("vgg19"), "reverse", 0.25)
    assert spec.filters() == [f // 4 for f in VGG19[::-1]]
    # Template first, then rounding of the multiplied values.
    quad = templates.apply_template(vgg.vgg_spec("vgg19"), "quadratic", 0.1).filters()
    assert quad == [templates.round_filters(f * 0.1) for f in VGG19_LISTS["quadratic"]]


# --------------------------------------------------------------- names and errors
@pytest.mark.parametrize(
    "name, canonical",
    [
        (None, "base"),
        ("Reverse-Base", "reverse"),
        ("Negative-Quadratic", "negative_quadratic"),
        (" UNIFORM ", "uniform"),
        ("quadratic", "quadratic"),
    ],
)
def test_canonical_template(name, canonical):
    assert templates.canonical_template(name) == canonical


def test_unknown_template():
    with pytest.raises(ValueError, match="Unknown template.*template='cubic'"):
        templates.redistribute(VGG19, "cubic")
    with pytest.raises(ValueError, match="Unknown template"):
        templates.apply_template(vgg.vgg_spec("vgg19"), "triangle")
    with pytest.raises(TypeError, match="template must be a string.*template=3"):
        templates.canonical_template(3)


@pytest.mark.parametrize("width", [0, -0.5, float("nan"), float("inf"), True, "1", None])
def test_bad_width_multiplier(width):
    with pytest.raises(ValueError, match="width_multiplier must be a positive number"):
        templates.scale(VGG19, width)
    with pytest.raises(ValueError, match="width_multiplier"):
        templates.apply_template(vgg.vgg_spec("vgg19"), "base", width)


@pytest.mark.parametrize("filters", [[], [64, 0], [64, -1], [64, 2.0], [True, 8]])
def test_bad_filters(filters):
    with pytest.raises(ValueError, match="filters"):
        templates.redistribute(filters, "uniform")


# --------------------------------------------------------------- Table 2
@pytest.mark.parametrize(
    "template, paper_millions",
    # Table 2 of the paper, "Parameters (Millions)", VGG-19 on CIFAR-10.
    [("base", 20.0), ("uniform", 16.0), ("negative_quadratic", 20.0)],
)
def test_table2_vgg19_parameters(template, paper_millions):
    # The CIFAR VGG-19 with batch norm and one dense layer, 10 classes, 32x32x3.
    model = zoo.build("vgg19_bn", input_shape=(32, 32, 3), classes=10, template=template)
    assert _trainable(model) == pytest.approx(paper_millions * 1e6, rel=0.02)


# Table 2 as a whole: the columns we reproduce and the ones we do not.
# Parameters from the spec (`estimate_cost`, equal to `count_params()`, which
# adds BatchNorm's moving statistics: < 0.3% here, well inside the 2%).
# tools/table2_search.py searches 1,152 readings of the paper (where (ii) puts
# the vertex or whether the ends are f_max, l from 0 or 1, rounding, what a
# ResNet "layer" and its filter number are, stem and shortcuts, F or
# parameters preserved): "quadratic_ends" reproduces every VGG-19 column, no
# reading reproduces the ResNet-50 departures below (docs/templates.md, "Table 2").
TABLE2 = {
    "vgg19_bn": dict(zip(templates.TEMPLATES, (20.0, 20.0, 16.0, 15.8, 20.0))),
    "resnet50": dict(zip(templates.TEMPLATES, (23.5, 23.1, 12.9, 19.0, 33.0))),
}
TABLE2_REPRODUCED = [
    ("vgg19_bn", "base"),
    ("vgg19_bn", "reverse"),
    ("vgg19_bn", "uniform"),
    ("vgg19_bn", "negative_quadratic"),
    ("resnet50", "base"),
]
# Our figures (millions) for the columns we do not reproduce.
TABLE2_DEPARTURES = {
    ("vgg19_bn", "quadratic"): 19.42,
    ("resnet50", "reverse"): 24.70,
    ("resnet50", "uniform"): 17.74,
    ("resnet50", "quadratic"): 36.06,
    ("resnet50", "negative_quadratic"): 31.86,
}


def _table2_params(model_name, template):
    spec = zoo.get_spec(model_name, input_shape=(32, 32, 3), template=template)
    return estimate_cost(spec, (32, 32, 3), classes=10)["params"]


@pytest.mark.parametrize("model_name, template", TABLE2_REPRODUCED)
def test_table2_reproduced_columns(model_name, template):
    # Table 2, "Parameters (Millions)", CIFAR-10: within 2%.
    paper = TABLE2[model_name][template] * 1e6
    assert _table2_params(model_name, template) == pytest.approx(paper, rel=0.02)


@pytest.mark.parametrize("key, ours", sorted(TABLE2_DEPARTURES.items()))
def test_table2_documented_departures(key, ours):
    # Table 2 columns we do not reproduce: pin our figure (so a change is seen)
    # and that it differs from the paper by more than 2% (docs/templates.md).
    model_name, template = key
    got = _table2_params(model_name, template)
    # `ours` is trainable parameters (docs/templates.md); `got` adds BN statistics (< 0.3%).
    assert got / 1e6 == pytest.approx(ours, rel=0.005)
    assert abs(got / (TABLE2[model_name][template] * 1e6) - 1) > 0.02


def test_quadratic_ends_satisfies_its_equations():
    # The Table 2 reading of the quadratic: (i) sum = F and f'_1 = f'_D = f_max
    # ("we find the maximum value in both the initial and final convolutional layers").
    a, b, c = templates.quadratic_coefficients(VGG19, "quadratic_ends")
    assert math.isclose(a + b + c, 512, rel_tol=1e-9)
    assert math.isclose(256 * a + 16 * b + c, 512, rel_tol=1e-9)
    assert math.isclose(sum(a * l * l + b * l + c for l in range(1, 17)), 5504, rel_tol=1e-9)
    assert a > 0
    rounded = templates.redistribute(VGG19, "quadratic_fmax")  # alias
    assert rounded == templates.redistribute(VGG19, "quadratic_ends")
    assert rounded[0] == rounded[-1] == 512 and min(rounded) == rounded[7] == rounded[8]
    assert abs(sum(rounded) - 5504) <= 8
    assert "quadratic_ends" not in templates.TEMPLATES  # not in the paper's five (sweeps)


@pytest.mark.parametrize(
    "model_name, paper_millions",
    # Table 2, "Parameters (Millions)", CIFAR-10, Quadratic column: reproduced by
    # the quadratic_ends reading (the default quadratic gives 19.42M and 7.63M).
    [("vgg19_bn", 15.8), ("inception", 7.2)],
)
def test_table2_quadratic_column_with_quadratic_ends(model_name, paper_millions):
    got = _table2_params(model_name, "quadratic_ends")
    assert got == pytest.approx(paper_millions * 1e6, rel=0.02)
    assert abs(_table2_params(model_name, "quadratic") / (paper_millions * 1e6) - 1) > 0.05
