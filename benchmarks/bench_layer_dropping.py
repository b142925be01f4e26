"""Benchmark: plain training vs LayerFreezing vs LayerDropping (Learn&Drop).

Side by side in one process, same epochs, same seed and same initial
weights, on real data (`kerascnn.data.load`: Fashion-MNIST idx files and the
CIFAR-10 JPEGs of `shared/data`), for a ResNet-18-style net and VGG-11-BN.
Reports total training time saved (the paper: 57-74 %), test accuracy (the
paper: <= 3.2 points lost), forward MACs saved, the per-epoch time of the
head relative to the full model against the ratio of their MACs (target:
within 1.25x), and the feature-cache build and read times.

Subsets and shortened schedules (say so in the JSON): `--quick` trains tiny
width-0.125 nets on a few hundred images for a few epochs with a forced drop
(only to prove the script works); the default is the paper-like schedule on
larger subsets, scored drops.

Usage:
    python benchmarks/bench_layer_dropping.py --quick
    python benchmarks/bench_layer_dropping.py --train 10000 --epochs 30 --warmup 5
"""

from __future__ import annotations

import json
import os
import time

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402
from _common import make_parser, results_path, write_results  # noqa: E402

from kerascnn import zoo  # noqa: E402
from kerascnn.callbacks import LayerDropping, LayerFreezing  # noqa: E402
from kerascnn.data import load  # noqa: E402


class EpochTimer(keras.callbacks.Callback):
    def on_epoch_begin(self, epoch, logs=None):
        self._t = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        logs["bench/epoch_seconds"] = time.perf_counter() - self._t


class CacheReadTimer(keras.callbacks.Callback):
    """Times one pass over LayerDropping's cache at the last epoch."""

    def __init__(self, drop, batch_size):
        super().__init__()
        self.drop, self.batch_size, self.seconds = drop, batch_size, None

    def on_epoch_end(self, epoch, logs=None):
        cache = self.drop._feature_cache
        if epoch == self.params["epochs"] - 1 and cache is not None and cache._finalized:
            start = time.perf_counter()
            for _ in cache.dataset(self.batch_size, seed=0, repeat=False):
                pass
            self.seconds = time.perf_counter() - start


def get_data(name, n_train, n_test, size, data_dir):
    # Random subsets (the files are ordered by class): same seed for every method.
    rng = np.random.default_rng(0)
    x, y = load(name, "train", as_numpy=True, data_dir=data_dir)
    xt, yt = load(name, "test", as_numpy=True, data_dir=data_dir)
    keep, keep_t = rng.permutation(len(x))[:n_train], rng.permutation(len(xt))[:n_test]
    x, y, xt, yt = x[keep], y[keep], xt[keep_t], yt[keep_t]

    def fit_size(a):
        if a.shape[1] < size:  # 28x28 -> 32x32 for VGG's five poolings
            pad = (size - a.shape[1]) // 2
            a = np.pad(
                a, ((0, 0), (pad, size - a.shape[1] - pad), (pad, size - a.shape[2] - pad), (0, 0))
            )
        return a.astype("float32")

    return fit_size(x), y, fit_size(xt), yt


