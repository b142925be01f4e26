"""`kerascnn rf3d` and `kerascnn optimize` from the command line (in-process)."""

import json

import pytest

from kerascnn import cli


def test_rf3d_json_lists_stages(capsys):
    assert cli.main(["rf3d", "vgg11", "--input-shape", "32,32,3", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    text = json.dumps(data)
    # VGG-11 has five stages at 32x32 (a pool ends each of them).
    assert "stage5_conv1" in text and "stage1_conv1" in text


def test_optimize_mobilenet_reaches_paper_layout(capsys):
    # The organizer's MobileNet layout {1,2,2,6,2} -> {4,4,2,2,1} (3DRF paper, section 4.1),
    # at the CIFAR geometry documented in docs/rf3d.md (theta = 0.1).
    argv = ["optimize", "mobilenet", "--input-shape", "32,32,3", "--theta", "0.1", "--json"]
    code = cli.main(argv)
    assert code == 0
    data = json.loads(capsys.readouterr().out)
    text = json.dumps(data)
    assert "[4, 4, 2, 2, 1]" in text.replace("(", "[").replace(")", "]")


@pytest.mark.parametrize(
    "argv",
    [
        ["rf3d", "nomodel"],
        ["optimize", "vgg11", "--theta", "-1"],
        ["optimize", "vgg11", "--kernel", "dw_rpw", "--groups", "3"],
        ["optimize", "vgg11", "--kernel", "dw_rpw", "--overlap", "1.5"],
    ],
)
def test_bad_input_is_one_line(argv, capsys):
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err
    assert len(err.splitlines()) == 1, err
