"""`kerascnn plot-stability`: the paper's Figure 5 from training logs.

Reads the per-epoch `stability/<layer>` values that `StabilityStopping` adds
to the epoch logs, from either a TensorBoard log directory (keras'
`TensorBoard` callback placed after `StabilityStopping`; tags
`epoch_stability/<layer>`, searched recursively) or a `CSVLogger` file, and
draws μ per layer over epochs (one panel per layer), marking the epoch where
the stopping rule fires.
"""

from __future__ import annotations

import csv
import glob
import math
import os

from kerascnn.callbacks.stability_stopping import PAPER_PATIENCE, stability_stop_epoch

_PREFIXES = ("epoch_stability/", "stability/")


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


def plot_stability(series, output, decimals=2, patience=PAPER_PATIENCE, start_from_epoch=0):
    """Draws μ per layer over epochs to `output`; returns the stop epoch (0-based) or None."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    layers = list(series)
    n_epochs = min(len(v) for v in series.values())
    history = [{layer: series[layer][e] for layer in layers} for e in range(n_epochs)]
    stop = stability_stop_epoch(history, decimals, patience, start_from_epoch)
    cols = min(3, len(layers))
    rows = math.ceil(len(layers) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 2.8 * rows), squeeze=False)
    epochs = list(range(1, n_epochs + 1))
    for ax, layer in zip(axes.ravel(), layers):
        ax.plot(epochs, series[layer][:n_epochs], marker=".", linewidth=1)
        if stop is not None:
            ax.axvline(stop + 1, color="red", linestyle="--", linewidth=1)
        ax.set_title(layer, fontsize=9)
        ax.set_xlabel("epoch")
        ax.set_ylabel("μ (mean std)")
    for ax in axes.ravel()[len(layers) :]:
        ax.axis("off")
    title = "Layer stability μ per epoch"
    title += (
        f" (stop at epoch {stop + 1}: r={decimals}, patience={patience})"
        if stop is not None
        else f" (rule r={decimals}, patience={patience} did not fire)"
    )
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    directory = os.path.dirname(os.path.abspath(output))
    if not os.path.isdir(directory):
        raise ValueError(f"Output directory does not exist. Received: output={output!r}")
    fig.savefig(output, dpi=120)
    plt.close(fig)
    return stop


def _run(args):
    series = read_stability(args.logdir)
    stop = plot_stability(series, args.output, args.decimals, args.patience, args.start_from_epoch)
    where = f"stop at epoch {stop + 1}" if stop is not None else "no stop"
    print(f"Wrote {args.output} ({len(series)} layers, {where}).")
    return 0


def add_plot_stability_parser(subparsers):
    """Registers `plot-stability LOGDIR -o x.png` on an argparse subparsers object."""
    parser = subparsers.add_parser(
        "plot-stability",
        help="plot per-layer stability μ over epochs (the paper's Figure 5)",
        description=__doc__.splitlines()[0],
    )
    parser.add_argument("logdir", help="TensorBoard log directory or CSVLogger file")
    parser.add_argument("-o", "--output", default="stability.png", help="output image")
    parser.add_argument("--decimals", type=int, default=2)
    parser.add_argument("--patience", type=int, default=PAPER_PATIENCE)
    parser.add_argument("--start-from-epoch", type=int, default=0)
    parser.set_defaults(func=_run)
    return parser
