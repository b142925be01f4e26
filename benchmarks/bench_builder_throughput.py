"""Training throughput of kerascnn's ResNet-50 against keras.applications' ResNet50, like with like.

Four models train side by side in one process on the same random data, with
the same batch size and optimizer (SGD with momentum):

- `keras`: `keras.applications.ResNet50` (ResNet v1: stride on the first 1x1
  of a downsampling block, conv biases, BatchNorm epsilon 1.001e-5);
- `keras_aa`: a second, identical `keras.applications.ResNet50`: the A/A
  control, whose ratio to `keras` shows the noise floor of this run;
- `ours_v1`: `kerascnn.zoo.resnet50(variant="v1")`, the same architecture as
  `keras` (equal parameters, weight shapes and MACs, checked here and in
  `tests/zoo/test_resnet_variant.py`): the like-with-like comparison;
- `ours_v1.5`: the zoo's default ImageNet ResNet-50 (v1.5: stride on the 3x3,
  no conv bias, ~1.1x the MACs at 64x64), read through its per-MAC ratio.

Each model gets warm-up steps (compilation and the first slow steps), then
every round times `--steps` training steps of each model, in an order rotated
by one model per round, so that each model runs in every position and load
drifts hit all models alike. For each model and each round the ratio of its
images/s to `keras`'s images/s *in the same round* is a paired ratio; the
table reports their median (and min-max), the median ratio to the geometric
mean of both keras copies in the same round (a reference that neither copy's
luck biases), and the per-MAC ratio (the paired ratio times the MACs ratio:
> 1 means more multiply-accumulates per second). Garbage collection runs
between timed runs, never inside one.
Target: `ours_v1 / keras` paired median >= 1.0 (issue #13), to be read
against the A/A row's spread.

Writes `benchmarks/results/builder_throughput.json` and `.md`.

Usage:

    TF_ENABLE_ONEDNN_OPTS=1 python benchmarks/bench_builder_throughput.py
    python benchmarks/bench_builder_throughput.py --quick   # smoke test
"""

from __future__ import annotations

import gc
import math
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from _common import make_parser, results_path, write_results  # noqa: E402

import kerascnn  # noqa: E402
from kerascnn import zoo  # noqa: E402
from kerascnn.observe import summary  # noqa: E402

REFERENCE = "keras"
TARGET = 1.0


def make_models(input_shape, classes):
    """The four models, reference first."""
    return {
        "keras": keras.applications.ResNet50(
            weights=None, input_shape=input_shape, classes=classes
        ),
        "keras_aa": keras.applications.ResNet50(
            weights=None, input_shape=input_shape, classes=classes, name="resnet50_aa"
        ),
        "ours_v1": zoo.resnet50(input_shape=input_shape, classes=classes, variant="v1"),
        "ours_v1.5": zoo.resnet50(input_shape=input_shape, classes=classes, variant="imagenet"),
    }


def make_dataset(input_shape, classes, batch_size):
    rng = np.random.default_rng(0)
    n = batch_size * 8
    x = rng.random((n, *input_shape), dtype=np.float32)
    y = rng.integers(0, classes, n)
    dataset = (
        tf.data.Dataset.from_tensor_slices((x, y))
        .repeat()
        .batch(batch_size, drop_remainder=True)
        .prefetch(2)
    )
    # Every `fit` call makes (and destroys) an iterator; with autotune on, the
    # destruction can stall for up to a minute on a busy CPU.
    options = tf.data.Options()
    options.autotune.enabled = False
    return dataset.with_options(options)


def time_steps(model, dataset, steps):
    """Runs `steps` training steps; returns the seconds taken (no GC pause inside)."""
    gc.collect()
    gc.disable()
    try:
        start = time.perf_counter()
        model.fit(dataset, steps_per_epoch=steps, epochs=1, shuffle=False, verbose=0)
        return time.perf_counter() - start
    finally:
        gc.enable()


def run_rounds(models, dataset, rounds, steps, batch_size):
    """Times every model once per round, rotated order; returns images/s per round."""
    names = list(models)
    images = {name: [] for name in names}
    orders = []
    for r in range(rounds):
        order = names[r % len(names) :] + names[: r % len(names)]
        orders.append(order)
        for name in order:
            images[name].append(steps * batch_size / time_steps(models[name], dataset, steps))
    return images, orders


def paired_rows(images, macs):
    """One row per model: paired ratios to the reference, median, spread, per MAC."""
    rows = []
    # The two keras copies are the same model: their per-round geometric mean
    # is a reference that no single copy's luck (e.g. being built first) biases.
    pair = [math.sqrt(a * b) for a, b in zip(images[REFERENCE], images["keras_aa"])]
    for name, values in images.items():
        ratios = [v / ref for v, ref in zip(values, images[REFERENCE])]
        to_pair = [v / ref for v, ref in zip(values, pair)]
        mac_ratio = macs[name] / macs[REFERENCE]
        median = statistics.median(ratios)
        rows.append(
            {
                "model": name,
                "images_per_s_median": statistics.median(values),
                "paired_ratios": ratios,
                "paired_ratio_median": median,
                "paired_ratio_min": min(ratios),
                "paired_ratio_max": max(ratios),
                "paired_ratio_to_keras_pair_median": statistics.median(to_pair),
                "macs_ratio": mac_ratio,
                "per_mac_ratio_median": statistics.median(r * mac_ratio for r in ratios),
            }
        )
    return rows


