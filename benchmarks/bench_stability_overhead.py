"""Epoch time of plain fit vs fit + StabilityStopping vs fit + LayerMetrics.

Side by side in one process, on VGG-11-BN and ResNet-18 at CIFAR size
(32x32x3, random data: the overhead does not depend on the values), one
model per architecture. Each configuration runs `--rounds` fits of
`--epochs` epochs, interleaved, each round starting with another
configuration (plain, stability, metrics; stability, metrics, plain; ...); the
first epoch of every fit (tracing) is the warm-up and is dropped. An epoch's
time runs from before every callback's `on_epoch_begin` to after every
callback's `on_epoch_end`, so the callbacks' own per-epoch work (resetting and
reading the accumulators, writing summaries) is counted.

The input is a cached, repeated `tf.data` pipeline with autotuning off, read
with `steps_per_epoch`, so that no epoch creates or destroys an iterator (on
these machines destroying one can stall for seconds, which would swamp a 3%
effect). Reported per configuration: the median and the minimum epoch time,
and the overhead vs plain fit from the medians, from the minima, and as the
median of the per-round ratios (each round's median over plain's median in
the same round). Written to `benchmarks/results/stability_overhead.json` with
the exact command. Target: overhead <= 3%.

    python benchmarks/bench_stability_overhead.py            # full
    python benchmarks/bench_stability_overhead.py --quick    # smoke test
"""

import statistics
import tempfile
import time

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from _common import make_parser, results_path, write_results

from kerascnn import zoo  # noqa: E402
from kerascnn.callbacks import LayerMetrics, StabilityStopping  # noqa: E402


class EpochStart(keras.callbacks.Callback):
    """Placed first: notes the time before the other callbacks' on_epoch_begin."""

    def on_epoch_begin(self, epoch, logs=None):
        self.t = time.perf_counter()


class EpochEnd(keras.callbacks.Callback):
    """Placed last: the epoch's time, after the other callbacks' on_epoch_end."""

    def __init__(self, start):
        super().__init__()
        self.start = start
        self.times = []

    def on_epoch_end(self, epoch, logs=None):
        self.times.append(time.perf_counter() - self.start.t)


def main(argv=None):
    parser = make_parser(__doc__)
    parser.add_argument("--models", default="vgg11_bn,resnet18")
    parser.add_argument("--samples", type=int, default=4096)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--width-multiplier", type=float, default=1.0)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--jit-compile", default="auto")
    parser.add_argument("--output", default=None)
    args = parser.parse_args(argv)
    if args.quick:
        args.samples, args.batch_size, args.epochs, args.rounds = 64, 16, 3, 1
        args.width_multiplier = 0.125
    if args.output is None:
        args.output = results_path("stability_overhead", args.quick)
    jit = {"auto": "auto", "true": True, "false": False}[args.jit_compile.lower()]
    rng = np.random.default_rng(0)
    x = rng.normal(size=(args.samples, args.size, args.size, 3)).astype("float32")
    y = rng.integers(0, 10, args.samples)
    options = tf.data.Options()
    options.autotune.enabled = False
    dataset = (
        tf.data.Dataset.from_tensor_slices((x, y))
        .batch(args.batch_size, drop_remainder=True)
        .cache()
        .repeat()
        .with_options(options)
    )
    steps = args.samples // args.batch_size
    results = {}
    logdir = tempfile.mkdtemp(prefix="bench_layer_metrics_")
    for name in args.models.split(","):
        keras.utils.set_random_seed(0)
        model = zoo.build(
            name,
            input_shape=(args.size, args.size, 3),
            classes=10,
            width_multiplier=args.width_multiplier,
        )
        model.compile(
            keras.optimizers.SGD(0.01, momentum=0.9),
            "sparse_categorical_crossentropy",
            jit_compile=jit,
        )
        configs = {
            "plain": lambda: [],
            # patience large: never stops, every epoch is timed.
            "stability_stopping": lambda: [StabilityStopping(patience=10**6)],
            "layer_metrics": lambda: [LayerMetrics(logdir)],
        }
        times = {k: [] for k in configs}
        round_ratios = {k: [] for k in configs if k != "plain"}
        order = list(configs)
        for rnd in range(args.rounds):
            this_round = {}
            # Each round starts with another configuration (position effects).
            shift = rnd % len(order)
            for key in order[shift:] + order[:shift]:
                make = configs[key]
                start = EpochStart()
                end = EpochEnd(start)
                model.fit(
                    dataset,
                    steps_per_epoch=steps,
                    epochs=args.epochs,
                    verbose=0,
                    callbacks=[start] + make() + [end],
                )
                kept = end.times[1:]  # drop the warm-up (tracing) epoch
                times[key] += kept
                this_round[key] = statistics.median(kept)
            for key in round_ratios:
                round_ratios[key].append(this_round[key] / this_round["plain"])
        med = {k: statistics.median(v) for k, v in times.items()}
        low = {k: min(v) for k, v in times.items()}
        others = [k for k in configs if k != "plain"]
        results[name] = {
            "median_epoch_s": med,
            "min_epoch_s": low,
            "overhead_vs_plain": {k: med[k] / med["plain"] - 1.0 for k in others},
            "overhead_vs_plain_min": {k: low[k] / low["plain"] - 1.0 for k in others},
            "overhead_vs_plain_paired": {
                k: statistics.median(round_ratios[k]) - 1.0 for k in others
            },
            "round_ratios": round_ratios,
            "epoch_times_s": times,
        }
        print(
            name,
            {k: f"{v:.4f}s" for k, v in med.items()},
            "median:",
            {k: f"{100 * v:+.1f}%" for k, v in results[name]["overhead_vs_plain"].items()},
            "min:",
            {k: f"{100 * v:+.1f}%" for k, v in results[name]["overhead_vs_plain_min"].items()},
            "paired:",
            {k: f"{100 * v:+.1f}%" for k, v in results[name]["overhead_vs_plain_paired"].items()},
            flush=True,
        )
    out = {
        "quick": args.quick,
        "config": vars(args),
        "results": results,
        "target_overhead": 0.03,
    }
    write_results(args.output, out, argv)


if __name__ == "__main__":
    main()
