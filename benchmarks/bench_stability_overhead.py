"""Epoch time of plain fit vs fit + StabilityStopping vs fit + LayerMetrics.

Side by side in one process, on VGG-11-BN and ResNet-18 at CIFAR size
(32x32x3, random data: the overhead does not depend on the values), one
model per architecture. Each configuration runs `--rounds` fits of
`--epochs` epochs, interleaved in rotated order (round r starts with the
r-th configuration); the first epoch of every fit (tracing) is the warm-up
and is dropped. The configurations are `plain`, `plain_aa` (plain again: the
A/A control, whose ratio to `plain` shows the noise floor of the run),
`stability_stopping` and `layer_metrics`. An epoch's time runs from before
every callback's `on_epoch_begin` to after every callback's `on_epoch_end`,
so the callbacks' own per-epoch work (resetting and reading the
accumulators, writing summaries) is counted.

The input is a cached, repeated `tf.data` pipeline with autotuning off, read
with `steps_per_epoch`, so that no epoch creates or destroys an iterator.
Reported per configuration: the median epoch time and, against `plain`, the
median of the per-round paired ratios (each round's median epoch over
plain's median in the same round) with their min-max spread, plus the
ratios of the overall medians and minima. The A/A row's spread is the noise
floor: an overhead inside it is not resolved by the run.

`--interleave block` alternates much shorter units instead of whole fits:
one model per configuration (same initial weights, callbacks installed
once) and epochs of `--block-steps` steps driven by hand, the
configurations' epochs alternated in rotated order (two warm-up rounds
dropped), so that each round's epochs lie seconds apart and this shared
machine's load drifts (whole fits 20% slower for a minute) cancel in the
paired ratios. Its short epochs count the per-epoch callback work more
often than real epochs would.

`--host-layers N` (default 20, 0 to skip) first times the host side of the
callbacks' epoch hooks on an N-convolution net (tiny, so the time is host
work): `on_epoch_begin` / `on_epoch_end` of LayerMetrics and of
StabilityStopping, medians over the epochs after the first.

`--configs plain,plain_aa,learn_drop_score` times Learn&Drop's pre-drop epochs
(`LayerDropping(warmup_epochs=10**6)`: the gradient sums of its score every
step, no drop) against plain.

Written to `benchmarks/results/stability_overhead.json` (or `--output`)
with the exact command. Targets (issue 13): StabilityStopping <= 1% on
ResNet-18 and full-width VGG-11-BN, <= 2% on 1/4-width VGG-11-BN;
LayerMetrics <= 2% on 1/4-width VGG-11-BN; LayerMetrics epoch end < 5 ms
on a 20-layer net.

    python benchmarks/bench_stability_overhead.py --width-multiplier 0.25
    python benchmarks/bench_stability_overhead.py --models vgg11_bn \\
        --width-multiplier 1 --configs plain,plain_aa,stability_stopping
    python benchmarks/bench_stability_overhead.py --interleave block --rounds 30
    python benchmarks/bench_stability_overhead.py --quick    # smoke test
"""

import statistics
import tempfile
import time

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from _common import make_parser, results_path, write_results
from _epoch_timer import EpochEnd, EpochStart

from kerascnn import zoo  # noqa: E402
from kerascnn.callbacks import LayerDropping, LayerMetrics, StabilityStopping  # noqa: E402

# `learn_drop_score` (Learn&Drop's pre-drop epochs) runs only when asked for.
CONFIGS = ("plain", "plain_aa", "stability_stopping", "layer_metrics", "learn_drop_score")
DEFAULT_CONFIGS = CONFIGS[:4]


def timed_hooks(callback, record):
    """Wraps `callback`'s epoch hooks so that their wall time goes to `record`."""
    for hook in ("on_epoch_begin", "on_epoch_end"):
        original = getattr(callback, hook)

        def wrapper(epoch, logs=None, original=original, hook=hook):
            t = time.perf_counter()
            original(epoch, logs)
            record.setdefault(f"{type(callback).__name__}.{hook}", []).append(
                time.perf_counter() - t
            )

        setattr(callback, hook, wrapper)
    return callback


