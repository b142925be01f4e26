"""Tests for `kerascnn.arch.spec`: JSON round trip, filters, depths, validation."""

import json

import pytest

from kerascnn import zoo
from kerascnn.arch.spec import ArchSpec, Head, Stage, Unit
from kerascnn.transforms import templates
from kerascnn.zoo import resnet


def _tiny():
    return ArchSpec(
        name="tiny",
        family="vgg",
        stages=(
            Stage("stage1", (Unit("conv", 16), Unit("conv", 16)), pool="max"),
            Stage("stage2", (Unit("conv", 32, strides=2),), pool="avg", pool_size=3),
        ),
        head=Head("flatten_dense", dropout=0.25),
    )


# --------------------------------------------------------------- JSON round trip
@pytest.mark.parametrize("template", templates.TEMPLATES)
@pytest.mark.parametrize("model_name", zoo.list_models())
def test_json_round_trip_every_zoo_spec(model_name, template):
    spec = zoo.get_spec(model_name, template=template)
    text = spec.to_json()
    restored = ArchSpec.from_json(text)
    assert restored == spec
    assert hash(restored) == hash(spec)
    # The JSON is plain data and stable: a second round trip gives the same text.
    assert restored.to_json() == text
    assert json.loads(text)["name"] == spec.name


@pytest.mark.parametrize("model_name", ["resnet50", "inception", "mobilenet", "vgg19"])
def test_json_round_trip_imagenet_variants(model_name):
    spec = zoo.get_spec(model_name, variant="imagenet")
    assert ArchSpec.from_json(spec.to_json(indent=2)) == spec


def test_round_trip_keeps_options_pool_and_head():
    spec = _tiny()
    unit = spec.stages[0].units[0].with_options(batch_norm=False, role="transition")
    spec = spec.with_filters([16, 16, 32])
    stage = Stage("stage1", (unit,), pool="max", pool_size=3, pool_strides=2, pool_padding="same")
    spec = ArchSpec("x", "custom", (stage,), Head("gap_dropout_dense", dropout=0.5))
    restored = ArchSpec.from_json(spec.to_json())
    assert restored == spec
    assert restored.stages[0].units[0].option("batch_norm") is False
    assert restored.stages[0].units[0].option("role") == "transition"
    assert restored.stages[0].pool_strides == 2
    assert restored.stages[0].pool_padding == "same"
    assert restored.head == Head("gap_dropout_dense", dropout=0.5)


def test_inception_filters_survive_json_as_tuple():
    spec = zoo.get_spec("inception")
    unit = ArchSpec.from_json(spec.to_json()).stages[1].units[0]
    assert unit.filters == (64, 96, 128, 16, 32, 32)
    assert isinstance(unit.filters, tuple)


# --------------------------------------------------------------- filters
def test_filters_and_with_filters():
    spec = _tiny()
    assert spec.filters() == [16, 16, 32]
    new = spec.with_filters([8, 24, 40])
    assert new.filters() == [8, 24, 40]
    # Everything else is untouched.
    assert new.stages[1].units[0].strides == 2
    assert new.stages[1].pool == "avg"
    assert new.head == spec.head
    assert spec.filters() == [16, 16, 32]  # immutable


def test_with_filters_skips_untemplated_units():
    spec = zoo.get_spec("resnet50")
    assert spec.stages[0].units[0].templated is False  # the stem
    filters = spec.filters()
    assert len(filters) == 16
    assert filters == [64] * 3 + [128] * 4 + [256] * 6 + [512] * 3
    new = spec.with_filters([32] * 16)
    assert new.stages[0].units[0].filters == 64
    assert all(u.filters == 32 for _, _, u in new.templated_units())


def test_with_filters_inception_scales_branches_to_exact_width():
    spec = zoo.get_spec("inception")
    assert spec.filters()[0] == 64 + 128 + 32 + 32
    new = spec.with_filters([128] * len(spec.filters()))
    for _, _, unit in new.templated_units():
        assert unit.width == 128
        assert all(f >= 1 for f in unit.filters)


@pytest.mark.parametrize(
    "filters, match",
    [
        ([16, 16], "Expected 3 filter values"),
        ([16, 16, 32, 8], "Expected 3 filter values"),
        ([16, 0, 32], "positive integer"),
        ([16, -4, 32], "positive integer"),
        ([16, 2.5, 32], "positive integer"),
        ([16, True, 32], "positive integer"),
    ],
)
def test_with_filters_errors(filters, match):
    with pytest.raises(ValueError, match=match):
        _tiny().with_filters(filters)


