"""`kerascnn.transforms.pipeline.transform`: the one spec -> spec pipeline and its order."""

import pytest

from kerascnn import zoo
from kerascnn.transforms import decomposer, organizer, templates
from kerascnn.transforms.pipeline import ORDER, TransformReport, transform


def _json(spec):
    return spec.to_json()


def test_order_is_documented():
    assert ORDER == ("stages", "filters", "organize", "template", "width_multiplier", "kernel")


def test_no_option_is_identity():
    base = zoo.get_info("vgg11").spec_fn("cifar")
    assert _json(transform(base)) == _json(base)


def test_steps_run_in_order():
    base = zoo.get_info("mobilenet").spec_fn("cifar")
    spec = transform(
        base,
        organize=True,
        theta=0.1,
        template="uniform",
        width_multiplier=0.5,
        kernel="dw_rpw",
        kernel_groups=2,
        kernel_overlap=0.5,
    )
    expected = organizer.organize(base, theta=0.1).spec
    expected = templates.apply_template(expected, "uniform", 0.5)
    expected = decomposer.decompose(expected, "dw_rpw", groups=2, overlap=0.5)
    assert _json(spec) == _json(expected)


def test_stages_and_filters_come_before_the_organizer():
    base = zoo.get_info("vgg11").spec_fn("cifar")
    spec = transform(base, stages=(2, 2, 2, 2, 2), organize=True, template="reverse-base")
    expected = organizer.organize(base.with_depths((2, 2, 2, 2, 2))).spec
    assert _json(spec) == _json(templates.apply_template(expected, "reverse-base"))


@pytest.mark.parametrize(
    "name,options",
    [
        ("vgg11", {}),
        ("vgg16_bn", {"template": "uniform", "width_multiplier": 0.25}),
        ("resnet18", {"stages": (1, 1, 1, 1), "template": "quadratic"}),
        ("resnet50", {"kernel": "dw_pw"}),
        ("mobilenet", {"template": "reverse-base", "kernel": "dw_gpw", "kernel_groups": 2}),
        ("vgg13", {"filters": [32] * 10, "kernel": "dw_rpw", "kernel_overlap": 0.25}),
        ("compact_mnist_5k", {"input_shape": (28, 28, 1)}),
    ],
)
def test_zoo_get_spec_is_transform_of_the_base_spec(name, options):
    info = zoo.get_info(name)
    shape = options.pop("input_shape", info.default_input_shape)
    got = zoo.get_spec(name, input_shape=shape, **options)
    expected = transform(info.spec_fn("cifar"), input_shape=shape, **options)
    assert _json(got) == _json(expected)


def test_report_has_the_organizer_log_and_the_decomposer_checks():
    base = zoo.get_info("mobilenet").spec_fn("cifar")
    spec, report = transform(base, organize=True, theta=0.1, kernel="dw_rpw", return_report=True)
    assert isinstance(report, TransformReport)
    assert _json(report.before) == _json(base)
    assert organizer.body_depths(report.organizer.spec) == (4, 4, 2, 2, 1)
    assert report.organizer.steps and report.decomposer is not None
    assert organizer.body_depths(spec) == (4, 4, 2, 2, 1)
    _, report = transform(
        zoo.get_info("vgg11").spec_fn("cifar"), kernel="dw_rpw", return_report=True
    )
    assert report.organizer is None and report.decomposer["replaced"]
    _, plain = transform(base, return_report=True)
    assert plain.organizer is None and plain.decomposer is None


def test_round_to_groups_makes_odd_widths_feasible():
    base = (
        zoo.get_info("vgg11").spec_fn("cifar").with_filters([63, 127, 255, 255, 511, 511, 511, 511])
    )
    with pytest.raises(ValueError):
        transform(base, kernel="dw_gpw", kernel_groups=2)
    spec = transform(base, kernel="dw_gpw", kernel_groups=2, round_to_groups=True)
    assert all(f % 2 == 0 for f in spec.filters())


@pytest.mark.parametrize(
    "options,match",
    [
        ({"template": "nope"}, "template"),
        ({"width_multiplier": 0}, "width_multiplier"),
        ({"kernel": "dw_xx"}, "kernel"),
        ({"kernel": "dw_rpw", "kernel_groups": 0}, "kernel_groups"),
        ({"kernel_overlap": 1.5}, "kernel_overlap"),
        ({"organize": True, "theta": -1.0}, "theta"),
        ({"filters": "64"}, "filters"),
        ({"stages": (10**6, 1, 1, 1, 1)}, "stages"),
    ],
)
def test_every_option_is_checked_before_any_work(options, match):
    base = zoo.get_info("vgg11").spec_fn("cifar")
    with pytest.raises(ValueError, match=match):
        transform(base, **options)


def test_spec_must_be_an_arch_spec():
    with pytest.raises(TypeError, match="ArchSpec"):
        transform("vgg11")