def host_time(layers, epochs=12):
    """Milliseconds of the epoch hooks on a `layers`-convolution net (medians)."""
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [keras.Input((8, 8, 8))]
        + [keras.layers.Conv2D(8, 3, padding="same", name=f"conv{i}") for i in range(layers)]
        + [keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(4)]
    )
    model.compile(keras.optimizers.SGD(0.01), "sparse_categorical_crossentropy")
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(32, 8, 8, 8)).astype("float32"), rng.integers(0, 4, 32)
    record = {}
    callbacks = [
        timed_hooks(StabilityStopping(patience=10**6), record),
        timed_hooks(LayerMetrics(tempfile.mkdtemp(prefix="bench_host_")), record),
    ]
    model.fit(x, y, batch_size=8, epochs=epochs, verbose=0, callbacks=callbacks)
    return {key: 1000 * statistics.median(v[1:]) for key, v in record.items()}


def make_callbacks(key, logdir):
    """The callbacks of configuration `key` (fresh instances)."""
    if key == "stability_stopping":
        # patience large: never stops, every epoch is timed.
        return [StabilityStopping(patience=10**6)]
    if key == "layer_metrics":
        return [LayerMetrics(logdir)]
    if key == "learn_drop_score":
        # Learn&Drop's pre-drop epochs: the per-weight gradient sums of eq. 2
        # accumulated every step, no decision (warm-up longer than the run).
        return [LayerDropping(warmup_epochs=10**6)]
    return []


def make_dataset(args):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(args.samples, args.size, args.size, 3)).astype("float32")
    y = rng.integers(0, 10, args.samples)
    options = tf.data.Options()
    options.autotune.enabled = False
    return (
        tf.data.Dataset.from_tensor_slices((x, y))
        .batch(args.batch_size, drop_remainder=True)
        .cache()
        .repeat()
        .with_options(options)
    )


def run_model(name, args, dataset, logdir):
    """Fit interleaving: whole fits in rotated order; returns its results entry."""
    model = build_model(name, args)
    order = args.configs
    times = {k: [] for k in order}
    rounds = []
    for rnd in range(args.rounds):
        this_round = {}
        shift = rnd % len(order)
        for key in order[shift:] + order[:shift]:
            start = EpochStart()
            end = EpochEnd(start)
            model.fit(
                dataset,
                steps_per_epoch=args.samples // args.batch_size,
                epochs=args.epochs,
                verbose=0,
                callbacks=[start] + make_callbacks(key, logdir) + [end],
            )
            kept = end.times[1:]  # drop the warm-up (tracing) epoch
            times[key] += kept
            this_round[key] = statistics.median(kept)
        rounds.append(this_round)
    return summarize(times, rounds, order)


def summarize(times, rounds, order):
    """Medians, paired per-round ratios against `plain` and their spread."""
    ratios = {k: [r[k] / r["plain"] for r in rounds] for k in order if k != "plain"}
    med = {k: statistics.median(v) for k, v in times.items()}
    low = {k: min(v) for k, v in times.items()}
    return {
        "median_epoch_s": med,
        "min_epoch_s": low,
        "paired_ratio_median": {k: statistics.median(v) for k, v in ratios.items()},
        "paired_ratio_min": {k: min(v) for k, v in ratios.items()},
        "paired_ratio_max": {k: max(v) for k, v in ratios.items()},
        "ratio_of_medians": {k: med[k] / med["plain"] for k in ratios},
        "ratio_of_minima": {k: low[k] / low["plain"] for k in ratios},
        "round_ratios": ratios,
        "round_medians_s": rounds,
        "epoch_times_s": times,
    }


def build_model(name, args):
    keras.utils.set_random_seed(0)
    model = zoo.build(
        name, input_shape=(args.size, args.size, 3), classes=10, width_multiplier=args.width
    )
    model.compile(
        keras.optimizers.SGD(0.01, momentum=0.9),
        "sparse_categorical_crossentropy",
        jit_compile={"auto": "auto", "true": True, "false": False}[args.jit_compile.lower()],
    )
    return model


