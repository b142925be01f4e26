"""Accuracy against wall-clock and MACs trained for `kerascnn train` runs.

`plot_savings(["runs/base", "runs/drop"], "savings.png")` reads every run's
`report.json` and draws one figure with two panels: accuracy against the
training seconds (left) and against the MACs trained (right), one curve per
run, labelled with the run's method (`method_label`: baseline, stability
stopping, layer dropping, layer freezing, the techniques, a recipe). The
points are the epochs of the report's `per_epoch` records
(`kerascnn.training.report.epoch_records`): the test accuracy measured at
every epoch end (solid; a run trained with `validation_split` draws its
held-out validation accuracy instead, a run with neither its training
accuracy, dashed; the legend says which), the final test accuracy of the
finished run as a star (after SWA's average, if any), a cross where a
stopping rule stopped the run (hollow where the stability rule, only
watching, would have stopped it) and a triangle at the end of each epoch
after which Learn&Drop dropped (or froze) convolutions. The MACs trained
count forward + backward (3x the forward MACs per example seen) of the part
still trained, so a drop bends the right panel's curve. `kerascnn
plot-savings RUN_DIR [RUN_DIR ...]` draws it and prints `savings_lines`: the
time, MACs and accuracy of every run against the first one.

Only JSON is read (no TensorFlow); drawing uses `kerascnn.observe.plots`'
Agg figures.

Example:

```python
from kerascnn.observe import savings

report = {"stability": {"monitor_only": False}, "techniques_enabled": []}
savings.method_label(report)  # -> "stability stopping"
```
"""

from __future__ import annotations

import json
import os

#: The report file of a `kerascnn train` run directory.
REPORT_FILE = "report.json"
#: The report key holding the per-epoch records.
RECORDS_KEY = "per_epoch"
#: Techniques left out of a method label (they change no cost).
_UNLABELLED = ("layer_metrics",)
_LEARN_DROP = {"layer_dropping": "layer dropping", "layer_freezing": "layer freezing"}


def method_label(report):
    """The method of a run, from its report: `"baseline"`, `"layer dropping"`, ...

    A recipe (`report["recipe"]` or the recorded `recipe` argument) names the
    run; otherwise the enabled stopping rule and techniques are joined with
    `" + "` (`"stability stopping + blurpool"`), and a run with none is the
    `"baseline"`.

    Args:
        report: a `report.json` dict.

    Example:

    >>> method_label({"techniques_enabled": ["layer_dropping"]})
    'layer dropping'
    """
    recipe = report.get("recipe") or (report.get("args") or {}).get("recipe")
    if isinstance(recipe, dict):
        recipe = recipe.get("name")
    if recipe:
        return f"recipe {recipe}"
    parts = []
    stability = report.get("stability") or {}
    if stability and not stability.get("monitor_only", True):
        parts.append("stability stopping")
    for name in report.get("techniques_enabled") or []:
        if name not in _UNLABELLED:
            parts.append(_LEARN_DROP.get(name, name.replace("_", " ")))
    return " + ".join(parts) or "baseline"


def _report_path(run_dir):
    """The report.json of `run_dir` (a run directory or the file itself)."""
    run_dir = os.fspath(run_dir)
    if os.path.isfile(run_dir) and run_dir.endswith(".json"):
        return run_dir
    if not os.path.isdir(run_dir):
        raise FileNotFoundError(f"The run directory does not exist. Received: {run_dir!r}")
    path = os.path.join(run_dir, REPORT_FILE)
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"No {REPORT_FILE} in {run_dir!r}: not the output directory of a finished "
            "`kerascnn train` run"
        )
    return path


def read_run(run_dir, label=None):
    """Reads a run's report for `plot_savings`; clear errors for unusable reports.

    Args:
        run_dir: a `kerascnn train` output directory (or its `report.json`).
        label: the curve's label. Defaults to None (`method_label`).

    Returns:
        A dict: `label`, `report` (path), `records` (`per_epoch`),
        `test_accuracy`, `stopped_epoch` (1-based or None),
        `would_stop_epoch` (where the stability rule, only watching, would
        have stopped: 1-based or None), `drops`
        (`[(epoch, convolutions)]`: drops decided at the end of that 1-based
        epoch), `per_epoch_test` (the records have test accuracies),
        `per_epoch_validation` (held-out validation accuracies, drawn when
        there is no test accuracy per epoch: `train(validation_split=...)`),
        `planned_epochs`.

    Raises:
        FileNotFoundError: no such directory, or no report in it.
        ValueError: the report is not JSON, is an interrupted run's or was
            written before the per-epoch records existed (re-run it).
    """
    path = _report_path(run_dir)
    try:
        with open(path) as f:
            report = json.load(f)
    except json.JSONDecodeError as error:
        raise ValueError(f"{path} is not valid JSON: {error}") from None
    if not isinstance(report, dict):
        raise ValueError(f"{path} is not a kerascnn train report (a JSON object).")
    if report.get("interrupted"):
        raise ValueError(
            f"{path} is an interrupted run's report: finish the run with "
            f"`kerascnn train --resume {os.path.dirname(os.path.abspath(path))}` first"
        )
    records = report.get(RECORDS_KEY)
    if not records:
        raise ValueError(
            f"{path} has no per-epoch records ({RECORDS_KEY!r}): it was written by an older "
            "kerascnn. Re-run the training with kerascnn >= 0.1.0 including issue #17 "
            "(whose report.json records time and MACs per epoch) to plot it."
        )
    drops, previous = [], 0
    for record in records:
        convs = int(record.get("dropped_convs") or 0)
        if convs > previous:
            drops.append((record["epoch"] - 1, convs - previous))
        previous = convs
    stability = report.get("stability") or {}
    predicted = stability.get("stable_epoch") if stability.get("monitor_only") else None
    return {
        "label": label or method_label(report),
        "report": path,
        "records": records,
        "test_accuracy": report.get("test_accuracy"),
        "stopped_epoch": report.get("stopped_epoch"),
        "would_stop_epoch": predicted,
        "drops": drops,
        "per_epoch_test": any(r.get("test_accuracy") is not None for r in records),
        "per_epoch_validation": any(r.get("validation_accuracy") is not None for r in records),
        "planned_epochs": report.get("planned_epochs"),
        "model": report.get("model"),
        "dataset": report.get("dataset"),
    }


