"""Forward+backward time of RPW vs GPW vs PW (and a slice-and-concatenate RPW).

MobileNet-like shapes: 16x16x256 -> 256 channels, g in {2, 4}, o in {0.33, 0.5}.
All layers run side by side in one process, each as a compiled `tf.function`
computing the loss gradient w.r.t. the input and the kernel; warm-up runs
first, then the median of `--repeats` timed runs.

Compared, per (g, o):
- `pw`: keras Conv2D 1x1 (dense, g times the MACs of RPW-g);
- `gpw`: GroupPointwiseConv2D(groups=g) -- the same MACs and parameters as
  RPW-g-o (every filter reads C/g channels in both: the overlap changes which
  channels, not how many), so it is also "the GPW of equal MACs";
- `rpw`: RollingPointwiseConv2D (auto implementation), and its `gather` and
  `dense` paths;
- `rpw_naive`: the paper's Listing 2 style: one slice (and wrap-around concat)
  per distinct window, concatenated, then one grouped convolution.

Usage:
    python benchmarks/bench_rpw.py --quick
    python benchmarks/bench_rpw.py --batch 64 --repeats 30
"""

import os
import statistics
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402
from _common import make_parser, results_path, write_results  # noqa: E402

from kerascnn.arch.channels import rolling_windows  # noqa: E402
from kerascnn.layers import GroupPointwiseConv2D, RollingPointwiseConv2D  # noqa: E402


class NaiveRPW(keras.layers.Layer):
    """Slice-and-concatenate RPW (the paper's Listing 2, one filter per window)."""

    def __init__(self, filters, groups, overlap, **kwargs):
        super().__init__(**kwargs)
        self.filters, self.groups, self.overlap = filters, groups, overlap

    def build(self, input_shape):
        c = input_shape[-1]
        self.windows = rolling_windows(c, self.filters, self.groups, self.overlap)
        self.width = self.windows.shape[1]
        self.kernel = self.add_weight(shape=(1, 1, self.width, self.filters), name="kernel")
        self.c = c

    def call(self, x):
        parts = []
        for w in self.windows:
            start, end = int(w[0]), int(w[-1]) + 1
            if start < end:
                parts.append(x[..., start:end])
            else:
                parts.append(tf.concat([x[..., start:], x[..., :end]], axis=-1))
        return tf.nn.conv2d(tf.concat(parts, axis=-1), self.kernel, 1, "VALID")


def time_layer(layer, x, warmup, repeats):
    if not layer.built:
        layer.build(x.shape)

    @tf.function
    def step(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = layer(x)
            loss = tf.reduce_mean(y * y)
        return tape.gradient(loss, [x] + layer.trainable_weights)

    for _ in range(warmup):
        _ = [g.numpy() for g in step(x)][:1]
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        grads = step(x)
        grads[0].numpy()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


def main(argv=None):
    parser = make_parser(__doc__, quick_help="batch 8, few repeats")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--size", type=int, default=16)
    parser.add_argument("--channels", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--output", default=results_path("rpw"))
    args = parser.parse_args(argv)
    if args.quick:
        args.batch, args.repeats, args.warmup = 8, 5, 2
    c = args.channels
    x = tf.random.normal((args.batch, args.size, args.size, c))
    rows = []
    pw_ms = time_layer(keras.layers.Conv2D(c, 1), x, args.warmup, args.repeats)
    for g in (2, 4):
        gpw_ms = time_layer(GroupPointwiseConv2D(c, g), x, args.warmup, args.repeats)
        gpw_shuffle_ms = time_layer(
            GroupPointwiseConv2D(c, g, shuffle=True), x, args.warmup, args.repeats
        )
        for o in (0.33, 0.5):
            res = {
                "groups": g,
                "overlap": o,
                "pw_ms": pw_ms,
                "gpw_ms": gpw_ms,
                "gpw_shuffle_ms": gpw_shuffle_ms,
            }
            for impl in ("auto", "gather", "dense"):
                layer = RollingPointwiseConv2D(c, g, o, implementation=impl)
                layer.build(x.shape)
                if impl == "gather" and layer._distinct * c // g > 2 * c:
                    # Gathering many distinct windows (o=0.33) is impractical.
                    res["rpw_gather_ms"] = float("nan")
                    continue
                res[f"rpw_{impl}_ms"] = time_layer(layer, x, args.warmup, args.repeats)
                if impl == "auto":
                    res["rpw_auto_path"] = layer._mode
            res["rpw_naive_ms"] = time_layer(NaiveRPW(c, g, o), x, args.warmup, args.repeats)
            res["macs_rpw_per_sample"] = args.size**2 * c * c // g
            res["macs_gpw_per_sample"] = args.size**2 * c * c // g
            res["macs_pw_per_sample"] = args.size**2 * c * c
            res["rpw_over_gpw"] = res["rpw_auto_ms"] / gpw_ms
            res["naive_over_rpw"] = res["rpw_naive_ms"] / res["rpw_auto_ms"]
            rows.append(res)
            print(
                f"g={g} o={o}: pw {pw_ms:.2f} ms | gpw {gpw_ms:.2f} (shuffle "
                f"{gpw_shuffle_ms:.2f}) | rpw {res['rpw_auto_ms']:.2f} [{res['rpw_auto_path']}] "
                f"(gather {res['rpw_gather_ms']:.2f}, dense {res['rpw_dense_ms']:.2f}) | naive "
                f"{res['rpw_naive_ms']:.2f} | rpw/gpw {res['rpw_over_gpw']:.2f} | "
                f"naive/rpw {res['naive_over_rpw']:.1f}x",
                flush=True,
            )
    out = {
        "shape": [args.batch, args.size, args.size, c],
        "repeats": args.repeats,
        "warmup": args.warmup,
        "device": (tf.config.list_physical_devices("GPU") or ["cpu"])[0].__str__(),
        "results": rows,
    }
    write_results(args.output, out, argv)
    return 0


if __name__ == "__main__":
    sys.exit(main())
