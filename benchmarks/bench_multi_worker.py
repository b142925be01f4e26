"""1 vs 2 local workers (MultiWorkerMirroredStrategy): images/s and the statistics overhead.

The same global work in every configuration: a zoo model (default
`compact_mnist_25k`, 28x28x1) trained on random images with a fixed global
batch (`--batch-size`, split over the workers) for `--steps` steps per epoch.
Each round starts two clusters with `kerascnn.training.launch.launch`, one
of 1 worker and one of 2 (their order rotated by round), whose processes run
this script in `--worker` mode: one `MultiWorkerMirroredStrategy`, one
model, and three whole fits of `--epochs` epochs in rotated order,

- `plain`: no callback;
- `plain_aa`: plain again, the A/A control (its ratio to `plain` is the
  noise floor of the run);
- `stats`: `StabilityStopping` (patience never reached: every epoch runs)
  and `LayerMetrics`, whose per-layer statistics are accumulated in the
  compiled step and all-reduced over every worker.

The first epoch of every fit (tracing) is the warm-up and is dropped; an
epoch's time runs from before every callback's `on_epoch_begin` to after
every callback's `on_epoch_end`. Reported per worker count: images/s of
each fit type (global images per median epoch second, the chief's clock;
all workers step together) and, against `plain`, the median of the paired
per-round ratios of median epoch times (`stats` = the overhead, `plain_aa`
= the noise floor) with their min-max; across worker counts, the paired
per-round speed-up of 2 workers over 1 (`plain`). On one machine the two
workers share its cores: the speed-up is not the point, the overhead of
the callbacks under multi-worker is.

Written to `benchmarks/results/multi_worker.json` (or `--output`) with the
exact command.

    python benchmarks/bench_multi_worker.py
    python benchmarks/bench_multi_worker.py --quick    # smoke test
"""

import argparse
import json
import os
import statistics
import sys
import tempfile
import time

import keras
from _common import make_parser, results_path, write_results
from _epoch_timer import EpochEnd, EpochStart

CONFIGS = ("plain", "plain_aa", "stats")
WORKER_COUNTS = (1, 2)


def parse_args(argv=None):
    parser = make_parser(__doc__, quick_help="1 round, 2 epochs of 4 steps (not figures)")
    parser.add_argument("--model", default="compact_mnist_25k")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=5, help="per fit, the first is warm-up")
    parser.add_argument("--steps", type=int, default=32, help="steps per epoch")
    parser.add_argument("--batch-size", type=int, default=64, help="global batch")
    parser.add_argument("--output", default=None)
    # Worker mode (run by the launcher): the round, where to write, and the launcher's
    # `--strategy multi_worker --output-dir DIR` (ignored).
    hidden = argparse.SUPPRESS
    parser.add_argument("--worker", action="store_true", help=hidden)
    parser.add_argument("--round", type=int, default=0, help=hidden)
    parser.add_argument("--results-dir", default=None, help=hidden)
    parser.add_argument("--strategy", default=None, help=hidden)
    parser.add_argument("--output-dir", default=None, help=hidden)
    args = parser.parse_args(argv)
    if args.quick:
        args.rounds, args.epochs, args.steps = 1, 2, 4
    return args


# ----------------------------------------------------------------- worker mode


def run_worker(args):
    """One worker of a cluster: three fits in rotated order; writes its epoch times."""
    import tensorflow as tf

    strategy = tf.distribute.MultiWorkerMirroredStrategy()  # first, before other TF work
    import numpy as np

    from kerascnn import zoo
    from kerascnn.callbacks import LayerMetrics, StabilityStopping

    rng = np.random.default_rng(0)
    n = args.steps * args.batch_size
    x = rng.normal(size=(n, 28, 28, 1)).astype("float32")
    y = rng.integers(0, 10, n)
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    dataset = (
        tf.data.Dataset.from_tensor_slices((x, y))
        .batch(args.batch_size, drop_remainder=True)
        .cache()
        .repeat()
        .with_options(options)
    )
    keras.utils.set_random_seed(0)
    with strategy.scope():
        model = zoo.build(args.model, input_shape=(28, 28, 1), classes=10)
        model.compile(keras.optimizers.SGD(0.01, momentum=0.9), "sparse_categorical_crossentropy")
    logdir = tempfile.mkdtemp(prefix="bench_mw_")
    makers = {
        "plain": lambda: [],
        "plain_aa": lambda: [],
        "stats": lambda: [StabilityStopping(patience=10**6), LayerMetrics(logdir)],
    }
    shift = args.round % len(CONFIGS)
    times = {}
    for key in CONFIGS[shift:] + CONFIGS[:shift]:
        start = EpochStart()
        end = EpochEnd(start)
        model.fit(
            dataset,
            steps_per_epoch=args.steps,
            epochs=args.epochs,
            verbose=0,
            callbacks=[start, *makers[key](), end],
        )
        times[key] = end.times[1:]  # the first epoch (tracing) is the warm-up
    index = json.loads(os.environ["TF_CONFIG"])["task"]["index"]
    with open(os.path.join(args.results_dir, f"worker{index}.json"), "w") as f:
        json.dump({"worker": index, "epoch_times_s": times}, f)


