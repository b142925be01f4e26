"""Training time of VGG16-opt {5,4,2,1,1} with DW+PW vs DW+GPW vs DW+RPW kernels.

The 3DRF optimizer's VGG16-opt (the stage organizer's {5,4,2,1,1} layout at
theta=0, rule "paper", as `kerascnn optimize vgg16 --theta 0 --rule paper`)
at the CIFAR-10 shape 32x32x3, its 3x3 convolutions decomposed by the kernel
decomposer (`kerascnn.zoo.get_spec(..., organize=True, kernel=...)`) into
DW+PW, DW+GPW-g4 (with shuffle) and DW+RPW-g4-o50. Every model trains
`--steps` SGD steps per "epoch" (`model.fit(steps_per_epoch=...)`, random
CIFAR-shaped data in memory, batch `--batch`) after a warm-up epoch; the
models run side by side in one process, in a rotated order over `--rounds`
rounds; per round each model's epoch time is divided by the DW+PW time of the
same round (paired ratio); the table reports medians. `dw_pw (A/A)` is a
second DW+PW model: its ratio shows the noise floor.

Usage:
    python benchmarks/bench_decomposed_epoch.py --quick
    python benchmarks/bench_decomposed_epoch.py
"""

import os
import statistics
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from _common import make_parser, results_path, write_results  # noqa: E402

from kerascnn import zoo  # noqa: E402
from kerascnn.builder import build_model  # noqa: E402
from kerascnn.observe.summary import summarize  # noqa: E402

INPUT_SHAPE = (32, 32, 3)
LAYOUT = (5, 4, 2, 1, 1)
VARIANTS = {
    "dw_pw": {"kernel": "dw_pw"},
    "dw_pw (A/A)": {"kernel": "dw_pw"},
    "dw_gpw g=4": {"kernel": "dw_gpw", "kernel_groups": 4},
    "dw_rpw g=4 o=0.5": {"kernel": "dw_rpw", "kernel_groups": 4, "kernel_overlap": 0.5},
}


def build(options, width):
    """VGG16-opt {5,4,2,1,1} with the kernel decomposition `options`, compiled."""
    spec = zoo.get_spec(
        "vgg16",
        input_shape=INPUT_SHAPE,
        organize=True,
        theta=0.0,
        rule="paper",
        width_multiplier=width,
        **options,
    )
    depths = tuple(len(stage.units) for stage in spec.stages)
    if depths[-len(LAYOUT) :] != LAYOUT:
        raise RuntimeError(f"expected the VGG16-opt layout {LAYOUT}, got {depths}")
    model = build_model(spec, input_shape=INPUT_SHAPE, classes=10)
    model.compile(
        optimizer=keras.optimizers.SGD(0.01, momentum=0.9),
        loss="sparse_categorical_crossentropy",
    )
    return model


def time_epochs(models, data, steps, rounds):
    """Per-model lists of epoch seconds, after one warm-up epoch, rotated order."""
    names = list(models)
    for name in names:
        models[name].fit(data, epochs=1, steps_per_epoch=3, verbose=0, shuffle=False)
    times = {name: [] for name in names}
    for r in range(rounds):
        shift = r % len(names)
        for name in names[shift:] + names[:shift]:
            start = time.perf_counter()
            models[name].fit(data, epochs=1, steps_per_epoch=steps, verbose=0, shuffle=False)
            times[name].append(time.perf_counter() - start)
        print(f"round {r}: " + ", ".join(f"{n} {times[n][-1]:.2f}s" for n in names), flush=True)
    return times


def report(models, times):
    """Prints and returns per-model rows: params, MACs, median epoch s, paired ratios."""
    base = times["dw_pw"]
    pw_macs = summarize(models["dw_pw"]).totals["macs"]
    head = ("variant", "params", "MMACs", "MAC/pw", "epoch s", "/dw_pw", "min-max")
    print("{:20s} {:>9s} {:>8s} {:>7s} {:>8s} {:>7s} {:>11s}".format(*head))
    rows = []
    for name, model in models.items():
        totals = summarize(model).totals
        ratio = [a / b for a, b in zip(times[name], base)]
        row = {
            "variant": name,
            "params": int(totals["params"]),
            "macs": int(totals["macs"]),
            "mac_ratio_vs_dw_pw": totals["macs"] / pw_macs,
            "median_epoch_s": statistics.median(times[name]),
            "ratio_vs_dw_pw_median": statistics.median(ratio),
            "ratio_vs_dw_pw_min_max": [min(ratio), max(ratio)],
        }
        rows.append(row)
        print(
            f"{name:20s} {row['params']:9d} {row['macs'] / 1e6:8.2f} "
            f"{row['mac_ratio_vs_dw_pw']:7.3f} {row['median_epoch_s']:8.2f} "
            f"{row['ratio_vs_dw_pw_median']:7.3f} {min(ratio):5.2f}-{max(ratio):5.2f}",
            flush=True,
        )
    return rows


def main(argv=None):
    parser = make_parser(__doc__, quick_help="width 1/8, 2 steps, 2 rounds (a smoke run)")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--steps", type=int, default=10, help="train steps per timed epoch")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--width", type=float, default=1.0, help="width multiplier")
    parser.add_argument("--output", default=None)
    args = parser.parse_args(argv)
    if args.quick:
        args.batch, args.steps, args.rounds, args.width = 16, 2, 2, 0.125
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    n = args.batch * args.steps
    x = rng.uniform(0, 1, size=(n, *INPUT_SHAPE)).astype("float32")
    y = rng.integers(0, 10, size=(n,)).astype("int32")
    # Every `fit` makes and destroys an iterator; with tf.data autotune on, the
    # destruction can stall for seconds (epoch times then come in steps of
    # about 2.5 s), so the fixed pipeline runs without autotune.
    data_options = tf.data.Options()
    data_options.autotune.enabled = False
    data = tf.data.Dataset.from_tensor_slices((x, y)).batch(args.batch).repeat().prefetch(2)
    data = data.with_options(data_options)
    models = {name: build(options, args.width) for name, options in VARIANTS.items()}
    times = time_epochs(models, data, args.steps, args.rounds)
    rows = report(models, times)
    out = {
        "input_shape": list(INPUT_SHAPE),
        "layout": list(LAYOUT),
        "batch": args.batch,
        "steps_per_epoch": args.steps,
        "rounds": args.rounds,
        "width": args.width,
        "results": rows,
        "epoch_s": times,
    }
    write_results(args.output or results_path("decomposed_epoch", args.quick), out, argv)
    return 0


if __name__ == "__main__":
    sys.exit(main())
