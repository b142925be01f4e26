"""Fixed epoch budget vs StabilityStopping vs keras EarlyStopping on real data.

Datasets from `$KERASCNN_DATA_DIR` (default `../shared/data` from the repo
root): Fashion-MNIST (idx gz files) and the CIFAR-10 JPEGs (zip), subsets of
`--train` / `--test` images per split (stratification not enforced; say so
when reporting; 28x28 images are zero-padded to 32x32 for VGG). For each
dataset and model, runs from the same initial weights and seed:

* `fixed`: `--epochs` epochs.
* `stability`: the same budget with `StabilityStopping()` (the paper's rule:
  r = 2 decimals, unchanged at the check epoch and two more).
* `stability_rN` for each N of `--extra-decimals` (default 1): the same rule
  at N decimals.
* `early_stopping`: the same budget with `EarlyStopping(val_loss,
  patience=--es-patience, restore_best_weights=True)` on a 10% validation
  split; its cost counts the validation iterations like training ones, as
  the paper does (0.9 N training + 0.1 N validation images per epoch).

Reported per run: stop epoch, cost in epoch-equivalents, compute saved vs the
fixed budget, test accuracy, wall time. Results to
`benchmarks/results/stability_real[_quick].json` with the exact command.

    python benchmarks/bench_stability_real.py --quick
"""

import os
import time

import keras  # noqa: E402
import numpy as np  # noqa: E402
from _common import ROOT, make_parser, results_path, write_results

from kerascnn import data, zoo  # noqa: E402
from kerascnn.callbacks import StabilityStopping  # noqa: E402


def load_subset(name, n_train, n_test, rng):
    """Random subsets (the files are ordered by class) of both splits, in [0, 1].

    Read with `kerascnn.data.load` from `$KERASCNN_DATA_DIR` (default
    `../shared/data` from the repository root): the Fashion-MNIST idx files and
    the CIFAR-10 JPEG zip.
    """
    directory = os.environ.get("KERASCNN_DATA_DIR", os.path.join(ROOT, "..", "shared", "data"))
    out = []
    for split, n in (("train", n_train), ("test", n_test)):
        x, y = data.load(name, split, as_numpy=True, normalize=False, data_dir=directory)
        idx = rng.permutation(len(x))[:n]
        out += [x[idx], y[idx].astype("int64")]
    return out


DATASETS = ("fashion_mnist", "cifar10")


def pad_to(arrays, size):
    """Zero-pads 28x28 images to `size` (VGG's five poolings need 32x32)."""
    x, y, xt, yt = arrays
    if x.shape[1] >= size:
        return arrays
    lo = (size - x.shape[1]) // 2
    hi = size - x.shape[1] - lo
    pad = ((0, 0), (lo, hi), (lo, hi), (0, 0))
    return [np.pad(x, pad), y, np.pad(xt, pad), yt]


def run(model_name, subsets, args, mode, initial_weights):
    x, y, xt, yt = subsets
    keras.utils.set_random_seed(args.seed)
    model = zoo.build(
        model_name, input_shape=x.shape[1:], classes=10, width_multiplier=args.width_multiplier
    )
    model.set_weights(initial_weights)
    model.compile(
        keras.optimizers.SGD(args.lr, momentum=0.9),
        "sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    callbacks, fit_kw, cost_per_epoch = [], {}, 1.0
    if mode.startswith("stability"):
        # "stability": the paper's rule (r = 2 decimals, patience 3);
        # "stability_rN": the same rule at N decimals.
        decimals = int(mode[len("stability_r") :]) if mode != "stability" else 2
        cb = StabilityStopping(decimals=decimals)
        callbacks.append(cb)
    elif mode == "early_stopping":
        cb = keras.callbacks.EarlyStopping(
            "val_loss", patience=args.es_patience, restore_best_weights=True
        )
        callbacks.append(cb)
        fit_kw["validation_split"] = 0.1
        # Cost in iterations over N images, as the paper counts them: 0.9 N
        # training + 0.1 N validation images per epoch (validation passes
        # counted like training iterations; training sees 10% fewer images).
        cost_per_epoch = 0.9 + 0.1
    t0 = time.perf_counter()
    hist = model.fit(
        x,
        y,
        batch_size=args.batch_size,
        epochs=args.epochs,
        verbose=0,
        callbacks=callbacks,
        **fit_kw,
    )
    wall = time.perf_counter() - t0
    epochs_run = len(hist.history["loss"])
    cost = epochs_run * cost_per_epoch
    acc = float(model.evaluate(xt, yt, batch_size=256, verbose=0)[1])
    return {
        "epochs_run": epochs_run,
        "stopped_epoch_1based": epochs_run if epochs_run < args.epochs else None,
        "cost_epoch_equivalents": cost,
        "compute_saved": 1.0 - cost / args.epochs,
        "test_accuracy": acc,
        "wall_s": wall,
    }


def main(argv=None):
    parser = make_parser(__doc__)
    parser.add_argument("--datasets", default="fashion_mnist,cifar10")
    parser.add_argument("--models", default="resnet18,vgg11_bn")
    parser.add_argument("--train", type=int, default=10000)
    parser.add_argument("--test", type=int, default=2000)
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=0.01)
    parser.add_argument("--es-patience", type=int, default=5)
    parser.add_argument("--width-multiplier", type=float, default=0.5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--extra-decimals",
        default="1",
        help="comma list of other rounding precisions r to run the rule with (paper: 2)",
    )
    parser.add_argument("--output", default=None)
    args = parser.parse_args(argv)
    args.extra_decimals = [int(d) for d in str(args.extra_decimals).split(",") if d.strip()]
    if args.quick:
        args.train, args.test, args.epochs, args.width_multiplier = 256, 128, 3, 0.125
        args.models = "resnet18"
    if args.output is None:
        args.output = results_path("stability_real", args.quick)
    results = {}
    for ds in args.datasets.split(","):
        subsets = load_subset(ds, args.train, args.test, np.random.default_rng(args.seed))
        for model_name in args.models.split(","):
            arrays = pad_to(subsets, 32) if model_name.startswith("vgg") else subsets
            keras.utils.set_random_seed(args.seed)
            init = zoo.build(
                model_name,
                input_shape=arrays[0].shape[1:],
                classes=10,
                width_multiplier=args.width_multiplier,
            ).get_weights()
            modes = ["fixed", "stability"]
            modes += [f"stability_r{d}" for d in args.extra_decimals if d != 2]
            modes += ["early_stopping"]
            for mode in modes:
                r = run(model_name, arrays, args, mode, init)
                results.setdefault(ds, {}).setdefault(model_name, {})[mode] = r
                print(
                    ds,
                    model_name,
                    mode,
                    {k: (round(v, 4) if isinstance(v, float) else v) for k, v in r.items()},
                )
    out = {
        "quick": args.quick,
        "config": vars(args),
        "note": f"random subsets: {args.train} train / {args.test} test images per dataset",
        "results": results,
    }
    write_results(args.output, out, argv)


if __name__ == "__main__":
    main()
