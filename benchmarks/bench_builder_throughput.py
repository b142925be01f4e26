"""Training throughput of kerascnn's ResNet-50 against keras.applications' ResNet50.

Both models train side by side in one process on the same random data, with
the same batch size and optimizer (SGD): warm-up steps for each, then
alternating timed repetitions (keras, ours, keras, ours, ...) so that
machine-load drifts hit both equally. Reports the median images/s of each,
the ratio ours/keras (target >= 0.97) and both models' MACs: keras'
ResNet50 is v1 (stride on the first 1x1 convolution of a block) while ours
is v1.5 (stride on the 3x3, like torchvision), which costs ~6% more MACs, so
read the throughput ratio against the MACs ratio.

Writes `benchmarks/results/builder_throughput.json` and `.md`.

Usage:

    TF_ENABLE_ONEDNN_OPTS=1 python benchmarks/bench_builder_throughput.py
    python benchmarks/bench_builder_throughput.py --quick   # smoke test
"""

from __future__ import annotations

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


def count_macs(model):
    """Forward MACs for a batch of one (kerascnn.observe.summary, or a Conv/Dense count)."""
    try:
        from kerascnn.observe import summary

        return int(summary.summarize(model).macs)
    except Exception:  # summary missing or failing: count Conv2D/Dense ourselves
        total = 0
        for layer in model.layers:
            if isinstance(layer, keras.layers.DepthwiseConv2D):
                _, h, w, c = layer.output.shape
                kh, kw = layer.kernel_size
                total += h * w * c * kh * kw
            elif isinstance(layer, keras.layers.Conv2D):
                _, h, w, c_out = layer.output.shape
                kh, kw = layer.kernel_size
                c_in = layer.input.shape[-1]
                total += h * w * c_out * kh * kw * c_in // layer.groups
            elif isinstance(layer, keras.layers.Dense):
                total += layer.input.shape[-1] * layer.units
        return int(total)


def make_models(input_shape, classes):
    keras_model = keras.applications.ResNet50(
        weights=None, input_shape=input_shape, classes=classes
    )
    ours = zoo.resnet50(input_shape=input_shape, classes=classes, variant="imagenet")
    return {"keras": keras_model, "kerascnn": ours}


def time_steps(model, dataset, steps):
    """Runs `steps` training steps; returns the seconds taken."""
    start = time.perf_counter()
    model.fit(dataset, steps_per_epoch=steps, epochs=1, shuffle=False, verbose=0)
    return time.perf_counter() - start


def main(argv=None):
    parser = make_parser(__doc__, quick_help="1 rep, 2 steps, batch 4")
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--steps", type=int, default=20, help="steps per repetition")
    parser.add_argument("--warmup", type=int, default=5, help="warm-up steps per model")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--size", type=int, default=64, help="input height and width")
    parser.add_argument("--output", default=results_path("builder_throughput"))
    args = parser.parse_args(argv)
    if args.quick:
        args.reps, args.steps, args.warmup, args.batch_size = 1, 2, 1, 4
    for key in ("reps", "steps", "batch_size", "size"):
        if getattr(args, key) < 1:
            parser.error(f"--{key.replace('_', '-')} must be >= 1. Received: {getattr(args, key)}")

    keras.utils.set_random_seed(0)
    input_shape, classes = (args.size, args.size, 3), 10
    models = make_models(input_shape, classes)
    macs = {name: count_macs(model) for name, model in models.items()}
    params = {name: int(model.count_params()) for name, model in models.items()}

    rng = np.random.default_rng(0)
    n = args.batch_size * 8
    x = rng.random((n, *input_shape), dtype=np.float32)
    y = rng.integers(0, classes, n)
    dataset = (
        tf.data.Dataset.from_tensor_slices((x, y))
        .repeat()
        .batch(args.batch_size, drop_remainder=True)
        .prefetch(2)
    )
    # Every `fit` call makes (and destroys) an iterator; with autotune on, the
    # destruction can stall for up to a minute on a busy CPU.
    options = tf.data.Options()
    options.autotune.enabled = False
    dataset = dataset.with_options(options)
    for model in models.values():
        model.compile(
            optimizer=keras.optimizers.SGD(0.01, momentum=0.9),
            loss="sparse_categorical_crossentropy",
        )
        time_steps(model, dataset, max(1, args.warmup))  # compile + warm-up

    seconds = {name: [] for name in models}
    for _ in range(args.reps):
        for name, model in models.items():  # alternate keras / ours
            seconds[name].append(time_steps(model, dataset, args.steps))
    images = args.steps * args.batch_size
    per_rep = {name: [images / s for s in values] for name, values in seconds.items()}
    median = {name: statistics.median(values) for name, values in per_rep.items()}
    ratio = median["kerascnn"] / median["keras"]

    result = {
        "benchmark": "builder_throughput",
        "quick": args.quick,
        "settings": {
            "reps": args.reps,
            "steps_per_rep": args.steps,
            "warmup_steps": args.warmup,
            "batch_size": args.batch_size,
            "input_shape": list(input_shape),
            "classes": classes,
            "optimizer": "SGD(0.01, momentum=0.9)",
        },
        "kerascnn": getattr(kerascnn, "__version__", "unknown"),
        "params": params,
        "macs": macs,
        "macs_ratio_ours_over_keras": macs["kerascnn"] / macs["keras"],
        "images_per_s_per_rep": per_rep,
        "images_per_s_median": median,
        "ratio_ours_over_keras": ratio,
        "target_ratio": 0.97,
        "meets_target": ratio >= 0.97,
    }
    result = write_results(args.output, result, argv)
    out = Path(args.output)
    md = [
        "# Builder throughput: kerascnn ResNet-50 (v1.5) vs keras.applications ResNet50 (v1)",
        "",
        f"Command: `{result['command']}`"
        + (" (quick smoke run, not a measurement)" if args.quick else ""),
        "",
        f"TF {tf.__version__}, Keras {keras.__version__}, {os.cpu_count()} CPUs, "
        f"TF_ENABLE_ONEDNN_OPTS={os.environ.get('TF_ENABLE_ONEDNN_OPTS')}, "
        f"batch {args.batch_size}, {args.size}x{args.size}x3, "
        f"{args.reps} reps x {args.steps} steps.",
        "",
        "| model | params | MACs (batch 1) | images/s (median) |",
        "|---|---:|---:|---:|",
    ]
    for name in models:
        md.append(f"| {name} | {params[name]:,} | {macs[name]:,} | {median[name]:.1f} |")
    md += [
        "",
        f"Throughput ratio ours/keras: **{ratio:.3f}** (target >= 0.97); "
        f"MACs ratio ours/keras: {result['macs_ratio_ours_over_keras']:.3f}.",
        "",
    ]
    out.with_suffix(".md").write_text("\n".join(md))
    print("\n".join(md))
    return 0


if __name__ == "__main__":
    sys.exit(main())
