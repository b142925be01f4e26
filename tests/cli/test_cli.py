import json
import os
import subprocess
import sys

import pytest
from harness import ROOT

import kerascnn
from kerascnn import cli
from kerascnn.observe import plots

REPO = ROOT


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


# Runs in a fresh interpreter, as the `kerascnn` console script does.
_FAST_START = r"""
import json, os, sys
import kerascnn_cli

codes = [kerascnn_cli.main(argv) for argv in json.loads(sys.argv[1])]
state = {
    "codes": codes,
    "tensorflow": "tensorflow" in sys.modules,
    "keras": "keras" in sys.modules,
    "flag_left": "KERASCNN_CLI_DEFER_REGISTRATION" in os.environ,
}
# A command that builds a model registers kerascnn's serializable objects first.
state["summary"] = kerascnn_cli.main(["summary", "compact_mnist_1k5_dw", "--json"])
modules = ("kerascnn.layers.blurpool", "kerascnn.training.schedules")
state["registered"] = all(m in sys.modules for m in modules)
print("STATE " + json.dumps(state))
"""


def test_help_version_and_list_do_not_import_tensorflow():
    names = list(cli.SUBCOMMANDS)
    helps = [["--help"], ["--version"]] + [[name, "--help"] for name in names]
    helps += [["list"], ["rf3d", "vgg11"]]  # spec-only commands: no TensorFlow either
    env = dict(os.environ, PYTHONPATH=REPO, TF_CPP_MIN_LOG_LEVEL="3")
    proc = subprocess.run(
        [sys.executable, "-c", _FAST_START, json.dumps(helps)],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=300,
    )
    lines = [line for line in proc.stdout.splitlines() if line.startswith("STATE ")]
    assert proc.returncode == 0 and lines, proc.stderr[-2000:]
    state = json.loads(lines[-1][len("STATE ") :])
    assert state["codes"] == [0] * len(helps)
    assert not state["tensorflow"] and not state["keras"]
    assert not state["flag_left"]  # not inherited by the command's child processes
    assert state["summary"] == 0 and state["registered"]


def test_module_entry_point_help_does_not_import_tensorflow():
    env = dict(os.environ, PYTHONPATH=REPO)
    env.pop("KERASCNN_CLI_DEFER_REGISTRATION", None)
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "kerascnn", "--help"],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=120,
    )
    assert proc.returncode == 0 and "plot-stability" in proc.stdout, proc.stderr[-2000:]
    imported = [line.rsplit("|", 1)[-1].strip() for line in proc.stderr.splitlines()]
    assert "kerascnn.cli" in imported
    assert not [m for m in imported if m.split(".")[0] in ("tensorflow", "keras")]


def test_width_multiplier_is_an_alias_of_width(capsys):
    parser = cli.build_parser()
    for argv in (
        ["summary", "vgg11"],
        ["plot-filters", "vgg11", "-o", "x.png"],
        ["rf3d", "vgg11"],
        ["optimize", "vgg11"],
        ["train"],
    ):
        long = parser.parse_args(argv + ["--width-multiplier", "0.5"])
        short = parser.parse_args(argv + ["--width", "0.5"])
        assert float(long.width) == float(short.width) == 0.5, argv
    _, by_alias, err = _run(capsys, "summary", "vgg11", "--width-multiplier", "0.125", "--json")
    _, by_width, _ = _run(capsys, "summary", "vgg11", "--width", "0.125", "--json")
    assert by_alias == by_width and json.loads(by_alias)["totals"]["params"] > 0, err


def test_train_verbose_0_prints_one_summary_line(capsys, tmp_path, monkeypatch):
    monkeypatch.delenv("KERASCNN_DATA_DIR", raising=False)
    monkeypatch.setenv("KERASCNN_CACHE_DIR", str(tmp_path / "cache"))
    out_dir = tmp_path / "run"
    code, out, err = _run(
        capsys,
        "train",
        "--model=compact_mnist_1k5_dw",
        "--epochs=1",
        "--limit=128",
        "--batch-size=64",
        "--verbose=0",
        f"--output-dir={out_dir}",
    )
    assert code == 0, err
    lines = out.strip().splitlines()
    assert len(lines) == 1, out
    with open(out_dir / "report.json") as f:
        report = json.load(f)
    assert str(out_dir) in lines[0]
    assert f"test accuracy {report['test_accuracy']:.4f}" in lines[0]


@pytest.mark.parametrize(
    "argv, first",
    [
        (["train", "--dataset", "imagenette"], "Dataset 'imagenette' has 128x128x3 images"),
        (["train", "--dataset", "mnist", "--model", "vgg11"], "Dataset 'mnist' has 28x28x1"),
    ],
)
def test_train_dataset_model_mismatch_names_the_dataset_first(capsys, tmp_path, argv, first):
    code, out, err = _run(capsys, *argv, "--epochs", "1", "--output-dir", str(tmp_path / "o"))
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1, err
    assert err.startswith(f"kerascnn train: error: {first}"), err
    assert "--model" in err  # says what to change


def test_plot_stability_uses_the_rule_recorded_with_the_run(capsys, tmp_path):
    # r=1, patience=2 fires at epoch 4 (0.4 at epochs 2..4); the paper's rule
    # (r=2, patience=3) fires at epoch 9 (0.44 at epochs 6..9).
    values = [0.5, 0.4, 0.41, 0.42, 0.43, 0.44, 0.44, 0.44, 0.44]
    run = tmp_path / "run"
    (run / "logs").mkdir(parents=True)
    csv_path = run / "logs" / "log.csv"
    csv_path.write_text(
        "epoch,loss,stability/conv\n" + "".join(f"{e},1.0,{v}\n" for e, v in enumerate(values))
    )
    report = {"stability": {"decimals": 1, "patience": 2, "start_from_epoch": 0}}
    png = str(tmp_path / "s.png")
    code, out, err = _run(capsys, "plot-stability", str(csv_path), "-o", png)
    assert code == 0, err
    assert "stop at epoch 9" in out and "r=2, patience=3" in out  # no report: the paper's rule
    (run / "report.json").write_text(json.dumps(report))
    code, out, err = _run(capsys, "plot-stability", str(csv_path), "-o", png)
    assert code == 0, err
    assert "stop at epoch 4" in out and "r=1, patience=2" in out
    assert str(run / "report.json") in out
    code, out, err = _run(capsys, "plot-stability", str(csv_path), "-o", png, "--patience", "3")
    assert code == 0, err
    assert "stop at epoch 5" in out and "r=1, patience=3" in out  # the option wins
    (run / "report.json").write_text("{not json")
    code, out, err = _run(capsys, "plot-stability", str(csv_path), "-o", png)
    assert code == 2 and "report.json" in err and len(err.strip().splitlines()) == 1
