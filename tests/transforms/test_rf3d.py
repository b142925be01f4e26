"""Tests of the 3DRF metric (equations 4-7 of the 3DRF paper)."""

import dataclasses

import pytest

from kerascnn.arch.spec import ArchSpec, Stage
from kerascnn.transforms import rf3d
from kerascnn.transforms.rf3d import Kernel, analyze, gain, stage_table
from kerascnn.zoo import mobilenet_v1, resnet, vgg


def test_table_1_vgg11_third_stage():
    # Paper, Table 1: VGG-11 third stage, 8x8x128 input, a third conv3-256.
    rows = stage_table([Kernel("standard", 3, 256)] * 3, w0=8, c0=128)
    assert [r.rf_w for r in rows] == [3, 5, 7]
    assert [r.rf_c for r in rows] == [128, 128, 128]
    assert [r.rf for r in rows] == [1152, 3200, 6272]
    assert rows[0].gain is None
    assert round(rows[1].gain, 2) == 1.17
    # Equation 7 gives 0.2974 for layer 3; the paper prints 0.29 (truncated).
    assert rows[2].gain == pytest.approx(0.2974, abs=5e-5)
    assert abs(rows[2].gain - 0.29) < 0.01


def _vgg11_variant(i):
    base = vgg.vgg_spec("vgg11")
    stages = list(base.stages)
    units = stages[i].units
    stages[i] = dataclasses.replace(stages[i], units=units + (units[-1],))
    return dataclasses.replace(base, stages=tuple(stages))


def test_table_2_vgg11_variants():
    # Paper, Table 2: gain of the conv inserted before the i-th max pooling.
    expected = [1.73, 1.60, 0.29, 0.0, 0.0]
    for i, want in enumerate(expected):
        stages = analyze(_vgg11_variant(i), (32, 32, 3))
        got = stages[i].rows[-1].gain
        assert abs(got - want) < 0.01, (i + 1, got, want)
    # Variants 1, 2, 4, 5 match to two decimals exactly.
    got = [analyze(_vgg11_variant(i), (32, 32, 3))[i].rows[-1].gain for i in (0, 1, 3, 4)]
    assert [round(g, 2) for g in got] == [1.73, 1.60, 0.0, 0.0]


def test_geometry_and_units():
    stages = analyze(vgg.vgg_spec("vgg11"), (32, 32, 3))
    assert [(s.w0, s.c0) for s in stages] == [(32, 3), (16, 64), (8, 128), (4, 256), (2, 512)]
    # ResNet CIFAR: the stem conv shares stage 1's resolution; a stride starts a stage.
    stages = analyze(resnet.resnet_spec("resnet50"), (32, 32, 3))
    assert [s.w0 for s in stages] == [32, 16, 8, 4]
    assert [len(s.rows) for s in stages] == [4, 4, 6, 3]
    assert [r.rf_w for r in stages[2].rows] == [3, 5, 7, 8, 8, 8]
    # MobileNet: a DW+PW unit has full channel coverage, like a standard conv.
    stages = analyze(mobilenet_v1.mobilenet_spec(), (32, 32, 3))
    assert stages[3].rows[1].rf_c == 256 and stages[3].rows[1].rf_w == 4


def test_property_function():
    c0 = 16
    dw = rf3d.g(c0, Kernel("depthwise", 3))
    assert dw.count() == 1  # g(c, DW) = c
    assert rf3d.g(dw, Kernel("pointwise")).count() == c0  # g(c, PW) = c0
    assert rf3d.g(c0, Kernel("standard")).count() == c0
    gpw = rf3d.g(dw, Kernel("group_pointwise", groups=4))
    assert gpw.count() == 4  # c0 / g
    # Without shuffle, stacked group layers keep seeing the same group.
    again = rf3d.g(rf3d.g(gpw, Kernel("depthwise")), Kernel("group_pointwise", groups=4))
    assert again.count() == 4
    # With a shuffle, the next group layer sees g times more.
    shuffled = rf3d.g(dw, Kernel("group_pointwise", groups=4, shuffle=True))
    mixed = rf3d.g(shuffled, Kernel("group_pointwise", groups=4))
    assert mixed.count() == 16
    gc = rf3d.g(c0, Kernel("group", 3, groups=2))
    assert gc.count() == 8
    # RPW-2-0.5 on 16 channels: windows of 8; two layers reach all 16.
    rpw = rf3d.g(dw, Kernel("rolling_pointwise", groups=2, overlap=0.5))
    assert rpw.count() == 8
    assert rf3d.g(rpw, Kernel("rolling_pointwise", groups=2, overlap=0.5)).count() == 16


def test_gain_decay_alpha():
    assert gain(3200, 1152, 8192, alpha=1) > gain(3200, 1152, 8192, alpha=3)
    rows = stage_table([Kernel("standard")] * 2, 8, 128, alpha=1.0)
    assert rows[1].gain == pytest.approx((3200 - 1152) / 1152 * 2.718281828 ** (-1152 / 8192))


@pytest.mark.parametrize("alpha", [0, -1, float("nan"), "3", True])
def test_bad_alpha(alpha):
    with pytest.raises(ValueError, match="alpha"):
        analyze(vgg.vgg_spec("vgg11"), (32, 32, 3), alpha=alpha)


def test_bad_inputs():
    with pytest.raises(ValueError, match="overlap"):
        Kernel("rolling_pointwise", groups=2, overlap=1.0)
    with pytest.raises(ValueError, match="groups must divide"):
        rf3d.g(16, Kernel("group_pointwise", groups=3))
    with pytest.raises(ValueError, match="input_shape"):
        analyze(vgg.vgg_spec("vgg11"), (32, 16, 3))
    # A spec cannot have no convolution (ArchSpec refuses it, and so does rf3d).
    with pytest.raises(ValueError, match="at least one unit"):
        ArchSpec("p", "custom", (Stage("s1", (), pool="max"),))
    with pytest.raises(TypeError):
        analyze("vgg11")
