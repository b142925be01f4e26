"""Named recipes (`train(recipe="efficient")`), their savings breakdown and `validation_split`."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from harness import ROOT, subprocess_env

from kerascnn import cli, data
from kerascnn.training import breakdown, presets
from kerascnn.training.config import TrainConfig
from kerascnn.training.run import train

EFFICIENT = ("organize", "blurpool", "stability_stopping", "layer_dropping")


@pytest.fixture(autouse=True)
def _offline(monkeypatch, tmp_path):
    monkeypatch.delenv("KERASCNN_DATA_DIR", raising=False)
    monkeypatch.setenv("KERASCNN_CACHE_DIR", str(tmp_path / "cache"))


def test_recipe_sets_the_options_left_at_their_defaults():
    config = TrainConfig(recipe="efficient").validate()
    assert all(getattr(config, name) is True for name in EFFICIENT)
    assert config.template == "base" and config.recipe == "efficient"
    # Explicit options win; the recipe fills in the rest.
    config = TrainConfig(recipe="efficient", template="uniform", blurpool=True).validate()
    assert config.template == "uniform" and config.layer_dropping is True
    applied, overridden = presets.recipe_options(
        "efficient", {"template": "uniform"}, TrainConfig.defaults()
    )
    assert overridden == {"template": "uniform"} and "template" not in applied
    assert TrainConfig().validate().organize is False  # no recipe, nothing set


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (
            dict(recipe="fast"),
            r"recipe must be None or one of .efficient.. Received: recipe=.fast.",
        ),
        (dict(recipe=3), r"Received: recipe=3"),
        (dict(recipe="efficient", layer_freezing=True), "cannot be combined"),
        (dict(validation_split=0), r"Received: validation_split=0"),
        (dict(validation_split=1.0), r"Received: validation_split=1.0"),
        (dict(validation_split="0.1"), r"validation_split"),
    ],
)
def test_bad_recipe_and_validation_split(kwargs, match):
    with pytest.raises((ValueError, TypeError), match=match):
        TrainConfig(**kwargs).validate()


def test_cli_rejects_an_unknown_recipe(capsys):
    assert cli.main(["train", "--recipe", "fast"]) == 2
    assert "invalid choice: 'fast'" in capsys.readouterr().err


def _records(trained, elapsed, dropped):
    return [
        {"epoch": i + 1, "macs_trained": m, "elapsed_s": e, "dropped_convs": d}
        for i, (m, e, d) in enumerate(zip(trained, elapsed, dropped))
    ]


@pytest.mark.parametrize(
    "trained, dropped, planned",
    [
        ([300, 300, 300, 300], [0, 0, 0, 0], 4),  # nothing saved but the architecture
        ([300, 300, 120, 60], [0, 0, 2, 5], 10),  # drops and an early stop
        ([300], [0], 1),
    ],
)
def test_savings_breakdown_adds_up_exactly(trained, dropped, planned):
    elapsed = list(np.cumsum([2.0, 2.0, 1.0, 0.5][: len(trained)]))
    parts = breakdown.savings_breakdown(
        _records(trained, elapsed, dropped), planned, examples=10, macs=10, plain_macs=14
    )
    macs = parts["macs"]
    sources = sum(macs[s] for s in breakdown.SOURCES)
    assert macs["plain_planned"] - sources == macs["trained"] == sum(trained)
    assert macs["saved"] == sources
    assert macs["architecture"] == 3 * 4 * 10 * planned
    assert macs["stability_stopping"] == (planned - len(trained)) * 300
    assert parts["fraction"]["saved"] == pytest.approx(macs["saved"] / macs["plain_planned"])
    time_s = parts["time_s"]
    assert time_s["trained"] == pytest.approx(elapsed[-1])
    assert time_s["stability_stopping"] == pytest.approx((planned - len(trained)) * 2.0)
    assert time_s["architecture"] is None
    lines = breakdown.format_breakdown(parts)
    assert len(lines) == 4 and "learn drop" in lines[2]


def test_load_skip_selects_the_following_examples():
    x, y = data.load("embedded", "train", as_numpy=True, shuffle=False, limit=30)
    xs, ys = data.load("embedded", "train", as_numpy=True, shuffle=False, skip=20, limit=10)
    np.testing.assert_array_equal(xs, x[20:30])
    np.testing.assert_array_equal(ys, y[20:30])
    with pytest.raises(ValueError, match=r"Received: skip=-1"):
        data.load("embedded", "train", skip=-1)


def test_validation_split_holds_out_the_last_training_examples(tmp_path):
    report = train(
        "compact_mnist_1k5_dw",
        epochs=1,
        limit=200,
        validation_split=0.25,
        output_dir=str(tmp_path / "run"),
        verbose=0,
        plots=False,
    )
    assert report["train_examples"] == 150
    assert report["validation"] == {"split": "held_out", "examples": 50}
    assert 0 <= report["validation_accuracy"] <= 1 and report["validation_loss"] > 0
    # fit validated on the held-out part: its last epoch's value is the evaluation's.
    assert report["history"]["val_accuracy"][-1] == pytest.approx(report["validation_accuracy"])
    record = report["per_epoch"][0]
    assert record["test_accuracy"] is None and record["validation_accuracy"] is not None
    assert report["test_accuracy"] is not None  # the test split, once at the end


@pytest.mark.slow  # ~20 s: the default suite is near its 20-minute budget
def test_recipe_run_from_the_command_line(tmp_path):
    """`kerascnn train --recipe efficient` in a subprocess: report, breakdown, printed lines."""
    out = tmp_path / "recipe"
    env = subprocess_env(KERASCNN_CACHE_DIR=str(tmp_path / "cache"))
    env.pop("KERASCNN_DATA_DIR", None)
    argv = ["--recipe", "efficient", "--limit", "256", "--epochs", "3", "--output-dir", str(out)]
    proc = subprocess.run(
        [sys.executable, "-m", "kerascnn", "train", *argv, "--verbose", "2"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    with open(os.path.join(out, "report.json")) as f:
        report = json.load(f)
    assert report["recipe"]["name"] == "efficient"
    assert set(report["recipe"]["applied"]) == set(EFFICIENT) | {"template"}
    assert report["techniques"]["organize"] and report["techniques"]["blurpool"]
    assert report["techniques"]["layer_dropping"] and report["stability"]["monitor_only"] is False
    savings = report["savings"]
    parts = sum(savings["macs"][s] for s in breakdown.SOURCES)
    assert savings["macs"]["plain_planned"] - parts == report["training_macs_estimate"]
    assert savings["plain_model"]["model"] == "compact_mnist_25k"
    assert "savings:" in proc.stdout and "stability stopping:" in proc.stdout
