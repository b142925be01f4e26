"""Tests of the stage-level organizer (section 4.1 of the 3DRF paper)."""

import pytest

from kerascnn.transforms.organizer import body_depths, organize
from kerascnn.zoo import mobilenet_v1, resnet, vgg


def test_mobilenet_layout():
    # Paper, section 5.1: MobileNet {1,2,2,6,2} -> {4,4,2,2,1} on CIFAR; four
    # units from the fourth stage and one from the last go to stages 1 and 2.
    result = organize(mobilenet_v1.mobilenet_spec(), theta=0.1, input_shape=(32, 32, 3))
    assert body_depths(result.spec) == (4, 4, 2, 2, 1)
    moves = [s for s in result.steps if s.action == "move"]
    assert len(moves) == 5 and result.steps[-1].action == "stop"
    assert sorted(s.unit.split("_")[0] for s in moves) == ["stage4"] * 4 + ["stage5"]
    assert {s.target for s in moves} == {1, 2}
    assert moves[0].delta_min == 0.0 and moves[0].delta_max == pytest.approx(0.8922, abs=1e-4)
    # Moved units take the channels of the stage they join.
    assert [u.filters for u in result.spec.stages[1].units] == [64] * 4


def test_resnet50_layout():
    # Paper: ResNet-50 {3,4,6,3} -> {5,5,4,2}: the last two blocks of stage 3 go
    # to stage 1, the last block of stage 4 to stage 2 (ImageNet geometry).
    result = organize(
        resnet.resnet_spec("resnet50", "imagenet"), theta=0.25, input_shape=(224, 224, 3)
    )
    assert body_depths(result.spec) == (5, 5, 4, 2)
    moves = [(s.unit, s.target) for s in result.steps if s.action == "move"]
    # 3DRF stage 1 is the ImageNet stem, so body stage k is 3DRF stage k + 1.
    assert moves == [("stage3_block6", 2), ("stage3_block5", 2), ("stage4_block3", 3)]
    assert [u.filters for u in result.spec.stages[1].units] == [64] * 5
    assert all(u.strides == 1 for u in result.spec.stages[1].units)


def test_vgg16_theta_zero_paper_rule():
    # theta = 0 for VGG (paper); the literal three-case rule gives VGG16-opt.
    result = organize(vgg.vgg_spec("vgg16"), theta=0.0, rule="paper")
    assert body_depths(result.spec) == (5, 4, 2, 1, 1)
    assert sum(body_depths(result.spec)) == 13


def test_remove_when_nothing_gains():
    # A huge theta: no target is worth it, saturated units are removed.
    result = organize(vgg.vgg_spec("vgg11"), theta=10.0)
    assert any(s.action == "remove" for s in result.steps)
    assert sum(body_depths(result.spec)) < 8
    assert all(d >= 1 for d in body_depths(result.spec))


def test_log_serialises():
    result = organize(mobilenet_v1.mobilenet_spec(), theta=0.1)
    data = result.to_dict()
    assert data["depths_after"] == [4, 4, 2, 2, 1]
    assert data["steps"][0]["action"] == "move"


@pytest.mark.parametrize("theta", [float("nan"), float("inf"), "0", -0.1])
def test_bad_theta(theta):
    with pytest.raises(ValueError, match="theta"):
        organize(vgg.vgg_spec("vgg11"), theta=theta)


def test_bad_arguments():
    with pytest.raises(ValueError, match="alpha"):
        organize(vgg.vgg_spec("vgg11"), alpha=0)
    with pytest.raises(ValueError, match="rule"):
        organize(vgg.vgg_spec("vgg11"), rule="other")


# --- Defaults (theta = 0 for VGG, section 4.1) and the theta scan ---


def test_default_settings_vgg_theta_zero():
    # "theta is set to 0 for VGG" (section 4.1): the paper's rule at theta 0
    # gives VGG16-opt {5,4,2,1,1} (Table 3: 5.10M parameters).
    from kerascnn.transforms.organizer import default_settings
    from kerascnn.transforms.pipeline import transform

    assert default_settings(vgg.vgg_spec("vgg16")) == (0.0, "paper")
    assert default_settings(mobilenet_v1.mobilenet_spec()) == (0.1, "saturated")
    result = organize(vgg.vgg_spec("vgg16"))
    assert (result.theta, result.rule) == (0.0, "paper")
    assert body_depths(result.spec) == (5, 4, 2, 1, 1)
    assert transform(vgg.vgg_spec("vgg16"), organize=True).stage_depths()[-5:] == (5, 4, 2, 1, 1)
    assert body_depths(organize(mobilenet_v1.mobilenet_spec()).spec) == (4, 4, 2, 2, 1)


def _layouts(scan):
    return {rule: {iv.depths: iv for iv in ivs} for rule, ivs in scan.items()}


def test_theta_scan_intervals_are_exact():
    from kerascnn.transforms.organizer import theta_scan

    spec = mobilenet_v1.mobilenet_spec()
    scan = theta_scan(spec, (32, 32, 3))
    for rule, intervals in scan.items():
        assert intervals[0].low == 0.0 and intervals[0].low_closed
        assert intervals[-1].high == float("inf")
        for a, b in zip(intervals, intervals[1:]):
            assert a.high == b.low and a.high_closed != b.low_closed and a.depths != b.depths
        # Every interval's ends and middle give its layout (checked for one rule: cost).
        for iv in intervals if rule == "saturated" else []:
            inside = [iv.low if iv.low_closed else None, (iv.low + min(iv.high, iv.low + 1)) / 2]
            inside.append(iv.high if iv.high_closed else None)
            for theta in [t for t in inside if t is not None]:
                assert body_depths(organize(spec, theta, rule=rule).spec) == iv.depths
    # docs/rf3d.md: MobileNet {4,4,2,2,1} for theta in (0, 0.1439] (saturated rule);
    # under the paper's rule only at the single point theta = 0.2974 (a tie
    # D'_max == theta, where none of the three cases applies).
    mobile = _layouts(scan)["saturated"][(4, 4, 2, 2, 1)]
    assert (mobile.low, mobile.low_closed) == (0.0, False)
    assert mobile.high == pytest.approx(0.1439, abs=1e-4) and mobile.high_closed
    point = _layouts(scan)["paper"][(4, 4, 2, 2, 1)]
    assert point.low == point.high == pytest.approx(0.2974, abs=1e-4)
    assert [iv.depths for iv in scan["paper"]].count((4, 4, 2, 2, 1)) == 1


def test_theta_scan_resnet50_and_vgg():
    from kerascnn.transforms.organizer import theta_scan

    # ResNet-50 {5,5,4,2}: ImageNet 224 geometry, saturated rule, theta in
    # (0.2077, 0.3085]; the paper's rule only at the tie theta = 0.3533 (issue #14.5).
    scan = _layouts(theta_scan(resnet.resnet_spec("resnet50", "imagenet"), (224, 224, 3)))
    iv = scan["saturated"][(5, 5, 4, 2)]
    assert iv.low == pytest.approx(0.2077, abs=1e-4) and not iv.low_closed
    assert iv.high == pytest.approx(0.3085, abs=1e-4) and iv.high_closed
    point = scan["paper"][(5, 5, 4, 2)]
    assert point.low == point.high == pytest.approx(0.3533, abs=1e-4)
    # VGG-16 {5,4,2,1,1}: the paper's rule at theta = 0.
    vgg16 = _layouts(theta_scan(vgg.vgg_spec("vgg16"), (32, 32, 3), rules=("paper",)))
    assert vgg16["paper"][(5, 4, 2, 1, 1)].low == 0.0
