"""Stability stopping on real data: stop epochs and accuracy, two monitored sets, one training run.

Datasets from `$KERASCNN_DATA_DIR` (default `../shared/data` from the repo
root): Fashion-MNIST (idx gz files, zero-padded to 32x32) and the CIFAR-10
JPEGs (zip), random subsets of `--train` / `--test` images per split
(stratification not enforced). For each dataset and model, ONE training run of
`--epochs` epochs (SGD + momentum 0.9, seeded) records, after every epoch, the
stability statistic μ of every layer of both monitored sets and the test
accuracy (`validation_data`, which never influences training). The statistic
does not change training either, so where the rule would have stopped, and the
accuracy a run stopped there would have, are read off this one run:

* `stage_outputs` (the old default): the stage outputs, for ResNet ending with
  the last block's output before global pooling (4x4x512 for ResNet-18 at
  32x32).
* `pooled` (the new default, `default_monitored_layers`): the same, the last
  one replaced by the global-average-pooled tensor the classifier sees, the
  paper's ResNet-18 "layer 18" (reference code: `avg_pool2d(layer4, 4)`).

For each set, the stop epoch of the paper's rule (`preset="paper"`: 4
identical rounded epochs) and of the reference code's (`preset="reference"`:
5, from epoch index 1) at r = 2 and r = 1, the compute saved against the fixed
budget and the test accuracy at the stop epoch. With `--early-stopping` also a
separate run with keras `EarlyStopping(val_loss, patience=--es-patience,
restore_best_weights=True)` on a 10% validation split (its cost counts the
validation images like training ones, the paper's accounting).

Results to `benchmarks/results/stability_real[_quick].json` with the exact
command (written after every dataset).

    python benchmarks/bench_stability_real.py --quick
"""

import os
import time

import keras  # noqa: E402
import numpy as np  # noqa: E402
from _common import ROOT, make_parser, results_path, write_results

from kerascnn import data, zoo  # noqa: E402
from kerascnn.arch.naming import stage_output_names  # noqa: E402
from kerascnn.callbacks import StabilityStopping  # noqa: E402
from kerascnn.callbacks.layer_stats import default_monitored_layers  # noqa: E402
from kerascnn.callbacks.stability_stopping import stability_stop_epoch  # noqa: E402

RULES = (("paper", 2), ("paper", 1), ("reference", 2), ("reference", 1))


def load_subset(name, n_train, n_test, rng):
    """Random subsets (the files are ordered by class) of both splits, in [0, 1]."""
    directory = os.environ.get("KERASCNN_DATA_DIR", os.path.join(ROOT, "..", "shared", "data"))
    out = []
    for split, n in (("train", n_train), ("test", n_test)):
        x, y = data.load(name, split, as_numpy=True, normalize=False, data_dir=directory)
        idx = rng.permutation(len(x))[:n]
        out += [x[idx], y[idx].astype("int64")]
    return out


def pad_to(arrays, size):
    """Zero-pads 28x28 images to `size` (32: ResNet-18 then ends at 4x4, as in the paper)."""
    x, y, xt, yt = arrays
    if x.shape[1] >= size:
        return arrays
    lo = (size - x.shape[1]) // 2
    hi = size - x.shape[1] - lo
    pad = ((0, 0), (lo, hi), (lo, hi), (0, 0))
    return [np.pad(x, pad), y, np.pad(xt, pad), yt]


