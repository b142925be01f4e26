"""Accuracy-vs-resource Pareto plots of a `kerascnn compare` run.

The templates paper's Figures 3-5 (accuracy against parameters, memory
footprint at batch 64 and inference time): one curve per template (or
layout / kernel), its points the width multipliers; dashed lines cross at
the reference model (the original distribution, no reduction; a star), and the
Pareto front over every variant (no other variant is at least as accurate
with fewer resources) is drawn as a thick grey step line with its points
circled. The data are compare.json's rows (`kerascnn.compare.runner`);
`kerascnn compare --plot DIR` redraws from `DIR/compare.json`.

Example:

```python
from kerascnn.observe import pareto

rows = [
    {"name": "base-w1", "curve": "base", "test_accuracy": 0.80, "params": 1000},
    {"name": "base-w0.5", "curve": "base", "test_accuracy": 0.76, "params": 260},
    {"name": "uniform-w0.5", "curve": "uniform", "test_accuracy": 0.79, "params": 300},
]
pareto.pareto_front(rows, "params")  # -> the names on the front, cheapest first
```
"""

from __future__ import annotations

import json
import os

#: The three pictures: file name -> (row key, axis label, scale to the axis unit).
PLOTS = {
    "pareto_params.png": ("params", "parameters (millions)", 1e-6),
    "pareto_memory.png": ("memory_train_bytes", "peak training memory per batch (MB)", 1e-6),
    "pareto_latency.png": ("latency_b64_ms", "inference time, batch 64 (ms)", 1.0),
}


def pareto_front(rows, key, accuracy="test_accuracy"):
    """Names of the rows on the Pareto front of (`key` low, accuracy high), cheapest first."""
    points = sorted(
        (r for r in rows if r.get(key) is not None and r.get(accuracy) is not None),
        key=lambda r: (r[key], -r[accuracy]),
    )
    front, best = [], float("-inf")
    for row in points:
        if row[accuracy] > best:
            front.append(row["name"])
            best = row[accuracy]
    return front


def _curves(rows, key):
    curves = {}
    for row in rows:
        if row.get(key) is not None and row.get("test_accuracy") is not None:
            curves.setdefault(row.get("curve", row["name"]), []).append(row)
    return {name: sorted(points, key=lambda r: r[key]) for name, points in curves.items()}


def _panel(ax, rows, key, reference, scale, title):
    """One model's curves, Pareto front and dashed reference lines on `ax`."""
    from matplotlib import ticker

    by_name = {r["name"]: r for r in rows}
    front = [by_name[n] for n in pareto_front(rows, key)]
    ax.step(
        [scale * r[key] for r in front],
        [100 * r["test_accuracy"] for r in front],
        where="post",
        color="0.75",
        linewidth=6,
        alpha=0.6,
        label="Pareto front",
        zorder=1,
    )
    for name, points in _curves(rows, key).items():
        xs = [scale * r[key] for r in points]
        ys = [100 * r["test_accuracy"] for r in points]
        ax.plot(xs, ys, marker="o", markersize=4, linewidth=1.4, label=name, zorder=3)
    ax.scatter(
        [scale * r[key] for r in front],
        [100 * r["test_accuracy"] for r in front],
        s=90,
        facecolors="none",
        edgecolors="black",
        linewidths=1.0,
        zorder=4,
    )
    ref = by_name.get(reference)
    if ref is not None and ref.get(key) is not None:
        ax.axvline(scale * ref[key], color="black", linestyle="--", linewidth=0.9)
        ax.axhline(100 * ref["test_accuracy"], color="black", linestyle="--", linewidth=0.9)
        ax.scatter(
            [scale * ref[key]],
            [100 * ref["test_accuracy"]],
            marker="*",
            s=160,
            color="black",
            zorder=5,
            label=f"reference ({reference})",
        )
    ax.set_xscale("log")
    ax.xaxis.set_major_locator(ticker.LogLocator(subs=(1.0, 2.0, 5.0)))
    ax.xaxis.set_major_formatter(ticker.FuncFormatter(lambda value, _: f"{value:g}"))
    ax.xaxis.set_minor_formatter(ticker.NullFormatter())
    ax.set_title(title, fontsize=10)
    ax.grid(True, which="both", alpha=0.25)
    ax.legend(fontsize=6, loc="best")


def _references(payload):
    """`{model: reference variant name}` (a combined payload has `references`)."""
    if payload.get("references"):
        return dict(payload["references"])
    return {payload.get("model"): payload.get("reference")}


def plot_pareto(payload, key, path, label=None, scale=1.0):
    """Draws accuracy against `key` for compare.json's `payload`; returns `path` (or None).

    One panel per model of the rows (a payload combining several comparisons
    gives `references`, `{model: reference name}`; a single comparison gives
    `model` and `reference`).

    Args:
        payload: the compare.json dict (`rows`, `reference`, `model`, `dataset`).
        key: the resource of the x axis (a row key, e.g. `"params"`).
        path: the PNG file.
        label: the x-axis label. Defaults to `key`.
        scale: factor from the row's unit to the axis's. Defaults to 1.

    Returns:
        `path`, or None when no row has `key` (e.g. not measured).
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    rows = [r for r in payload["rows"] if r.get(key) is not None]
    if not rows:
        return None
    references = _references(payload)
    models = list(dict.fromkeys(r.get("model") for r in rows))
    fig, axes = plt.subplots(1, len(models), figsize=(5.2 * len(models), 4.2), squeeze=False)
    for ax, model in zip(axes[0], models):
        mine = [r for r in rows if r.get("model") == model]
        title = f"{model} on {payload.get('dataset', '')}".strip()
        _panel(ax, mine, key, references.get(model), scale, title)
        ax.set_xlabel(label or key)
    axes[0][0].set_ylabel("test accuracy (%)")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


def plot_all(payload, output_dir):
    """Draws the three pictures of `PLOTS` into `output_dir`; returns `{file stem: path}`.

    Args:
        payload: the compare.json dict, or the path of compare.json.
        output_dir: the folder of the PNG files.
    """
    if isinstance(payload, (str, os.PathLike)):
        with open(payload) as f:
            payload = json.load(f)
    os.makedirs(output_dir, exist_ok=True)
    written = {}
    for filename, (key, label, scale) in PLOTS.items():
        path = plot_pareto(payload, key, os.path.join(output_dir, filename), label, scale)
        if path is not None:
            written[filename[: -len(".png")]] = path
    return written