def _unit(largest, units):
    """`(scale, name)` of the last of `units` (`(from, scale, name)`) that `largest` reaches."""
    found = ((scale, name) for start, scale, name in reversed(units) if largest >= start)
    return next(found, units[0][1:])


#: Axis units: (from this largest value, scale, name).
_TIME_UNITS = ((0, 1.0, "s"), (600, 60.0, "min"), (36000, 3600.0, "h"))
_MACS_UNITS = tuple((10**e, 10**e, f"x 1e{e}") for e in (0, 6, 9, 12, 15))


def _accuracy_key(run):
    """The per-epoch accuracy drawn: test, else held-out validation, else training."""
    if run["per_epoch_test"]:
        return "test_accuracy"
    return "validation_accuracy" if run.get("per_epoch_validation") else "train_accuracy"


def _points(run, key):
    """`(x, accuracy %, {epoch: index of its point})` of a run along `key`."""
    accuracy = _accuracy_key(run)
    xs, ys, index = [], [], {}
    for record in run["records"]:
        if record.get(key) is None or record.get(accuracy) is None:
            continue
        index[record["epoch"]] = len(xs)
        xs.append(record[key])
        ys.append(100 * record[accuracy])
    return xs, ys, index


def _draw_run(axes, run, key, scale, color):
    """One run's curve, final point, stop and drop markers on `axes` (False if no point)."""
    xs, ys, index = _points(run, key)
    if not xs:
        return False
    xs = [x / scale for x in xs]
    what = {
        "test_accuracy": "test acc. per epoch",
        "validation_accuracy": "held-out validation acc. per epoch",
        "train_accuracy": "train acc. per epoch (no test)",
    }[_accuracy_key(run)]
    style = "--" if _accuracy_key(run) == "train_accuracy" else "-"
    axes.plot(xs, ys, style, marker="o", markersize=3, color=color, label=f"{run['label']}: {what}")
    if run["test_accuracy"] is not None:
        axes.plot(xs[-1], 100 * run["test_accuracy"], "*", markersize=11, color=color)
    stop = index.get(run["stopped_epoch"])
    if stop is not None:
        axes.plot(xs[stop], ys[stop], "X", markersize=9, color=color, markeredgecolor="black")
    would = index.get(run["would_stop_epoch"])
    if would is not None:
        axes.plot(xs[would], ys[would], "X", markersize=9, markerfacecolor="none", color=color)
    for epoch, convs in run["drops"]:
        at = index.get(epoch)
        if at is not None:
            axes.plot(xs[at], ys[at], "v", markersize=9, color=color, markeredgecolor="black")
            axes.annotate(f"-{convs} conv", (xs[at], ys[at]), textcoords="offset points",
                          xytext=(6, -3), fontsize=7, color=color)  # fmt: skip
    return True


def _marker_legend(axes, runs):
    """Legend entries (black) for the final point, the stops and the drops drawn."""
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], linestyle="", marker="*", markersize=10, color="black")]
    labels = ["final test accuracy (after training)"]
    if any(r["stopped_epoch"] for r in runs):
        handles.append(Line2D([], [], linestyle="", marker="X", markersize=8, color="black"))
        labels.append("stopped (stopping rule)")
    if any(r["would_stop_epoch"] for r in runs):
        handles.append(
            Line2D([], [], linestyle="", marker="X", markersize=8, color="black", fillstyle="none")
        )
        labels.append("stability rule would stop here (not applied)")
    if any(r["drops"] for r in runs):
        handles.append(Line2D([], [], linestyle="", marker="v", markersize=8, color="black"))
        labels.append("Learn&Drop drop / freeze after this epoch")
    lines, names = axes.get_legend_handles_labels()
    axes.legend(lines + handles, names + labels, fontsize="x-small", loc="lower right")


