import json
import os
import subprocess
import sys

import pytest

import kerascnn
from kerascnn import cli, plots

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run(capsys, *argv):
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_summary_table(capsys):
    code, out, err = _run(
        capsys, "summary", "vgg11", "--input-shape", "32,32,3", "--width", "0.125"
    )
    assert code == 0, err
    model = kerascnn.zoo.vgg11(input_shape=(32, 32, 3), classes=10, width_multiplier=0.125)
    assert f"Total params:         {model.count_params():,}" in out
    assert "stage1_conv1_conv (Conv2D)" in out
    assert "MACs (batch 1):" in out


def test_summary_json(capsys):
    code, out, err = _run(
        capsys,
        "summary",
        "resnet18",
        "--input-shape=16,16,3",
        "--classes=5",
        "--width=0.25",
        "--stages=1,1,1,1",
        "--template=uniform",
        "--json",
    )
    assert code == 0, err
    data = json.loads(out)
    model = kerascnn.zoo.resnet18(
        input_shape=(16, 16, 3),
        classes=5,
        width_multiplier=0.25,
        stages=(1, 1, 1, 1),
        template="uniform",
    )
    assert data["model"] == "resnet18"
    assert data["totals"]["params"] == model.count_params()
    assert data["totals"]["macs"] == sum(row["macs"] for row in data["layers"]) > 0
    assert data["layers"][-1]["filters"] == 5


def test_list(capsys):
    code, out, _ = _run(capsys, "list")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split() == ["name", "family", "description"]
    names = [line.split()[0] for line in lines[1:]]
    assert names == kerascnn.zoo.list_models()
    code, out2, _ = _run(capsys, "models", "--family", "resnet")
    assert code == 0 and len(out2.splitlines()) == 1 + len(kerascnn.zoo.list_models("resnet"))


def test_help(capsys):
    code, out, _ = _run(capsys, "--help")
    assert code == 0
    for command in ("summary", "plot-filters", "list"):
        assert command in out


def test_filter_distributions_vgg19():
    # The filter-template paper, section 3: VGG-19 has F = 5504 over D = 16
    # layers, so the uniform template gives 5504 / 16 = 344 filters per layer.
    d = plots.filter_distributions("vgg19")
    assert d["base"] == [64, 64, 128, 128] + [256] * 4 + [512] * 8
    assert d["reverse"] == d["base"][::-1]
    assert d["uniform"] == [344] * 16
    quad, neg = d["quadratic"], d["negative_quadratic"]
    assert quad[0] == quad[-1] > quad[7] and min(quad) == quad[7]  # U shape
    assert neg[0] == neg[-1] == 64 and max(neg) == neg[7]  # arch
    assert list(plots.filter_distributions("vgg19", templates="uniform")) == ["uniform"]


def test_plot_filters(capsys, tmp_path):
    path = tmp_path / "vgg19.png"
    code, out, err = _run(capsys, "plot-filters", "vgg19", "-o", str(path))
    assert code == 0, err
    with open(path, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    assert path.stat().st_size > 10_000
    assert str(path) in out
    assert os.listdir(tmp_path) == ["vgg19.png"]  # no temporary file left


@pytest.mark.parametrize(
    "argv, expected",
    [
        (["summary", "nope"], "Unknown model"),
        (["summary", "vgg11", "--template", "zigzag"], "Unknown template"),
        (["summary", "vgg11", "--width", "0"], "--width must be a positive number"),
        (["summary", "vgg11", "--width=-1"], "--width must be a positive number"),
        (["summary", "resnet18", "--stages", ""], "--stages must be comma-separated"),
        (["summary", "resnet18", "--stages=5,-5,4,2"], "Received: '5,-5,4,2'"),
        (["summary", "resnet18", "--stages", "5,5"], "stages must be 4 positive integers"),
        (["summary", "vgg11", "--input-shape", "8,8,3"], "Input too small"),
        (
            ["summary", "vgg11", "--input-shape", "32,32"],
            "--input-shape must be three comma-separated positive integers, e.g. 32,32,3. "
            "Received: '32,32'",
        ),
        (["summary", "vgg11", "--input-shape", "a,b,c"], "--input-shape must be three"),
        (["summary", "vgg11", "--classes", "0"], "classes must be a positive integer"),
        (["summary", "vgg11", "--classes", "x"], "invalid int value"),
        (["plot-filters", "vgg11", "-o", "/nonexistent-dir/x.png"], "does not exist"),
        (["plot-filters", "vgg11", "-o", "x.png", "--width", "0"], "--width must be"),
        (["plot-filters", "nope", "-o", "x.png"], "Unknown model"),
        (["plot-filters", "vgg11"], "required: -o/--output"),
        (["bogus"], "invalid choice"),
        ([], "a command is required"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(capsys, argv, expected):
    code, out, err = _run(capsys, *argv)
    assert code == 2
    assert out == ""
    assert len(err.strip().splitlines()) == 1, err
    assert "Traceback" not in err
    assert err.startswith("kerascnn")
    assert ": error: " in err
    assert expected in err


def test_command_name_convention():
    assert cli.command_name("add_plot_filters_parser") == "plot-filters"
    with pytest.raises(ValueError, match="add_<command>_parser"):
        cli.command_name("plot_filters")


def test_module_entry_point_subprocess():
    env = dict(os.environ, PYTHONPATH=REPO, TF_CPP_MIN_LOG_LEVEL="3")
    ok = subprocess.run(
        [sys.executable, "-m", "kerascnn", "summary", "compact_mnist_1k5_dw", "--json"],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=120,
    )
    assert ok.returncode == 0, ok.stderr
    # The efficient-CNN paper, Table 1: 1,560 (trainable) parameters.
    assert json.loads(ok.stdout)["totals"]["trainable_params"] == 1560
