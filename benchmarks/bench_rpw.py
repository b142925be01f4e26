"""Forward+backward time of PW vs GPW vs RPW (1x1 convolutions), paired.

MobileNet-like shape: 32x16x16x256 -> 256 channels. Every variant is a
compiled `tf.function` computing the loss gradient w.r.t. the input and the
weights. All variants run side by side in one process: a warm-up, then
`--rounds` rounds, each running every variant (`--inner` calls) in a rotated
order; per round every variant's time is divided by the plain PW's time of
the same round (paired ratio) and the table reports the medians. `pw (A/A)`
is a second plain PW: its ratio shows the noise floor.

Variants:
- `pw`: keras `Conv2D` 1x1 (dense);
- `gpw g=2/4/8`: `GroupPointwiseConv2D` (split + one matmul per group);
- `rpw g=2/4 o=0.33/0.5`: `RollingPointwiseConv2D` (`implementation="auto"`:
  "split" at o=0.5 with 128+ channels, "dense" at o=0.33 whose windows do
  not tile);
- `rpw ... dense` / `rpw ... sliced`: the dense masked path and the batched
  per-tap path at o=0.5, to show where they stand.
`rpw/gpw` is the paired ratio to the GPW of the same g (equal MACs/params).

Usage:
    python benchmarks/bench_rpw.py --quick
    python benchmarks/bench_rpw.py
"""

import os
import statistics
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402
from _common import make_parser, results_path, write_results  # noqa: E402

from kerascnn.layers import GroupPointwiseConv2D, RollingPointwiseConv2D  # noqa: E402


def variants(c):
    """`{name: (layer, MACs per pixel, reference GPW name or None)}`."""
    out = {"pw": (keras.layers.Conv2D(c, 1), c * c, None)}
    out["pw (A/A)"] = (keras.layers.Conv2D(c, 1), c * c, None)
    for g in (2, 4, 8):
        out[f"gpw g={g}"] = (GroupPointwiseConv2D(c, g), c * c // g, None)
    for g in (2, 4):
        for o in (0.33, 0.5):
            out[f"rpw g={g} o={o}"] = (RollingPointwiseConv2D(c, g, o), c * c // g, f"gpw g={g}")
        layer = RollingPointwiseConv2D(c, g, 0.5, implementation="dense")
        out[f"rpw g={g} o=0.5 dense"] = (layer, c * c // g, f"gpw g={g}")
        layer = RollingPointwiseConv2D(c, g, 0.5, implementation="sliced")
        out[f"rpw g={g} o=0.5 sliced"] = (layer, c * c // g, f"gpw g={g}")
    return out


def make_step(layer, x):
    """A compiled fwd+bwd step of `layer` on `x` (built here)."""
    layer.build(x.shape)

    @tf.function
    def step(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = layer(x)
            loss = tf.reduce_mean(y * y)
        return tape.gradient(loss, [x] + layer.trainable_weights)

    return step


def time_rounds(steps, x, rounds, inner, warmup):
    """Per-variant lists of per-call ms, interleaved in rotated order."""
    names = list(steps)
    for name in names:
        for _ in range(warmup):
            steps[name](x)[0].numpy()
    times = {name: [] for name in names}
    for r in range(rounds):
        shift = r % len(names)
        for name in names[shift:] + names[:shift]:
            start = time.perf_counter()
            for _ in range(inner):
                grads = steps[name](x)
            grads[0].numpy()
            times[name].append((time.perf_counter() - start) / inner * 1e3)
    return times


def summarize(table, times):
    """Rows of median ms, paired ratios vs PW and vs the GPW of the same g."""
    pw = times["pw"]
    rows = []
    for name, (layer, macs, ref) in table.items():
        ratio = [a / b for a, b in zip(times[name], pw)]
        row = {
            "variant": name,
            "path": getattr(layer, "_mode", "grouped split+matmul" if "gpw" in name else "conv"),
            "macs_per_pixel": macs,
            "median_ms": statistics.median(times[name]),
            "min_ms": min(times[name]),
            "ratio_vs_pw_median": statistics.median(ratio),
            "ratio_vs_pw_q25_q75": [statistics.quantiles(ratio, n=4)[i] for i in (0, 2)],
            "mac_ratio_vs_pw": macs / table["pw"][1],
        }
        if ref is not None:
            row["ratio_vs_gpw_median"] = statistics.median(
                [a / b for a, b in zip(times[name], times[ref])]
            )
        rows.append(row)
    return rows


def print_table(rows):
    print(
        f"{'variant':24s} {'path':22s} {'ms':>7s} {'/pw':>6s} {'q25-q75':>12s} {'MAC/pw':>7s} "
        f"{'/gpw':>6s}"
    )
    for r in rows:
        q = r["ratio_vs_pw_q25_q75"]
        gpw = f"{r['ratio_vs_gpw_median']:6.2f}" if "ratio_vs_gpw_median" in r else "     -"
        print(
            f"{r['variant']:24s} {r['path']:22s} {r['median_ms']:7.2f} "
            f"{r['ratio_vs_pw_median']:6.3f} {q[0]:5.2f}-{q[1]:5.2f} {r['mac_ratio_vs_pw']:7.3f} "
            f"{gpw}",
            flush=True,
        )


def main(argv=None):
    parser = make_parser(__doc__, quick_help="batch 4, 3 rounds (a smoke run)")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--size", type=int, default=16)
    parser.add_argument("--channels", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--inner", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--output", default=None)
    args = parser.parse_args(argv)
    if args.quick:
        args.batch, args.rounds, args.inner, args.warmup = 4, 4, 1, 1
    c = args.channels
    x = tf.random.normal((args.batch, args.size, args.size, c), seed=0)
    table = variants(c)
    steps = {name: make_step(layer, x) for name, (layer, _, _) in table.items()}
    times = time_rounds(steps, x, args.rounds, args.inner, args.warmup)
    rows = summarize(table, times)
    print_table(rows)
    out = {
        "shape": [args.batch, args.size, args.size, c],
        "rounds": args.rounds,
        "inner": args.inner,
        "warmup": args.warmup,
        "results": rows,
        "times_ms": times,
    }
    write_results(args.output or results_path("rpw", args.quick), out, argv)
    return 0


if __name__ == "__main__":
    sys.exit(main())