def build(model_name, arrays, args, initial_weights=None):
    keras.utils.set_random_seed(args.seed)
    model = zoo.build(
        model_name,
        input_shape=arrays[0].shape[1:],
        classes=10,
        width_multiplier=args.width_multiplier,
    )
    if initial_weights is not None:
        model.set_weights(initial_weights)
    model.compile(
        keras.optimizers.SGD(args.lr, momentum=0.9),
        "sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    return model


def stop_rows(mu_history, sets, accuracy, epochs):
    """Stop epoch, compute saved and test accuracy for every monitored set and rule."""
    rows = []
    for set_name, layers in sets.items():
        history = [{name: mu[name] for name in layers} for mu in mu_history]
        for preset, decimals in RULES:
            stop = stability_stop_epoch(history, decimals=decimals, preset=preset)
            run = epochs if stop is None else stop + 1
            rows.append(
                {
                    "monitored": set_name,
                    "preset": preset,
                    "decimals": decimals,
                    "stop_epoch_1based": None if stop is None else stop + 1,
                    "compute_saved": 1.0 - run / epochs,
                    "test_accuracy": accuracy[run - 1],
                }
            )
    return rows


def monitored_run(model_name, arrays, args, initial_weights):
    """One fixed-budget run that records μ of both monitored sets and test accuracy per epoch."""
    x, y, xt, yt = arrays
    model = build(model_name, arrays, args, initial_weights)
    sets = {
        "stage_outputs": list(stage_output_names(zoo.get_spec(model_name))),
        "pooled": default_monitored_layers(model),
    }
    union = list(dict.fromkeys(sets["stage_outputs"] + sets["pooled"]))
    monitor = StabilityStopping(layers=union, monitor_only=True)
    t0 = time.perf_counter()
    progress = keras.callbacks.LambdaCallback(
        on_epoch_end=lambda epoch, logs: print(
            f"  epoch {epoch + 1}: {time.perf_counter() - t0:.0f} s, "
            f"test accuracy {logs['val_accuracy']:.4f}",
            flush=True,
        )
    )
    hist = model.fit(
        x,
        y,
        batch_size=args.batch_size,
        epochs=args.epochs,
        validation_data=(xt, yt),
        validation_batch_size=256,
        verbose=0,
        callbacks=[monitor, progress],
    )
    wall = time.perf_counter() - t0
    accuracy = [float(a) for a in hist.history["val_accuracy"]]
    return {
        "monitored_sets": sets,
        "fixed_budget": {"epochs": args.epochs, "test_accuracy": accuracy[-1]},
        "stops": stop_rows(monitor.history, sets, accuracy, args.epochs),
        "test_accuracy_per_epoch": accuracy,
        "mu_per_epoch": [{k: float(v) for k, v in mu.items()} for mu in monitor.history],
        "wall_s": wall,
    }


def early_stopping_run(model_name, arrays, args, initial_weights):
    """keras EarlyStopping on a 10% validation split; cost counts validation images."""
    x, y, xt, yt = arrays
    model = build(model_name, arrays, args, initial_weights)
    cb = keras.callbacks.EarlyStopping(
        "val_loss", patience=args.es_patience, restore_best_weights=True
    )
    hist = model.fit(
        x,
        y,
        batch_size=args.batch_size,
        epochs=args.epochs,
        validation_split=0.1,
        verbose=0,
        callbacks=[cb],
    )
    run = len(hist.history["loss"])
    return {
        "stop_epoch_1based": run if run < args.epochs else None,
        "compute_saved": 1.0 - run / args.epochs,
        "test_accuracy": float(model.evaluate(xt, yt, batch_size=256, verbose=0)[1]),
    }


def print_table(results):
    print("| data | model | monitored | rule | stop epoch | compute saved | test accuracy |")
    print("|---|---|---|---|---:|---:|---:|")
    for ds, models in results.items():
        for model_name, r in models.items():
            fixed = r["fixed_budget"]["test_accuracy"]
            epochs = r["fixed_budget"]["epochs"]
            print(
                f"| {ds} | {model_name} | - | fixed {epochs} epochs | {epochs} | 0% | "
                f"{100 * fixed:.2f}% |"
            )
            for row in r["stops"]:
                stop = row["stop_epoch_1based"]
                acc = row["test_accuracy"]
                print(
                    f"| {ds} | {model_name} | {row['monitored']} | {row['preset']}, "
                    f"r={row['decimals']} | {stop if stop else 'no stop'} | "
                    f"{100 * row['compute_saved']:.1f}% | {100 * acc:.2f}% "
                    f"({100 * (acc - fixed):+.2f}) |"
                )
            if "early_stopping" in r:
                es = r["early_stopping"]
                stop = es["stop_epoch_1based"]
                print(
                    f"| {ds} | {model_name} | - | EarlyStopping (val. split) | "
                    f"{stop if stop else 'no stop'} | {100 * es['compute_saved']:.1f}% | "
                    f"{100 * es['test_accuracy']:.2f}% |"
                )


def main(argv=None):
    parser = make_parser(__doc__)
    parser.add_argument("--datasets", default="cifar10,fashion_mnist")
    parser.add_argument("--models", default="resnet18")
    parser.add_argument("--train", type=int, default=4000)
    parser.add_argument("--test", type=int, default=2000)
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=0.01)
    parser.add_argument("--width-multiplier", type=float, default=0.25)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--early-stopping", action="store_true")
    parser.add_argument("--es-patience", type=int, default=5)
    parser.add_argument("--output", default=None)
    args = parser.parse_args(argv)
    if args.quick:
        args.train, args.test, args.epochs, args.width_multiplier = 256, 128, 3, 0.125
        args.datasets = args.datasets.split(",")[0]
    if args.output is None:
        args.output = results_path("stability_real", args.quick)
    results = {}
    for ds in args.datasets.split(","):
        rng = np.random.default_rng(args.seed)
        arrays = pad_to(load_subset(ds, args.train, args.test, rng), 32)
        for model_name in args.models.split(","):
            init = build(model_name, arrays, args).get_weights()
            r = monitored_run(model_name, arrays, args, init)
            if args.early_stopping:
                r["early_stopping"] = early_stopping_run(model_name, arrays, args, init)
            results.setdefault(ds, {})[model_name] = r
            print(ds, model_name, f"{r['wall_s']:.0f} s", r["monitored_sets"], flush=True)
        out = {
            "quick": args.quick,
            "config": vars(args),
            "note": f"random subsets: {args.train} train / {args.test} test images per dataset; "
            "one training run per dataset and model, stops read off its per-epoch logs",
            "results": results,
        }
        write_results(args.output, out, argv)
    print_table(results)


if __name__ == "__main__":
    main()
