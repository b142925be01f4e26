"""Fixed epoch budget vs StabilityStopping vs keras EarlyStopping on real data.

Datasets from `$KERASCNN_DATA_DIR` (default `../shared/data` from the repo
root): Fashion-MNIST (idx gz files) and the CIFAR-10 JPEGs (zip), subsets of
`--train` / `--test` images per split (stratification not enforced; say so
when reporting). For each dataset and model, three runs from the same
initial weights and seed:

* `fixed`: `--epochs` epochs.
* `stability`: the same budget with `StabilityStopping()` (paper rule).
* `early_stopping`: the same budget with `EarlyStopping(val_loss,
  patience=--es-patience, restore_best_weights=True)` on a 10% validation
  split; its cost counts the validation iterations like training ones, as
  the paper does (0.9 N training + 0.1 N validation images per epoch).

Reported per run: stop epoch, cost in epoch-equivalents, compute saved vs the
fixed budget, test accuracy, wall time. Results to
`benchmarks/results/stability_real[_quick].json` with the exact command.

    python benchmarks/bench_stability_real.py --quick
"""

import argparse
import gzip
import io
import json
import os
import sys
import time
import zipfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import keras  # noqa: E402
import numpy as np  # noqa: E402

from kerascnn import zoo  # noqa: E402
from kerascnn.callbacks import StabilityStopping  # noqa: E402


def data_dir():
    return os.environ.get("KERASCNN_DATA_DIR", os.path.join(ROOT, "..", "shared", "data"))


def _idx(path, header):
    with gzip.open(path, "rb") as f:
        return np.frombuffer(f.read(), np.uint8, offset=header)


def load_fashion_mnist(n_train, n_test, rng):
    d = os.path.join(data_dir(), "fashion_mnist")
    out = []
    for split, n in (("train", n_train), ("t10k", n_test)):
        x = _idx(os.path.join(d, f"{split}-images-idx3-ubyte.gz"), 16).reshape(-1, 28, 28, 1)
        y = _idx(os.path.join(d, f"{split}-labels-idx1-ubyte.gz"), 8).astype("int64")
        idx = rng.permutation(len(x))[:n]
        out += [x[idx].astype("float32") / 255.0, y[idx]]
    return out


def load_cifar10_jpeg(n_train, n_test, rng):
    from PIL import Image

    out = []
    with zipfile.ZipFile(os.path.join(data_dir(), "cifar10_jpeg.zip")) as z:
        names = [n for n in z.namelist() if n.endswith(".jpg")]
        classes = sorted({n.split("/")[-2] for n in names})
        for split, n in (("train", n_train), ("test", n_test)):
            files = sorted(f for f in names if f.split("/")[-3] == split)
            pick = [files[i] for i in rng.permutation(len(files))[:n]]
            x = np.stack(
                [np.asarray(Image.open(io.BytesIO(z.read(f))).convert("RGB")) for f in pick]
            )
            y = np.array([classes.index(f.split("/")[-2]) for f in pick], "int64")
            out += [x.astype("float32") / 255.0, y]
    return out


DATASETS = {"fashion_mnist": load_fashion_mnist, "cifar10": load_cifar10_jpeg}


def run(model_name, data, args, mode, initial_weights):
    x, y, xt, yt = data
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
    if mode == "stability":
        cb = StabilityStopping()
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
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
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
    parser.add_argument("--output", default=None)
    args = parser.parse_args(argv)
    if args.quick:
        args.train, args.test, args.epochs, args.width_multiplier = 256, 128, 3, 0.125
        args.models = "resnet18"
    if args.output is None:
        args.output = os.path.join(
            ROOT, "benchmarks/results", f"stability_real{'_quick' if args.quick else ''}.json"
        )
    results = {}
    for ds in args.datasets.split(","):
        data = DATASETS[ds](args.train, args.test, np.random.default_rng(args.seed))
        for model_name in args.models.split(","):
            keras.utils.set_random_seed(args.seed)
            init = zoo.build(
                model_name,
                input_shape=data[0].shape[1:],
                classes=10,
                width_multiplier=args.width_multiplier,
            ).get_weights()
            for mode in ("fixed", "stability", "early_stopping"):
                r = run(model_name, data, args, mode, init)
                results.setdefault(ds, {}).setdefault(model_name, {})[mode] = r
                print(
                    ds,
                    model_name,
                    mode,
                    {k: (round(v, 4) if isinstance(v, float) else v) for k, v in r.items()},
                )
    out = {
        "command": " ".join(
            ["python", "benchmarks/bench_stability_real.py"]
            + (argv if argv is not None else sys.argv[1:])
        ),
        "quick": args.quick,
        "config": vars(args),
        "note": f"random subsets: {args.train} train / {args.test} test images per dataset",
        "results": results,
    }
    with open(args.output, "w") as f:
        json.dump(out, f, indent=2)
    print("wrote", args.output)


if __name__ == "__main__":
    main()
