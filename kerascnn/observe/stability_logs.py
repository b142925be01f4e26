"""Stability logs: the paper's Figure 5 from training logs (`kerascnn plot-stability`).

Reads the per-epoch `stability/<layer>` values that `StabilityStopping` adds
to the epoch logs, from either a TensorBoard log directory (keras'
`TensorBoard` callback placed after `StabilityStopping`; tags
`epoch_stability/<layer>`, searched recursively) or a `CSVLogger` file, and
draws μ per layer over epochs (one panel per layer), marking the epoch where
the stopping rule fires.

The rule is the one the run used: for a `kerascnn train` run (a log
directory or CSV file inside a run directory, or the run directory itself),
`decimals`, `patience` and `start_from_epoch` are read from the run's
`report.json`; otherwise (or for a value the report lacks) the paper's rule
(r=2, patience 3, from epoch 0). `--decimals`, `--patience` and
`--start-from-epoch` override either.

Example:

    kerascnn plot-stability runs/20250101-120000 -o stability.png
    kerascnn plot-stability log.csv -o stability.png --decimals 3
"""

from __future__ import annotations

import csv
import glob
import json
import math
import os

from kerascnn.observe import plots

_PREFIXES = ("epoch_stability/", "stability/")
#: The rule's parameters, in the order of `plot_stability`'s arguments.
RULE_KEYS = ("decimals", "patience", "start_from_epoch")
#: How many directories above the log path are searched for `report.json`.
_REPORT_LEVELS = 2


def _read_csv(path):
    series = {}
    try:
        with open(path, newline="") as f:
            rows = list(csv.DictReader(f))
    except (UnicodeDecodeError, csv.Error) as e:
        raise ValueError(
            f"Not a TensorBoard log directory nor a CSV file ({e}). Received: logdir={path!r}"
        ) from None
    for row in rows:
        epoch = int(row.get("epoch", len(next(iter(series.values()), {}))))
        for key, value in row.items():
            if key and key.startswith("stability/") and value not in ("", None):
                series.setdefault(key[len("stability/") :], {})[epoch] = float(value)
    return series


def _read_events(logdir):
    import numpy as np
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    series = {}
    files = glob.glob(os.path.join(logdir, "**", "events.out.tfevents.*"), recursive=True)
    for directory in sorted({os.path.dirname(f) for f in files}):
        acc = EventAccumulator(directory, size_guidance={"tensors": 0, "scalars": 0})
        acc.Reload()
        tags = acc.Tags()
        for tag in tags.get("tensors", []):
            for prefix in _PREFIXES:
                if tag.startswith(prefix):
                    import tensorflow as tf

                    values = series.setdefault(tag[len(prefix) :], {})
                    for event in acc.Tensors(tag):
                        values[event.step] = float(np.asarray(tf.make_ndarray(event.tensor_proto)))
        for tag in tags.get("scalars", []):
            for prefix in _PREFIXES:
                if tag.startswith(prefix):
                    values = series.setdefault(tag[len(prefix) :], {})
                    for event in acc.Scalars(tag):
                        values[event.step] = float(event.value)
    return series


def read_stability(path):
    """Returns `{layer: [μ per epoch]}` from a TensorBoard log dir or a CSV file.

    Raises:
        ValueError: the path does not exist or holds no stability values.
    """
    if not os.path.exists(path):
        raise ValueError(f"No such log directory or CSV file. Received: logdir={path!r}")
    series = _read_csv(path) if os.path.isfile(path) else _read_events(path)
    if not series:
        raise ValueError(
            "No 'stability/<layer>' values found (add StabilityStopping before "
            f"TensorBoard or CSVLogger in the callbacks). Received: logdir={path!r}"
        )
    out = {}
    for layer, values in series.items():
        epochs = sorted(values)
        out[layer] = [values[e] for e in epochs]
    return out


def paper_rule():
    """The paper's rule as `{"decimals": 2, "patience": 3, "start_from_epoch": 0}`."""
    from kerascnn.callbacks.stability_stopping import PAPER_PATIENCE

    return {"decimals": 2, "patience": PAPER_PATIENCE, "start_from_epoch": 0}


