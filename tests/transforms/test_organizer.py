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


@pytest.mark.parametrize("theta", [float("nan"), float("inf"), "0", None])
def test_bad_theta(theta):
    with pytest.raises(ValueError, match="theta"):
        organize(vgg.vgg_spec("vgg11"), theta=theta)


def test_bad_arguments():
    with pytest.raises(ValueError, match="alpha"):
        organize(vgg.vgg_spec("vgg11"), alpha=0)
    with pytest.raises(ValueError, match="rule"):
        organize(vgg.vgg_spec("vgg11"), rule="other")
