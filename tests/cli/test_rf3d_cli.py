"""`kerascnn rf3d` and `kerascnn optimize` from the command line (in-process)."""

import json
import re

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


# --- subprocess: `kerascnn optimize --theta-scan`, `--no-fallback`, `--measure` ---


def _kerascnn(*argv, timeout=300):
    import subprocess
    import sys

    from harness import ROOT, subprocess_env

    proc = subprocess.run(
        [sys.executable, "-m", "kerascnn", *argv],
        capture_output=True,
        text=True,
        env=subprocess_env(),
        timeout=timeout,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


def test_theta_scan_subprocess():
    # issue #14.5: both rules over theta; the paper's MobileNet layout on an
    # interval under the saturated rule (CIFAR geometry), marked as the paper's;
    # under the paper's rule only at the tie theta = 0.2974.
    out = _kerascnn("optimize", "mobilenet", "--input-shape", "32,32,3", "--theta-scan")
    paper_rule = out.split("rule=paper:")[1]
    saturated = out.split("rule=saturated:")[1].split("rule=paper:")[0]
    assert "theta in (0.0000, 0.1439]     -> [4, 4, 2, 2, 1]  <- paper" in saturated
    assert paper_rule.count("<- paper") == 1
    assert "theta in [0.2974, 0.2974]     -> [4, 4, 2, 2, 1]  <- paper" in paper_rule
    assert "at 32x32x3" in out and "layout before: [1, 2, 2, 6, 2]" in out


def test_no_fallback_and_measure_subprocess():
    # Output format of --measure (not speed) on a tiny model, --no-fallback in the report.
    out = _kerascnn(
        "optimize", "vgg11", "--width", "0.125", "--kernel", "dw_gpw", "--groups", "2",
        "--no-fallback", "--measure", "--batch-size", "2", "--steps", "1", "--repeats", "2",
    )  # fmt: skip
    assert "3DRF shrinks in stage(s)" in out and "DW+PW fallback" not in out
    lines = [line for line in out.splitlines() if "measured speed-up" in line]
    assert len(lines) == 1, out
    assert re.search(r"measured speed-up: \d+\.\d\dx .*MAC ratio: \d+\.\d\dx", lines[0])
    assert re.search(r"A/A control: \d+\.\d\dx", lines[0])
    assert re.search(r"before: \d+\.\d ms +after: \d+\.\d ms", out)