# --------------------------------------------------------------- depths
def test_with_depths_resnet50():
    spec = resnet.resnet_spec("resnet50")
    assert spec.stage_depths() == (1, 3, 4, 6, 3)
    new = spec.with_depths((5, 5, 4, 2))
    assert new.stage_depths() == (1, 5, 5, 4, 2)
    for stage_index in range(1, 5):
        units = new.stages[stage_index].units
        # The first unit of each stage keeps its stride (2, except stage1 which is 1).
        assert units[0].strides == (1 if stage_index == 1 else 2)
        assert all(u.strides == 1 for u in units[1:])
    widths = [[u.filters for u in s.units] for s in new.stages[1:]]
    assert widths == [[64] * 5, [128] * 5, [256] * 4, [512] * 2]
    assert new.downsampling == spec.downsampling == 8


def test_with_depths_shrink_to_one_keeps_downsampling():
    spec = resnet.resnet_spec("resnet18").with_depths((1, 1, 1, 1))
    assert spec.stage_depths() == (1, 1, 1, 1, 1)
    assert [s.units[0].strides for s in spec.stages[1:]] == [1, 2, 2, 2]


def test_with_depths_repeats_after_last_non_transition_unit():
    spec = zoo.get_spec("compact_mnist_7k")
    # stage1 is c8 c12 t8: grows by repeating c12 before the transition.
    new = spec.with_depths((4, 3, 2))
    units = new.stages[0].units
    assert [u.filters for u in units] == [8, 12, 12, 8]
    assert units[-1].option("role") == "transition"


@pytest.mark.parametrize(
    "depths",
    [(), (3, 4, 6), (3, 4, 6, 3, 1), (3, 0, 6, 3), (3, -1, 6, 3), (3, 4.0, 6, 3), 5, "3463"],
)
def test_with_depths_errors(depths):
    with pytest.raises(ValueError, match="stages"):
        resnet.resnet_spec("resnet50").with_depths(depths)


# --------------------------------------------------------------- validation
def test_bad_unit_kind():
    with pytest.raises(ValueError, match="Unknown unit kind.*kind='dense'"):
        Unit("dense", 16)


@pytest.mark.parametrize("filters", [0, -3, 1.5, True, "16", None])
def test_non_positive_filters(filters):
    with pytest.raises(ValueError, match="filters"):
        Unit("conv", filters)


@pytest.mark.parametrize("filters", [(1, 2, 3), (1, 2, 3, 4, 5, 0), 64])
def test_bad_inception_filters(filters):
    with pytest.raises(ValueError, match="inception unit needs 6"):
        Unit("inception", filters)


@pytest.mark.parametrize("kwargs", [{"kernel_size": 0}, {"strides": 0}, {"strides": 1.5}])
def test_bad_kernel_or_strides(kwargs):
    with pytest.raises(ValueError, match=list(kwargs)[0]):
        Unit("conv", 8, **kwargs)


@pytest.mark.parametrize("name", ["stage_1", "1stage", "", "stage 1", "head!", "étape"])
def test_bad_stage_names(name):
    with pytest.raises(ValueError, match="Stage name"):
        Stage(name, (Unit("conv", 8),))


def test_duplicate_or_reserved_stage_names():
    stage = Stage("stage1", (Unit("conv", 8),))
    with pytest.raises(ValueError, match="unique"):
        ArchSpec("x", "custom", (stage, stage))
    with pytest.raises(ValueError, match="not 'head'"):
        ArchSpec("x", "custom", (Stage("head", (Unit("conv", 8),)),))


def test_bad_pool_and_head():
    with pytest.raises(ValueError, match="pool=.*'median'"):
        Stage("stage1", (Unit("conv", 8),), pool="median")
    with pytest.raises(ValueError, match="Unknown head kind"):
        Head("mlp")
    with pytest.raises(ValueError, match="dropout"):
        Head("gap_dense", dropout=1.0)


def test_empty_spec_and_spec_without_units():
    with pytest.raises(ValueError, match="at least one stage"):
        ArchSpec("x", "custom", ())
    with pytest.raises(ValueError, match="neither units nor a pool"):
        Stage("stage1", ())
    with pytest.raises(ValueError, match="at least one unit"):
        ArchSpec("x", "custom", (Stage("stage1", (), pool="max"),))


def test_from_dict_errors():
    with pytest.raises(ValueError, match="needs 'stages'"):
        ArchSpec.from_dict({"name": "x"})
    with pytest.raises(ValueError, match="'kind' and 'filters'"):
        Unit.from_dict({"kind": "conv"})
    with pytest.raises(ValueError, match="needs a 'name'"):
        Stage.from_dict({"units": []})