def markdown(result, args):
    rows = {row["model"]: row for row in result["rows"]}
    md = [
        "# Builder throughput: kerascnn ResNet-50 vs keras.applications ResNet50 (paired)",
        "",
        f"Command: `{result['command']}`"
        + (" (quick smoke run, not a measurement)" if args.quick else ""),
        "",
        f"TF {tf.__version__}, Keras {keras.__version__}, {os.cpu_count()} CPUs, "
        f"TF_ENABLE_ONEDNN_OPTS={os.environ.get('TF_ENABLE_ONEDNN_OPTS')}, "
        f"batch {args.batch_size}, {args.size}x{args.size}x3, {args.warmup} warm-up steps, "
        f"{args.rounds} rounds x {args.steps} steps, order rotated each round.",
        "",
        "| model | params | MACs (batch 1) | images/s (median) | paired ratio to keras: "
        "median (min-max) | to both keras copies (median) | per-MAC ratio (median) |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, row in rows.items():
        md.append(
            f"| {name}{' (A/A control)' if name == 'keras_aa' else ''} "
            f"| {result['params'][name]:,} | {result['macs'][name]:,} "
            f"| {row['images_per_s_median']:.1f} | {row['paired_ratio_median']:.3f} "
            f"({row['paired_ratio_min']:.3f}-{row['paired_ratio_max']:.3f}) "
            f"| {row['paired_ratio_to_keras_pair_median']:.3f} "
            f"| {row['per_mac_ratio_median']:.3f} |"
        )
    target = rows["ours_v1"]
    median = target["paired_ratio_median"]
    md += [
        "",
        f"Equal architectures (ours_v1 vs keras): paired median **{median:.3f}**"
        f" (target >= {TARGET}; {'met' if result['meets_target'] else 'not met'}); "
        f"A/A control spread {rows['keras_aa']['paired_ratio_min']:.3f}-"
        f"{rows['keras_aa']['paired_ratio_max']:.3f}.",
        "",
    ]
    return md


def main(argv=None):
    parser = make_parser(__doc__, quick_help="2 rounds, 1 step, batch 4, 32x32")
    parser.add_argument("--rounds", type=int, default=8, help="timed rounds (each model once)")
    parser.add_argument("--steps", type=int, default=5, help="steps per model per round")
    parser.add_argument("--warmup", type=int, default=3, help="warm-up steps per model")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--size", type=int, default=64, help="input height and width")
    parser.add_argument("--output", default=None)
    args = parser.parse_args(argv)
    if args.quick:
        args.rounds, args.steps, args.warmup, args.batch_size, args.size = 2, 1, 1, 4, 32
    for key in ("rounds", "steps", "warmup", "batch_size", "size"):
        if getattr(args, key) < 1:
            parser.error(f"--{key.replace('_', '-')} must be >= 1. Received: {getattr(args, key)}")
    output = args.output or results_path("builder_throughput", args.quick)

    keras.utils.set_random_seed(0)
    input_shape, classes = (args.size, args.size, 3), 10
    models = make_models(input_shape, classes)
    macs = {name: int(summary.summarize(model).macs) for name, model in models.items()}
    params = {name: int(model.count_params()) for name, model in models.items()}
    if params["ours_v1"] != params[REFERENCE] or macs["ours_v1"] != macs[REFERENCE]:
        raise RuntimeError(f"ours_v1 is not keras' architecture: {params}, {macs}")
    dataset = make_dataset(input_shape, classes, args.batch_size)
    for model in models.values():
        model.compile(
            optimizer=keras.optimizers.SGD(0.01, momentum=0.9),
            loss="sparse_categorical_crossentropy",
        )
        time_steps(model, dataset, args.warmup)  # compile + warm-up
    images, orders = run_rounds(models, dataset, args.rounds, args.steps, args.batch_size)
    rows = paired_rows(images, macs)
    target = next(row for row in rows if row["model"] == "ours_v1")
    result = {
        "benchmark": "builder_throughput",
        "quick": args.quick,
        "settings": {
            "rounds": args.rounds,
            "steps_per_round": args.steps,
            "warmup_steps": args.warmup,
            "batch_size": args.batch_size,
            "input_shape": list(input_shape),
            "classes": classes,
            "optimizer": "SGD(0.01, momentum=0.9)",
            "orders": orders,
        },
        "kerascnn": getattr(kerascnn, "__version__", "unknown"),
        "params": params,
        "macs": macs,
        "images_per_s_per_round": images,
        "rows": rows,
        "target_paired_ratio": TARGET,
        "meets_target": target["paired_ratio_median"] >= TARGET,
    }
    result = write_results(output, result, argv)
    md = markdown(result, args)
    Path(output).with_suffix(".md").write_text("\n".join(md))
    print("\n".join(md))
    return 0


if __name__ == "__main__":
    sys.exit(main())