def run_model_blocks(name, args, dataset, logdir):
    """Block interleaving: one model per configuration, short epochs alternated.

    Each configuration gets its own copy of the model (same initial weights)
    and its callbacks, installed once; a *block* is one epoch of
    `--block-steps` steps driven by hand (`on_epoch_begin`, the keras train
    function, `on_epoch_end`), and the configurations' blocks alternate in
    rotated order, so that a round's blocks lie seconds apart and the slow
    load drifts of a shared machine cancel in the paired ratios. Short epochs
    weigh the per-epoch callback work `samples / (batch * block_steps)` times
    more than a real epoch would: conservative for the callbacks.
    """
    order = args.configs
    runs = {}
    for key in order:
        model = build_model(name, args)
        model.fit(dataset, steps_per_epoch=1, epochs=1, verbose=0)  # builds everything
        callbacks = make_callbacks(key, logdir)
        for callback in callbacks:
            callback.set_model(model)
            callback.set_params({"epochs": 10**6, "steps": args.block_steps, "verbose": 0})
            callback.on_train_begin()
        model.make_train_function()
        runs[key] = (model, callbacks, iter(dataset))
    times = {k: [] for k in order}
    rounds = []
    for rnd in range(args.rounds + 2):  # two warm-up rounds (tracing)
        this_round = {}
        shift = rnd % len(order)
        for key in order[shift:] + order[:shift]:
            model, callbacks, iterator = runs[key]
            start = time.perf_counter()
            for callback in callbacks:
                callback.on_epoch_begin(rnd)
            for _ in range(args.block_steps):
                logs = model.train_function(iterator)
            logs = logs.get_value() if hasattr(logs, "get_value") else logs
            float(logs["loss"])  # the steps have run
            for callback in callbacks:
                callback.on_epoch_end(rnd, {})
            this_round[key] = time.perf_counter() - start
        if rnd >= 2:
            rounds.append(this_round)
            for key, value in this_round.items():
                times[key].append(value)
    for _model, callbacks, _ in runs.values():
        for callback in callbacks:
            callback.on_train_end()
    return summarize(times, rounds, order)


def print_table(name, entry):
    print(f"\n{name}: epoch time vs plain (paired per-round ratios; plain_aa = A/A control)")
    print(
        f"{'config':<20}{'median s':>10}{'paired':>10}{'spread':>20}{'med/med':>10}{'min/min':>10}"
    )
    print(f"{'plain':<20}{entry['median_epoch_s']['plain']:>10.4f}{'1.000':>10}")
    for key, ratio in entry["paired_ratio_median"].items():
        spread = f"{entry['paired_ratio_min'][key]:.3f}-{entry['paired_ratio_max'][key]:.3f}"
        print(
            f"{key:<20}{entry['median_epoch_s'][key]:>10.4f}{ratio:>10.3f}{spread:>20}"
            f"{entry['ratio_of_medians'][key]:>10.3f}{entry['ratio_of_minima'][key]:>10.3f}",
            flush=True,
        )


def main(argv=None):
    parser = make_parser(__doc__)
    parser.add_argument("--models", default="vgg11_bn,resnet18")
    parser.add_argument("--configs", default=",".join(DEFAULT_CONFIGS))
    parser.add_argument("--samples", type=int, default=2048)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--width-multiplier", dest="width", type=float, default=0.25)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--jit-compile", default="auto")
    parser.add_argument("--host-layers", type=int, default=20)
    parser.add_argument("--interleave", choices=("fit", "block"), default="fit")
    parser.add_argument("--block-steps", type=int, default=8)
    parser.add_argument("--output", default=None)
    args = parser.parse_args(argv)
    if args.quick:
        args.samples, args.batch_size, args.epochs, args.rounds = 64, 16, 3, 1
        args.block_steps = 2
        args.width = 0.125
    args.configs = args.configs.split(",")
    if args.configs[0] != "plain" or not set(args.configs) <= set(CONFIGS):
        raise ValueError(
            f"configs must start with 'plain' and be among {CONFIGS}. "
            f"Received: configs={','.join(args.configs)!r}"
        )
    out = {"quick": args.quick, "config": vars(args), "results": {}}
    if args.host_layers:
        out["epoch_hook_host_ms"] = host_time(args.host_layers)
        print(f"epoch hooks on a {args.host_layers}-conv net, median ms:")
        for key, value in out["epoch_hook_host_ms"].items():
            print(f"  {key:<36}{value:8.2f}", flush=True)
    dataset = make_dataset(args)
    logdir = tempfile.mkdtemp(prefix="bench_layer_metrics_")
    for name in args.models.split(","):
        run = run_model_blocks if args.interleave == "block" else run_model
        out["results"][name] = run(name, args, dataset, logdir)
        print_table(name, out["results"][name])
    out["targets"] = {
        "stability_stopping": "<= 1.01 (ResNet-18, VGG-11-BN width 1), <= 1.02 (VGG-11-BN 1/4)",
        "layer_metrics": "<= 1.02 (VGG-11-BN 1/4); epoch end < 5 ms on 20 layers",
    }
    write_results(args.output or results_path("stability_overhead", args.quick), out, argv)


if __name__ == "__main__":
    main()