def find_run_report(path):
    """The `report.json` of the `kerascnn train` run that `path` belongs to, or None.

    Looks in `path` (a directory), the directory holding `path` and up to
    two directories above it (`runs/<ts>/logs/train` -> `runs/<ts>`).
    """
    directory = os.path.abspath(path if os.path.isdir(path) else os.path.dirname(path) or ".")
    for _ in range(_REPORT_LEVELS + 1):
        candidate = os.path.join(directory, "report.json")
        if os.path.isfile(candidate):
            return candidate
        parent = os.path.dirname(directory)
        if parent == directory:
            break
        directory = parent
    return None


def recorded_rule(report_path):
    """`{decimals, patience, start_from_epoch}` recorded in a run's report (those it has).

    Raises:
        ValueError: the report is not readable JSON.
    """
    try:
        with open(report_path) as f:
            report = json.load(f)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"Cannot read the run's report {report_path!r}: {e}") from None
    stability = report.get("stability") if isinstance(report, dict) else None
    if not isinstance(stability, dict):
        return {}
    return {
        key: stability[key]
        for key in RULE_KEYS
        if isinstance(stability.get(key), int) and not isinstance(stability.get(key), bool)
    }


def resolve_rule(path, decimals=None, patience=None, start_from_epoch=None):
    """The rule to apply to the logs at `path`, and where it came from.

    Explicit values win; then the rule recorded in the run's `report.json`
    (see `find_run_report`); then the paper's rule.

    Returns:
        `(rule, source)`: `rule` a dict with `RULE_KEYS`, `source` the report
        path if any value came from it, else None.
    """
    rule = paper_rule()
    report = find_run_report(path)
    recorded = recorded_rule(report) if report else {}
    rule.update(recorded)
    explicit = dict(zip(RULE_KEYS, (decimals, patience, start_from_epoch)))
    rule.update({k: v for k, v in explicit.items() if v is not None})
    used = any(explicit[k] is None for k in recorded)
    return rule, (report if used else None)


def plot_stability(
    series, output, decimals=None, patience=None, start_from_epoch=None, source=None
):
    """Draws μ per layer over epochs to `output`; returns the stop epoch (0-based) or None.

    Args:
        series: `{layer: [μ per epoch]}` (see `read_stability`).
        output: the image path.
        decimals: the rule's rounding. Defaults to the paper's 2.
        patience: the rule's patience. Defaults to the paper's 3.
        start_from_epoch: first epoch index the rule considers. Defaults to 0.
        source: where the rule came from (named in the title), e.g. a
            `report.json` path. Defaults to None (not named).
    """
    from kerascnn.callbacks.stability_stopping import stability_stop_epoch

    defaults = paper_rule()
    decimals = defaults["decimals"] if decimals is None else decimals
    patience = defaults["patience"] if patience is None else patience
    start_from_epoch = (
        defaults["start_from_epoch"] if start_from_epoch is None else start_from_epoch
    )
    layers = list(series)
    n_epochs = min(len(v) for v in series.values())
    history = [{layer: series[layer][e] for layer in layers} for e in range(n_epochs)]
    stop = stability_stop_epoch(history, decimals, patience, start_from_epoch)
    cols = min(3, len(layers))
    rows = math.ceil(len(layers) / cols)
    fig = plots.new_figure((4 * cols, 2.8 * rows))
    axes = fig.subplots(rows, cols, squeeze=False)
    epochs = list(range(1, n_epochs + 1))
    for ax, layer in zip(axes.ravel(), layers):
        ax.plot(epochs, series[layer][:n_epochs], marker=".", linewidth=1)
        if stop is not None:
            ax.axvline(stop + 1, color="red", linestyle="--", linewidth=1)
        plots.style_axes(ax, "epoch", "μ (mean std)", title=layer, title_size=9)
    for ax in axes.ravel()[len(layers) :]:
        ax.axis("off")
    title = "Layer stability μ per epoch"
    rule = f"r={decimals}, patience={patience}"
    if start_from_epoch:
        rule += f", from epoch {start_from_epoch + 1}"
    if source:
        rule += f", the run's rule ({os.path.basename(source)})"
    title += (
        f" (stop at epoch {stop + 1}: {rule})"
        if stop is not None
        else f" (rule {rule} did not fire)"
    )
    fig.suptitle(title, fontsize=10)
    directory = os.path.dirname(os.path.abspath(output))
    if not os.path.isdir(directory):
        raise ValueError(f"Output directory does not exist. Received: output={output!r}")
    plots.save_figure(fig, output, dpi=120)
    return stop
