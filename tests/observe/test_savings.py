"""Tests of `kerascnn plot-savings` and the per-epoch records of report.json (issue #17)."""

import json

import pytest

from kerascnn import cli
from kerascnn.observe import savings
from kerascnn.training.report import epoch_records
from kerascnn.training.run import train

#: Two tiny runs: 256 embedded images, 3 epochs (`kerascnn train --limit 256 --epochs 3 ...`).
TINY = dict(
    model="compact_mnist_1k5_dw", epochs=3, limit=256, batch_size=64, verbose=0, plots=False
)


def _run(capsys, *argv):
    code = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    """A plain run and one with a Learn&Drop drop of 2 convolutions after the first epoch.

    The second is `kerascnn train --layer-dropping --force-drop 0:2` (0-based epoch 0).
    """
    base = tmp_path_factory.mktemp("savings")
    runs = {"plain": {}, "dropping": {"layer_dropping": True, "force_drop": "0:2"}}
    reports = {}
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv("KERASCNN_DATA_DIR", raising=False)  # the embedded data set, offline
        patch.setenv("KERASCNN_CACHE_DIR", str(base / "cache"))
        for name, extra in runs.items():
            train(**TINY, **extra, output_dir=str(base / name))
            with open(base / name / "report.json") as f:
                reports[name] = json.load(f)
    return base, reports


def test_per_epoch_records_are_monotonic_and_match_the_report(two_runs):
    _, reports = two_runs
    for name, report in reports.items():
        records = report["per_epoch"]
        assert [r["epoch"] for r in records] == [1, 2, 3], name
        elapsed = [r["elapsed_s"] for r in records]
        assert all(b > a >= 0 for a, b in zip([0] + elapsed, elapsed)), (name, elapsed)
        assert elapsed[-1] == pytest.approx(sum(report["epoch_times_s"]))
        totals = [r["macs_trained_total"] for r in records]
        assert all(b > a >= 0 for a, b in zip([0] + totals, totals)), (name, totals)
        assert totals[-1] == report["training_macs_estimate"]
        history = report["history"]
        assert [r["test_accuracy"] for r in records] == history["val_accuracy"]
        assert [r["train_accuracy"] for r in records] == history["accuracy"]
    # Without a drop: 3x the forward MACs per example, 256 examples, every epoch.
    plain = reports["plain"]
    assert [r["macs_trained"] for r in plain["per_epoch"]] == [3 * plain["macs"] * 256] * 3
    assert [r["dropped_convs"] for r in plain["per_epoch"]] == [0, 0, 0]


def test_dropped_run_trains_fewer_macs_after_the_drop(two_runs):
    _, reports = two_runs
    report = reports["dropping"]
    records, full = report["per_epoch"], report["macs"]
    assert [r["dropped_convs"] for r in records] == [0, 2, 2]
    assert report["layer_dropping"]["builds"][0]["epoch"] == 1
    first, build, cached = (r["macs_trained"] for r in records)
    # Epoch 2 builds the cache: the tail runs forward once (1x), the head trains (3x);
    # epoch 3 trains the head only, on the cache.
    assert records[1]["forward_macs"] == full and records[1]["trained_macs"] < full
    assert records[2]["forward_macs"] == records[2]["trained_macs"] == records[1]["trained_macs"]
    assert first == 3 * full * 256
    assert first > build > cached == 3 * records[2]["trained_macs"] * 256
    assert build == 256 * (full + 2 * records[1]["trained_macs"])
    assert report["training_macs_estimate"] < reports["plain"]["training_macs_estimate"]


def test_plot_savings_cli_draws_both_runs(two_runs, capsys):
    base, _ = two_runs
    png = base / "savings.png"
    code, out, err = _run(capsys, "plot-savings", base / "plain", base / "dropping", "-o", png)
    assert code == 0, err
    assert png.stat().st_size > 10_000
    lines = out.splitlines()
    assert lines[0] == f"Wrote {png} (2 runs: accuracy against training time and MACs)."
    assert lines[2].startswith("baseline ") and lines[2].endswith("reference")
    assert lines[3].startswith("layer dropping ") and "% MACs" in lines[3]
    run = savings.read_run(base / "dropping")
    assert run["drops"] == [(1, 2)] and run["per_epoch_test"] and run["stopped_epoch"] is None
    # Labels given on the command line, one per run.
    code, out, err = _run(
        capsys, "plot-savings", base / "plain", base / "dropping", "-o", png,
        "--label", "plain", "--label", "L&D",
    )  # fmt: skip
    assert code == 0 and "\nL&D " in out, err


def _write_report(folder, payload):
    folder.mkdir()
    (folder / "report.json").write_text(json.dumps(payload))
    return folder


def test_plot_savings_bad_inputs_are_one_line_errors(tmp_path, capsys):
    old = _write_report(tmp_path / "old", {"test_accuracy": 0.5, "history": {"loss": [1.0]}})
    interrupted = _write_report(tmp_path / "stopped", {"interrupted": True})
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "report.json").write_text("{not json")
    cases = {
        tmp_path / "missing": "run directory does not exist",
        tmp_path: "No report.json in",
        old: f"{old / 'report.json'} has no per-epoch records ('per_epoch')",
        interrupted: "interrupted run's report",
        broken: "is not valid JSON",
    }
    png = tmp_path / "s.png"
    for run_dir, message in cases.items():
        code, out, err = _run(capsys, "plot-savings", run_dir, "-o", png)
        assert code == 2 and out == "", (run_dir, out)
        assert len(err.strip().splitlines()) == 1 and message in err, err
        assert err.startswith("kerascnn plot-savings: error: "), err
    assert (
        "re-run the training with kerascnn >= 0.1.0" in _run(capsys, "plot-savings", old)[2].lower()
    )
    assert not png.exists()


def test_epoch_records_freezing_and_sam():
    history = {
        "loss": [1.0, 0.9],
        "learn_drop/frozen_convs": [0.0, 3.0],
        "learn_drop/train_macs": [100.0, 100.0],  # the frozen tail still runs forward
    }
    records = epoch_records(history, [2.0, 1.0], 10, 100, head_macs=lambda convs: 40)
    assert [r["macs_trained"] for r in records] == [3000, 10 * (100 + 2 * 40)]
    assert [r["elapsed_s"] for r in records] == [2.0, 3.0]
    assert records[0]["test_accuracy"] is None  # not measured: None, not a failure
    # SAM: two forward and backward passes per step.
    sam = epoch_records({"loss": [1.0]}, [1.0], 10, 100, sam=True)
    assert sam[0]["macs_trained"] == 2 * 3 * 100 * 10
    # MACs unknown: time and accuracy only.
    assert "macs_trained" not in epoch_records({"loss": [1.0]}, [1.0], 10, None)[0]


@pytest.mark.parametrize(
    "report, label",
    [
        ({"techniques_enabled": [], "stability": {"monitor_only": True}}, "baseline"),
        ({"stability": {"monitor_only": False}}, "stability stopping"),
        ({"techniques_enabled": ["layer_freezing", "layer_metrics"]}, "layer freezing"),
        ({"techniques_enabled": ["blurpool", "gap_head"]}, "blurpool + gap head"),
        ({"args": {"recipe": "efficient"}, "techniques_enabled": ["blurpool"]}, "recipe efficient"),
    ],
)
def test_method_label(report, label):
    assert savings.method_label(report) == label
