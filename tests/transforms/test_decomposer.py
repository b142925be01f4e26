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


# --- Table 6 of the 3DRF paper (kernel-level design, CIFAR-10, VGG16-opt {5,4,2,1,1}) ---

#: Table 6: MFLOPs and parameters (M) of VGG16-opt and its decompositions.
TABLE6 = {
    "baseline": (370, 9.64),
    ("dw_pw", 1): (50, 1.11),
    ("dw_gpw", 2): (30, 0.67),
    ("dw_gpw", 4): (20, 0.36),
    ("dw_gpw", 8): (10, 0.20),
    ("dw_rpw", 2): (30, 0.66),  # o = 33% and 50% have the same counts
    ("dw_rpw", 4): (20, 0.36),
    ("dw_rpw", 8): (10, 0.20),
}
TABLE6_DECOMPOSED = [k for k in TABLE6 if k not in ("baseline", ("dw_pw", 1))]


def _vgg16_opt():
    return vgg.vgg_spec("vgg16").with_depths((5, 4, 2, 1, 1))


def _totals(spec):
    import keras

    from kerascnn.observe.summary import summarize

    totals = summarize(build_model(spec, input_shape=(32, 32, 3), classes=10)).totals
    keras.backend.clear_session()
    return totals["macs"], totals["params"]


@pytest.fixture(scope="module")
def table6():
    """Our (MACs, params) of every Table 6 row, decomposed without the fallback."""
    base = _vgg16_opt()
    rows = {"baseline": _totals(base)}
    for kernel, groups in [k for k in TABLE6 if k != "baseline"]:
        spec = decompose(base, kernel, groups=max(groups, 2), overlap=0.5, fallback=False)
        rows[(kernel, groups)] = _totals(spec)
    return rows


@pytest.mark.parametrize("row", TABLE6_DECOMPOSED, ids=lambda k: f"{k[0]}-g{k[1]}")
def test_table6_param_ratio_to_dw_pw(table6, row):
    # Table 6 reports the decompositions against DW+PW (e.g. DW+RPW-g2 "saving
    # about 40.0% FLOPs and 40.5% parameters" = 30/50 and 0.66/1.11): our
    # parameter ratio to DW+PW is within 15% of the paper's (0.60/0.32/0.18).
    paper = TABLE6[row][1] / TABLE6[("dw_pw", 1)][1]
    ours = table6[row][1] / table6[("dw_pw", 1)][1]
    assert ours == pytest.approx(paper, rel=0.15), (ours, paper)


@pytest.mark.parametrize("row", list(TABLE6), ids=str)
def test_table6_mflops_round_to_paper(table6, row):
    # Table 6 prints MFLOPs (MACs) rounded to tens: ours round to the same value.
    assert round(table6[row][0] / 1e7) * 10 == TABLE6[row][0], table6[row][0]


def test_table6_mac_ratios_and_dw_pw_against_baseline(table6):
    dw_pw = table6[("dw_pw", 1)]
    for row in TABLE6_DECOMPOSED:
        # The paper's MAC ratio is one of rounded values (20/50 may be 15/55 to
        # 25/45): ours lies within that range widened by 15%.
        low = (TABLE6[row][0] - 5) / (TABLE6[("dw_pw", 1)][0] + 5)
        high = (TABLE6[row][0] + 5) / (TABLE6[("dw_pw", 1)][0] - 5)
        assert 0.85 * low <= table6[row][0] / dw_pw[0] <= 1.15 * high
    # DW+PW against the baseline: params 1.11/9.64 = 0.115 (ours 0.12; the
    # absolute counts differ, Table 6's baseline has 9.64M where Table 3 says
    # 5.10M for the same VGG16-opt, ours 5.10M).
    assert dw_pw[1] / table6["baseline"][1] == pytest.approx(1.11 / 9.64, rel=0.15)
    assert table6["baseline"][1] == pytest.approx(5.10e6, rel=0.01)


def test_table6_needs_no_fallback(table6):
    # With the (default) DW+PW fallback the one-conv stages 4 and 5 keep dense
    # PW kernels: DW+GPW-g8 keeps 0.75 of DW+PW's parameters, not Table 6's 0.18.
    spec, report = decompose_with_report(_vgg16_opt(), "dw_gpw", groups=8)
    assert [s["stage"] for s in report["stages"] if s["fallback"]] == [4, 5]
    macs, params = _totals(spec)
    assert params / table6[("dw_pw", 1)][1] > 0.7
    # fallback=False: every conv but the first gets GPW, 3DRF shrinks there.
    strict, report = decompose_with_report(_vgg16_opt(), "dw_gpw", groups=8, fallback=False)
    assert report["fallback"] is False
    assert not any(s["fallback"] for s in report["stages"])
    assert [s["stage"] for s in report["stages"] if not s["quality_final"]] == [4, 5]
    kinds = {u.option("pointwise") for _, _, u in strict.units() if u.kind == "separable"}
    assert kinds == {"gpw"}


def test_pipeline_threads_fallback():
    from kerascnn.transforms.pipeline import transform

    got = transform(_vgg16_opt(), kernel="dw_gpw", kernel_groups=4, kernel_fallback=False)
    assert got == decompose(_vgg16_opt(), "dw_gpw", groups=4, fallback=False)
    with pytest.raises(TypeError, match="fallback"):
        decompose(_vgg16_opt(), fallback="no")
    with pytest.raises(TypeError, match="kernel_fallback"):
        transform(_vgg16_opt(), kernel="dw_pw", kernel_fallback=None)