def plot_savings(run_dirs, path, labels=None):
    """Draws accuracy against training seconds and MACs trained for `kerascnn train` runs.

    Args:
        run_dirs: `kerascnn train` output directories (or their report.json
            files); the first one is the reference of `savings_lines`.
        path: the image file (format from the extension, e.g. `.png`); its
            folder must exist.
        labels: one label per run, or None (each run's `method_label`, with
            the directory's name added where two runs would share one).

    Returns:
        The runs as read by `read_run`, in order.

    Raises:
        FileNotFoundError, ValueError: see `read_run`; no run given; a
            wrong number of labels; a bad output path.

    Example:

    ```python
    from kerascnn.observe.savings import plot_savings

    runs = plot_savings(["runs/baseline", "runs/dropping"], "savings.png")
    ```
    """
    from kerascnn.observe.plots import check_figure_path, new_figure, save_figure, style_axes

    run_dirs = [os.fspath(d) for d in run_dirs]
    if not run_dirs:
        raise ValueError("plot_savings needs at least one run directory. Received: run_dirs=[]")
    if labels is not None and len(labels) != len(run_dirs):
        raise ValueError(
            f"labels must give one label per run ({len(run_dirs)}). Received: labels={labels!r}"
        )
    path = check_figure_path(path)
    runs = [read_run(d, None if labels is None else labels[i]) for i, d in enumerate(run_dirs)]
    if labels is None:
        _disambiguate(runs, run_dirs)
    figure = new_figure((12, 4.6))
    panels = (
        ("elapsed_s", _TIME_UNITS, "training time ({}; validation included)"),
        ("macs_trained_total", _MACS_UNITS, "MACs trained ({}; forward + backward estimate)"),
    )
    for i, (key, units, xlabel) in enumerate(panels):
        axes = figure.add_subplot(1, 2, i + 1)
        values = [r.get(key) or 0 for run in runs for r in run["records"]]
        scale, unit = _unit(max(values, default=0), units)
        colors = [f"C{j % 10}" for j in range(len(runs))]
        drawn = [_draw_run(axes, run, key, scale, c) for run, c in zip(runs, colors)]
        for run, ok in zip(runs, drawn):
            if not ok:
                axes.plot([], [], " ", label=f"{run['label']}: not measured")
        style_axes(axes, xlabel.format(unit), "accuracy (%)", legend=False)
        _marker_legend(axes, runs)
    figure.suptitle(_title(runs))
    save_figure(figure, path)
    return runs


def _disambiguate(runs, run_dirs):
    """Adds the directory's name to labels that two runs share."""
    counts = {}
    for run in runs:
        counts[run["label"]] = counts.get(run["label"], 0) + 1
    for run, run_dir in zip(runs, run_dirs):
        if counts[run["label"]] > 1:
            name = os.path.basename(os.path.normpath(os.path.abspath(run_dir)))
            run["label"] = f"{run['label']} ({name})"


def _title(runs):
    models = sorted({str(r["model"]) for r in runs})
    datasets = sorted({str(r["dataset"]) for r in runs})
    return f"Accuracy against training cost: {', '.join(models)} on {', '.join(datasets)}"


def savings_lines(runs):
    """Text lines: epochs, time, MACs and accuracy of every run against the first.

    Args:
        runs: `plot_savings`' (or `read_run`'s) runs; the first is the reference.

    Example:

    ```python
    print("\\n".join(savings_lines(plot_savings(["runs/a", "runs/b"], "s.png"))))
    ```
    """
    width = max(len(r["label"]) for r in runs)
    lines = [f"{'run':<{width}}  epochs  train s  MACs trained  test acc.  against the first run"]
    first = runs[0]["records"][-1] | {"test_accuracy": runs[0]["test_accuracy"]}
    for i, run in enumerate(runs):
        last = run["records"][-1]
        epochs = f"{last['epoch']}/{run['planned_epochs'] or '?'}"
        time_s, macs = last.get("elapsed_s"), last.get("macs_trained_total")
        accuracy = run["test_accuracy"]
        text = "reference" if i == 0 else _against(first, time_s, macs, accuracy)
        lines.append(
            f"{run['label']:<{width}}  {epochs:>6}  {_fmt(time_s, '.1f'):>7}  "
            f"{_fmt(macs, '.3g'):>12}  {_fmt(accuracy, '.4f'):>9}  {text}"
        )
    return lines


def _fmt(value, spec):
    return "n/a" if value is None else format(value, spec)


def _against(first, time_s, macs, accuracy):
    """`"-42.0% time, -55.1% MACs, -0.30 points"` against the first run's last record."""
    parts = []
    for name, mine, theirs in (
        ("time", time_s, first.get("elapsed_s")),
        ("MACs", macs, first.get("macs_trained_total")),
    ):
        if mine is not None and theirs:
            parts.append(f"{100 * (mine / theirs - 1):+.1f}% {name}")
    if accuracy is not None and first.get("test_accuracy") is not None:
        parts.append(f"{100 * (accuracy - first['test_accuracy']):+.2f} points")
    return ", ".join(parts) or "n/a"
