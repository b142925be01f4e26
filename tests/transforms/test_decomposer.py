"""Tests of the kernel decomposer (section 4.2 of the 3DRF paper)."""

import numpy as np
import pytest

from kerascnn.arch.spec import ArchSpec, Stage, Unit
from kerascnn.builder.model import build_model
from kerascnn.transforms.decomposer import decompose, decompose_with_report, replacement_rule
from kerascnn.zoo import vgg


def test_rule_of_kernel_replacement():
    # Block B (DW+PW) replaces one standard conv (Figure 4).
    rule = replacement_rule("dw_pw", 64)
    assert rule["blocks"] == 1 and rule["quality"] and rule["compact"]
    # Block E (DW+shuffle+GPW-g) and F (DW+RPW-g-o) match two standard convs,
    # like the paper's blocks C and D.
    for kernel, kw in [("dw_gpw", {"groups": 2}), ("dw_rpw", {"groups": 2, "overlap": 0.5})]:
        rule = replacement_rule(kernel, 64, **kw)
        assert rule["blocks"] == 2 and rule["quality"] and rule["compact"]
        assert rule["rf_block"] == rule["rf_standard"] == 5 * 5 * 64
    # Without shuffle, GPW never sees all channels: quality fails.
    rule = replacement_rule("dw_gpw", 64, groups=2, shuffle=False)
    assert rule["blocks"] is None and not rule["quality"]


def test_decompose_vgg_and_build():
    spec, report = decompose_with_report(vgg.vgg_spec("vgg11"), "dw_rpw", 2, 0.5)
    kinds = [u.kind for _, _, u in spec.units()]
    assert kinds[0] == "conv" and set(kinds[1:]) == {"separable"}
    # Stage 2 has one conv: RPW alone sees half of the channels, so it falls
    # back to DW+PW and every stage keeps its 3DRF (quality condition).
    assert report["stages"][1]["fallback"] == "stage2_conv1: DW+PW"
    assert all(s["quality_final"] for s in report["stages"])
    model = build_model(spec, input_shape=(32, 32, 3), classes=10)
    assert type(model.get_layer("stage3_sep1_pw_conv")).__name__ == "RollingPointwiseConv2D"
    base = build_model(vgg.vgg_spec("vgg11"), input_shape=(32, 32, 3), classes=10)
    assert model.count_params() < base.count_params() / 10
    y = model(np.zeros((1, 32, 32, 3), "float32"))
    assert y.shape == (1, 10)


def test_decompose_gpw_options():
    spec = decompose(vgg.vgg_spec("vgg11"), "dw_gpw", groups=4)
    unit = spec.stages[2].units[1]
    assert unit.option("pointwise") == "gpw" and unit.option("shuffle") is True
    assert unit.option("groups") == 4


def test_bad_inputs():
    with pytest.raises(ValueError, match="kernel"):
        decompose(vgg.vgg_spec("vgg11"), "dw_xx")
    with pytest.raises(ValueError, match="overlap"):
        decompose(vgg.vgg_spec("vgg11"), overlap=1.5)
    with pytest.raises(ValueError, match="groups must divide"):
        decompose(vgg.vgg_spec("vgg11"), "dw_rpw", groups=3)
    no_conv = ArchSpec("sep", "custom", (Stage("s1", (Unit("separable", 8),)),))
    with pytest.raises(ValueError, match="no standard convolution"):
        decompose(no_conv)
