"""Benchmark: Learn&Drop (LayerDropping, LayerFreezing) vs plain training, at the time-based limit.

Each run trains the same model (same seed, same initial weights, same data
order) for the same epochs; variants: `plain`, `plain_aa` (plain again: the
A/A control, its "saving" is the noise floor), `freezing` (LayerFreezing) and
`dropping` (LayerDropping). Every run is a fresh subprocess, so that its peak
RSS (`ru_maxrss`) belongs to that run alone; the variants are interleaved in
rotated order over `--rounds` rounds, each compared with the plain run of its
round (paired).

Per run it reports:

* `saving`: 1 - fit time / plain fit time (same round);
* `limit`: the time-based limit of that run's schedule, from its measured
  head step time: `1 - (P - sum_post plain_steps[e] + sum_post head_steps[e]) / P`
  where P is the plain fit time, `plain_steps[e]` the plain run's summed
  train-step time in epoch e, the sums run over the epochs from the first
  drop/freeze on, and `head_steps[e]` is the median over that segment's
  steady epochs (not the build epoch) of the summed head step time per epoch.
  It is the saving if every post-drop step cost what the head's step costs
  and nothing else (set-up, cache build, tracing, statistics) cost anything;
* `ratio` = saving / limit (target >= 0.97); `limit_with_tail_pass` /
  `ratio_with_tail_pass`: the same paying the measured tail forward pass
  and cache write of each build (work the method cannot skip);
* peak RSS, the cache size, the per-drop set-up (split, compile, tail forward +
  cache write, pipeline, first head step incl. its one trace) and test accuracy.

Data: a random subset of the training split and of the test split
(`kerascnn.data.load`, the CIFAR-10 JPEGs / Fashion-MNIST idx files of
`shared/data`), loaded once by the parent and handed to the runs as a
temporary `.npz` (outside the repository). `--quick` trains a tiny
width-0.125 net on a few hundred images (a smoke run, not figures).

Usage:
    python benchmarks/bench_layer_dropping.py --quick
    python benchmarks/bench_layer_dropping.py --rounds 2 --epochs 12 --force-at 3 --force-convs 3
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tempfile
import time

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from _common import ROOT, make_parser, results_path, write_results  # noqa: E402

VARIANTS = ("plain", "plain_aa", "freezing", "dropping")


# ---------------------------------------------------------------- one run (subprocess)
def _timers():
    import keras

    class Timer(keras.callbacks.Callback):
        """Epoch wall times and the summed train-step time of each epoch."""

        def __init__(self):
            super().__init__()
            self.epochs, self.steps = [], []

        def on_epoch_begin(self, epoch, logs=None):
            self._epoch, self._step_times = time.perf_counter(), []

        def on_train_batch_begin(self, batch, logs=None):
            self._step = time.perf_counter()

        def on_train_batch_end(self, batch, logs=None):
            self._step_times.append(time.perf_counter() - self._step)

        def on_epoch_end(self, epoch, logs=None):
            self.epochs.append(time.perf_counter() - self._epoch)
            self.steps.append(self._step_times)

    return Timer()


def run_variant(cfg):
    """Trains one variant and returns its measurements (runs in a subprocess)."""
    import keras
    import tensorflow as tf

    from kerascnn import zoo
    from kerascnn.callbacks import LayerDropping, LayerFreezing

    tf.config.threading.set_inter_op_parallelism_threads(2)
    data = np.load(cfg["data"])
    x, y, xt, yt = data["x"], data["y"], data["xt"], data["yt"]
    keras.utils.set_random_seed(cfg["seed"])
    model = getattr(zoo, cfg["arch"])(
        input_shape=x.shape[1:], width_multiplier=cfg["width"], classes=10
    )
    model.compile(
        keras.optimizers.SGD(cfg["lr"], momentum=0.9),
        "sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    force = {cfg["force_at"]: cfg["force_convs"]} if cfg["force_at"] is not None else None
    method, timer, learn_drop = cfg["variant"], _timers(), None
    if method == "freezing":
        learn_drop = LayerFreezing(warmup_epochs=cfg["warmup"], force_drops=force, log_scores=False)
    elif method == "dropping":
        learn_drop = LayerDropping(
            warmup_epochs=cfg["warmup"],
            cache=cfg["cache"],
            cache_dtype=cfg["cache_dtype"],
            force_drops=force,
            log_scores=False,
            seed=cfg["seed"],
            verbose=1,
        )
    callbacks = ([learn_drop] if learn_drop is not None else []) + [timer]
    if cfg.get("lr_step_epoch"):  # the paper's CIFAR-10 schedule: the rate / 10 after epoch N
        step, lr = cfg["lr_step_epoch"], cfg["lr"]
        callbacks.append(
            keras.callbacks.LearningRateScheduler(lambda e: lr if e < step else lr / 10)
        )
    options = tf.data.Options()
    options.autotune.enabled = False  # the same fixed pipeline for every variant
    train = (
        tf.data.Dataset.from_tensor_slices((x, y))
        .shuffle(len(x), seed=cfg["seed"], reshuffle_each_iteration=True)
        .batch(cfg["batch"])
        .prefetch(2)
        .with_options(options)
    )
    rss_before = _current_rss()
    start = time.perf_counter()
    history = model.fit(
        train,
        epochs=cfg["epochs"],
        callbacks=callbacks,
        verbose=0,
        shuffle=False,  # shuffled above
    )
    fit_seconds = time.perf_counter() - start
    peak = _peak_rss()
    _, acc = model.evaluate(xt, yt, batch_size=256, verbose=0)
    h = history.history
    out = {
        "variant": method,
        "fit_seconds": fit_seconds,
        "epoch_seconds": timer.epochs,
        "step_seconds": timer.steps,
        "peak_rss_bytes": peak,
        "rss_before_fit_bytes": rss_before,
        "test_accuracy": float(acc),
    }
    key = {"dropping": "learn_drop/dropped_convs", "freezing": "learn_drop/frozen_convs"}
    if method in key:
        out["dropped_convs"] = [int(v) for v in h[key[method]]]
        out["train_macs"] = h["learn_drop/train_macs"]
        out["decisions"] = [d["decision"] for d in learn_drop.history if d["decision"]]
    if method == "dropping":
        out["builds"] = learn_drop.timings
    return out


def _current_rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _peak_rss():
    """Peak RSS of this process since its exec (`VmHWM`; `ru_maxrss` keeps the parent's)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


# ---------------------------------------------------------------- analysis
def _segment_head_steps(run):
    """`{epoch: summed head step seconds}` for the epochs from the first drop on."""
    dropped = run.get("dropped_convs") or []
    steps = run["step_seconds"]
    out, e = {}, 0
    while e < len(dropped):
        if dropped[e] == 0 or (e > 0 and dropped[e] == dropped[e - 1]):
            e += 1
            continue
        end = e + 1
        while end < len(dropped) and dropped[end] == dropped[e]:
            end += 1
        steady = [sum(steps[i]) for i in range(e + 1, end)]
        if steady:
            per_epoch = float(np.median(steady))
        else:  # no steady epoch: the build epoch's steps after the first
            rest = steps[e][1:]
            per_epoch = float(np.median(rest)) * len(steps[e]) if rest else sum(steps[e])
        for i in range(e, end):
            out[i] = per_epoch
        e = end
    return out


def analyse(run, plain):
    """Saving, time-based limit and their ratio of `run` against `plain` (same round)."""
    p_total = plain["fit_seconds"]
    row = {
        "variant": run["variant"],
        "fit_seconds": round(run["fit_seconds"], 3),
        "saving": 1 - run["fit_seconds"] / p_total,
        "peak_rss_mib": run["peak_rss_bytes"] / 2**20,
        "test_accuracy": run["test_accuracy"],
    }
    head = _segment_head_steps(run)
    if head:
        plain_steps = [sum(s) for s in plain["step_seconds"]]
        model_total = p_total - sum(plain_steps[e] for e in head) + sum(head.values())
        row["limit"] = 1 - model_total / p_total
        row["ratio"] = row["saving"] / row["limit"] if row["limit"] > 0 else float("nan")
        row["post_drop_epochs"] = sorted(head)
        row["head_step_seconds_per_epoch"] = sorted(set(round(v, 4) for v in head.values()))
        row["plain_step_seconds_per_epoch"] = round(float(np.median(plain_steps[1:])), 4)
    builds = run.get("builds") or []
    if builds and "limit" in row:
        # The same limit paying the tail's forward pass (+ cache write) once per build.
        tail = sum(b["extract_seconds"] for b in builds)
        row["limit_with_tail_pass"] = row["limit"] - tail / p_total
        row["ratio_with_tail_pass"] = row["saving"] / row["limit_with_tail_pass"]
    if builds:
        row["cache_mib"] = max(b["bytes"] for b in builds) / 2**20
        row["setup_seconds"] = [round(b["setup_seconds"], 3) for b in builds]
        row["first_step_seconds"] = [round(b["first_step_seconds"], 3) for b in builds]
        row["head_traces"] = [b["head_traces"] for b in builds]
        plain_rss = plain["peak_rss_bytes"]
        allowed = plain_rss + max(b["bytes"] for b in builds) + 0.10 * plain_rss
        row["rss_over_plain_mib"] = (run["peak_rss_bytes"] - plain_rss) / 2**20
        row["rss_within_target"] = bool(run["peak_rss_bytes"] <= allowed)
    return row


def _fmt(value, spec):
    return "-" if value is None else format(value, spec)


def print_table(rows):
    head = (
        f"{'round':>5} {'variant':>9} {'fit s':>7} {'saving':>7} {'limit':>7} {'ratio':>6} "
        f"{'r_tail':>6} {'RSS MiB':>8} {'+RSS':>6} {'cache':>6} {'setup s':>8} {'acc':>6}"
    )
    print(head)
    for r in rows:
        setup = r.get("setup_seconds")
        print(
            f"{r['round']:>5} {r['variant']:>9} {r['fit_seconds']:>7.1f} "
            f"{100 * r['saving']:>6.1f}% {_fmt(r.get('limit') and 100 * r['limit'], '6.1f'):>6}% "
            f"{_fmt(r.get('ratio'), '6.3f'):>6} {_fmt(r.get('ratio_with_tail_pass'), '6.3f'):>6} "
            f"{r['peak_rss_mib']:>8.0f} "
            f"{_fmt(r.get('rss_over_plain_mib'), '6.0f'):>6} {_fmt(r.get('cache_mib'), '6.1f'):>6} "
            f"{(','.join(f'{s:.2f}' for s in setup) if setup else '-'):>8} "
            f"{100 * r['test_accuracy']:>5.1f}%"
        )


# ---------------------------------------------------------------- driver
def get_data(name, n_train, n_test, size, data_dir):
    from kerascnn.data import load

    rng = np.random.default_rng(0)  # random subsets: the files are ordered by class
    x, y = load(name, "train", as_numpy=True, data_dir=data_dir)
    xt, yt = load(name, "test", as_numpy=True, data_dir=data_dir)
    keep, keep_t = rng.permutation(len(x))[:n_train], rng.permutation(len(xt))[:n_test]
    x, y, xt, yt = x[keep], y[keep], xt[keep_t], yt[keep_t]

    def fit_size(a):
        if a.shape[1] < size:  # 28x28 -> 32x32 for VGG's five poolings
            pad = (size - a.shape[1]) // 2
            widths = ((0, 0), (pad, size - a.shape[1] - pad), (pad, size - a.shape[2] - pad))
            a = np.pad(a, widths + ((0, 0),))
        return a.astype("float32")

    return fit_size(x), y, fit_size(xt), yt


def _spawn(cfg, tmp):
    path = os.path.join(tmp, f"run_{cfg['round']}_{cfg['variant']}.json")
    config = os.path.join(tmp, "config.json")
    with open(config, "w") as f:
        json.dump(cfg, f)
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", config, "--worker-out", path]
    subprocess.run(cmd, check=True, cwd=ROOT)
    with open(path) as f:
        return json.load(f)


def parse_args(argv=None):
    parser = make_parser(__doc__)
    parser.add_argument("--arch", default="vgg11_bn")
    parser.add_argument("--dataset", default="cifar10")
    parser.add_argument("--train", type=int, default=4000)
    parser.add_argument("--test", type=int, default=2000)
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--width", type=float, default=0.25)
    parser.add_argument("--lr", type=float, default=0.01)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--cache", default="memory")
    parser.add_argument("--cache-dtype", default=None)
    parser.add_argument("--force-at", type=int, default=3, help="drop at the end of this epoch")
    parser.add_argument("--force-convs", type=int, default=3)
    parser.add_argument("--scored", action="store_true", help="no forced drop: the score decides")
    parser.add_argument(
        "--lr-step-epoch",
        type=int,
        default=None,
        help="divide the learning rate by 10 from this epoch on (the paper's CIFAR-10 "
        "schedule: 0.1, / 10 after 20 of 60 epochs)",
    )
    parser.add_argument(
        "--variants",
        default=",".join(VARIANTS),
        help="comma-separated subset of plain,plain_aa,freezing,dropping (plain is required)",
    )
    parser.add_argument("--data-dir", default=os.environ.get("KERASCNN_DATA_DIR"))
    parser.add_argument("--out", default=None)
    parser.add_argument("--worker", default=None, help=argparse_hidden())
    parser.add_argument("--worker-out", default=None, help=argparse_hidden())
    args = parser.parse_args(argv)
    if args.quick:
        args.train, args.test, args.epochs, args.warmup = 512, 256, 5, 1
        args.batch, args.width, args.force_at, args.force_convs = 64, 0.125, 1, 3
        args.rounds = 1
    if args.scored:
        args.force_at = args.force_convs = None
    args.variants = tuple(v for v in VARIANTS if v in args.variants.split(","))
    if "plain" not in args.variants:
        parser.error(f"--variants must include plain. Received: --variants={args.variants}")
    return args


def argparse_hidden():
    import argparse

    return argparse.SUPPRESS


def main(argv=None):
    args = parse_args(argv)
    if args.worker:
        with open(args.worker) as f:
            result = run_variant(json.load(f))
        with open(args.worker_out, "w") as f:
            json.dump(result, f, default=float)
        return
    size = 32
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench_layer_dropping_") as tmp:
        x, y, xt, yt = get_data(args.dataset, args.train, args.test, size, args.data_dir)
        data = os.path.join(tmp, "data.npz")
        np.savez(data, x=x, y=y, xt=xt, yt=yt)
        keys = ("arch", "width", "lr", "seed", "epochs", "warmup", "lr_step_epoch")
        base = {k: getattr(args, k) for k in keys}
        base.update(
            data=data,
            batch=args.batch,
            cache=args.cache,
            cache_dtype=args.cache_dtype,
            force_at=args.force_at,
            force_convs=args.force_convs,
        )
        runs, rows = [], []
        for r in range(args.rounds):
            variants = args.variants
            order = variants[r % len(variants) :] + variants[: r % len(variants)]
            done = {}
            for variant in order:
                done[variant] = _spawn(dict(base, variant=variant, round=r), tmp)
                print(variant, f"round {r}: fit {done[variant]['fit_seconds']:.1f} s", flush=True)
            for variant in variants[1:]:
                rows.append(dict(analyse(done[variant], done["plain"]), round=r))
            runs.append(done)
    print_table(rows)
    summary = {}
    for variant in args.variants[1:]:
        mine = [r for r in rows if r["variant"] == variant]
        summary[variant] = {
            "saving_median": float(np.median([r["saving"] for r in mine])),
            "ratio_min": min((r["ratio"] for r in mine if "ratio" in r), default=None),
        }
    print(json.dumps(summary, indent=1))
    report = {
        "quick": args.quick,
        "note": (
            "Each run in its own subprocess (peak RSS per run), variants rotated over rounds, "
            "compared with the plain run of the same round; plain_aa is the A/A control. "
            "Subsets of the data and a short schedule; --quick is a smoke run."
        ),
        "settings": {k: v for k, v in vars(args).items() if not k.startswith("worker")},
        "wall_seconds": time.perf_counter() - started,
        "rows": rows,
        "summary": summary,
        "runs": runs,
    }
    out = args.out or results_path("layer_dropping", args.quick)
    write_results(out, report, argv, default=float)


if __name__ == "__main__":
    main()