# ----------------------------------------------------------------- driver


def run_cluster(args, workers, rnd):
    """Launches `workers` processes of this script for round `rnd`; returns the chief's times."""
    from kerascnn.training.launch import launch

    results = tempfile.mkdtemp(prefix="bench_mw_results_")
    program = [sys.executable, os.path.abspath(__file__), "--worker"]
    worker_args = ["--round", str(rnd), "--results-dir", results, "--model", args.model]
    worker_args += ["--epochs", str(args.epochs), "--steps", str(args.steps)]
    worker_args += ["--batch-size", str(args.batch_size), "--output-dir", results]
    with open(os.devnull, "w") as quiet:
        launch(worker_args, workers=workers, program=program, echo=quiet)
    with open(os.path.join(results, "worker0.json")) as f:
        return json.load(f)["epoch_times_s"]


def summarize(args, rounds):
    """Images/s, paired overhead ratios and the 2-vs-1 speed-up from the rounds' times."""
    images = args.steps * args.batch_size
    table = {}
    for workers in WORKER_COUNTS:
        medians = [{k: statistics.median(r[workers][k]) for k in CONFIGS} for r in rounds]
        ratios = {k: [m[k] / m["plain"] for m in medians] for k in ("plain_aa", "stats")}
        table[f"{workers}_worker"] = {
            "images_per_s": {
                k: images / statistics.median(t for r in rounds for t in r[workers][k])
                for k in CONFIGS
            },
            "paired_ratio_median": {k: statistics.median(v) for k, v in ratios.items()},
            "paired_ratio_min": {k: min(v) for k, v in ratios.items()},
            "paired_ratio_max": {k: max(v) for k, v in ratios.items()},
            "round_medians_s": medians,
        }
    speedups = {
        k: [statistics.median(r[1][k]) / statistics.median(r[2][k]) for r in rounds]
        for k in ("plain", "stats")
    }
    table["speedup_2_over_1"] = {k: statistics.median(v) for k, v in speedups.items()}
    table["speedup_rounds"] = speedups
    return table


def print_table(table):
    print(f"{'workers':>8} {'config':>9} {'images/s':>9} {'vs plain (paired median, min-max)':>36}")
    for workers in WORKER_COUNTS:
        row = table[f"{workers}_worker"]
        for k in CONFIGS:
            ratio = "1 (reference)"
            if k != "plain":
                lo, hi = row["paired_ratio_min"][k], row["paired_ratio_max"][k]
                ratio = f"{row['paired_ratio_median'][k]:.3f} ({lo:.3f}-{hi:.3f})"
            print(f"{workers:>8} {k:>9} {row['images_per_s'][k]:>9.0f} {ratio:>36}")
    speed = table["speedup_2_over_1"]
    print(f"speed-up 2 vs 1 worker (paired median): plain {speed['plain']:.3f}, "
          f"stats {speed['stats']:.3f}")  # fmt: skip


def main(argv=None):
    args = parse_args(argv)
    if args.worker:
        run_worker(args)
        return
    rounds = []
    start = time.perf_counter()
    for rnd in range(args.rounds):
        order = WORKER_COUNTS if rnd % 2 == 0 else WORKER_COUNTS[::-1]
        rounds.append({workers: run_cluster(args, workers, rnd) for workers in order})
        print(f"round {rnd + 1}/{args.rounds} done ({time.perf_counter() - start:.0f} s)")
    table = summarize(args, rounds)
    print_table(table)
    report = {
        "settings": {
            k: getattr(args, k) for k in ("model", "rounds", "epochs", "steps", "batch_size")
        },
        "results": table,
        "wall_s": time.perf_counter() - start,
    }
    write_results(args.output or results_path("multi_worker", args.quick), report, argv)


if __name__ == "__main__":
    main()