def run_one(arch, data, method, args, init_weights):
    x, y, xt, yt = data
    keras.utils.set_random_seed(args.seed)
    builder = getattr(zoo, arch)
    model = builder(input_shape=x.shape[1:], width_multiplier=args.width, classes=10)
    if init_weights is not None:
        model.set_weights(init_weights)
    model.compile(
        keras.optimizers.SGD(args.lr, momentum=0.9),
        "sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    callbacks, drop = [], None
    force = {args.force_at: args.force_convs} if args.force_at is not None else None
    if method == "freezing":
        callbacks.append(
            LayerFreezing(warmup_epochs=args.warmup, force_drops=force, log_scores=False)
        )
    elif method == "dropping":
        drop = LayerDropping(
            warmup_epochs=args.warmup,
            cache=args.cache,
            cache_dtype=args.cache_dtype,
            force_drops=force,
            log_scores=False,
            seed=args.seed,
        )
        callbacks += [drop, CacheReadTimer(drop, args.batch)]
    callbacks.append(EpochTimer())
    start = time.perf_counter()
    # The same input pipeline for every method: shuffled every epoch, fixed
    # parallelism, no autotuning (destroying an autotuned per-epoch iterator
    # stalls for seconds on these machines, which would inflate the plain
    # runs' epochs; the feature cache's own pipelines are built the same way).
    options = tf.data.Options()
    options.autotune.enabled = False
    train = (
        tf.data.Dataset.from_tensor_slices((x, y))
        .shuffle(len(x), seed=args.seed, reshuffle_each_iteration=True)
        .batch(args.batch)
        .prefetch(2)
        .with_options(options)
    )
    history = model.fit(train, epochs=args.epochs, callbacks=callbacks, verbose=0)
    total = time.perf_counter() - start
    loss, acc = model.evaluate(xt, yt, batch_size=256, verbose=0)
    h = history.history
    out = {
        "train_seconds": total,
        "test_accuracy": float(acc),
        "epoch_seconds": [round(v, 4) for v in h["bench/epoch_seconds"]],
    }
    if method != "plain":
        key = "learn_drop/dropped_convs" if method == "dropping" else "learn_drop/frozen_convs"
        out["dropped_convs"] = h[key]
        out["train_macs"] = h["learn_drop/train_macs"]
    if drop is not None:
        out["cache_builds"] = drop.timings
        out["cache_read_seconds_one_pass"] = callbacks[1].seconds
        out["decisions"] = [d["decision"] for d in drop.history if d["decision"]]
    return out, model


def main():
    parser = make_parser(__doc__)
    parser.add_argument("--train", type=int, default=10000)
    parser.add_argument("--test", type=int, default=2000)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--width", type=float, default=0.5)
    parser.add_argument("--lr", type=float, default=0.01)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cache", default="memory")
    parser.add_argument("--cache-dtype", default=None)
    parser.add_argument("--force-at", type=int, default=None, help="force a drop (experiments)")
    parser.add_argument("--force-convs", type=int, default=None)
    parser.add_argument(
        "--data-dir",
        default=os.environ.get(
            "KERASCNN_DATA_DIR",
            os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "data"),
        ),
    )
    parser.add_argument("--out", default=results_path("layer_dropping"))
    args = parser.parse_args()
    if args.quick:
        args.train, args.test, args.epochs, args.warmup = 512, 256, 6, 1
        args.batch, args.width = 64, 0.125
        if args.force_at is None:
            args.force_at, args.force_convs = 1, 4
    tf.config.threading.set_inter_op_parallelism_threads(2)
    runs = [("resnet18", "fashion_mnist", 28), ("vgg11_bn", "cifar10", 32)]
    if not args.quick:
        runs += [("resnet18", "cifar10", 32), ("vgg11_bn", "fashion_mnist", 32)]
    results = []
    for arch, dataset, size in runs:
        data = get_data(dataset, args.train, args.test, size, args.data_dir)
        keras.utils.set_random_seed(args.seed)
        init = getattr(zoo, arch)(
            input_shape=data[0].shape[1:], width_multiplier=args.width, classes=10
        ).get_weights()
        row = {"arch": arch, "dataset": dataset, "train_samples": len(data[0])}
        for method in ("plain", "freezing", "dropping"):
            row[method], model = run_one(arch, data, method, args, init)
            print(
                arch,
                dataset,
                method,
                json.dumps({k: row[method][k] for k in ("train_seconds", "test_accuracy")}),
            )
        plain, drop = row["plain"], row["dropping"]
        full_macs = drop["train_macs"][0]
        row["time_saved_percent"] = {
            m: 100 * (1 - row[m]["train_seconds"] / plain["train_seconds"])
            for m in ("freezing", "dropping")
        }
        row["accuracy_lost_points"] = {
            m: 100 * (plain["test_accuracy"] - row[m]["test_accuracy"])
            for m in ("freezing", "dropping")
        }
        row["forward_macs_saved_percent"] = 100 * (
            1 - sum(drop["train_macs"]) / (full_macs * len(drop["train_macs"]))
        )
        # Head epochs = epochs after the last build that train on the cache only.
        builds = {t["epoch"] for t in drop.get("cache_builds", [])}
        first_drop = min(builds) if builds else None
        head_epochs = [
            e
            for e in range(len(drop["train_macs"]))
            if first_drop is not None
            and e > first_drop
            and e not in builds
            and e - 1 not in builds  # the first epoch after a build traces the head
        ]
        if head_epochs:
            ref = np.median(plain["epoch_seconds"][1:])  # epoch 0 includes tracing
            head_time = np.median([drop["epoch_seconds"][e] for e in head_epochs])
            time_ratio = head_time / ref
            macs_ratio = np.median([drop["train_macs"][e] for e in head_epochs]) / full_macs
            row["head_vs_full"] = {
                "epoch_time_ratio": time_ratio,
                "macs_ratio": macs_ratio,
                "time_ratio_over_macs_ratio": time_ratio / macs_ratio,
                "within_1_25x": bool(time_ratio / macs_ratio <= 1.25),
                "head_epochs": head_epochs,
            }
        results.append(row)
    report = {
        "quick": args.quick,
        "note": (
            "Subsets of the training splits and shortened schedules; --quick uses tiny nets, "
            "a few hundred images and a forced drop, only to prove the script runs."
        ),
        "settings": vars(args),
        "results": results,
    }
    write_results(args.out, report, indent=1, default=float)
    print(
        json.dumps(
            [
                {
                    k: r.get(k)
                    for k in (
                        "arch",
                        "dataset",
                        "time_saved_percent",
                        "accuracy_lost_points",
                        "forward_macs_saved_percent",
                        "head_vs_full",
                    )
                }
                for r in results
            ],
            indent=1,
            default=float,
        )
    )


if __name__ == "__main__":
    main()
