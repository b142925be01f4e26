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

With `--val-split F` (e.g. 0.1) the last fraction F of the (random) training
subset is held out and the monitored run trains on the rest only; after every
epoch it records the held-out split's `val_loss` / `val_accuracy`
(`validation_data`) AND the test accuracy (a callback evaluating the test
set): two evaluations per epoch, neither of which influences training.
keras `EarlyStopping(monitor="val_loss", patience=--es-patience,
restore_best_weights=True)` is then REPLAYED on the recorded `val_loss`
history (the logs are fed to a real keras `EarlyStopping` attached to a tiny
dummy model, so Keras' own logic decides): its stop epoch, its restored (best)
epoch and the test accuracy at that epoch. The fixed budget, stability
stopping (every rule above) and EarlyStopping are thus all read off ONE run on
the same training images. EarlyStopping's compute is given two ways:
`compute_saved` counts each validation image like a training image (the
paper's accounting, as the separate `--early-stopping` run), and
`compute_saved_epochs` counts training epochs only.

`--lr-schedule step --lr-steps 0.5,0.75` divides the learning rate by 10 at
those fractions of `--epochs` (the usual CIFAR shape); `cosine` anneals it
per epoch to 0; `constant` (the default) keeps it. `--augment` applies the
standard CIFAR augmentation, a random 32x32 crop of the 4-pixel zero-padded
image and a random horizontal flip, per image, vectorised per batch in a
`tf.data` pipeline.

Results to `benchmarks/results/stability_real[_quick].json` (or `--output`)
with the exact command (written after every dataset).

    python benchmarks/bench_stability_real.py --quick
    python benchmarks/bench_stability_real.py --quick --val-split 0.1 \\
        --lr-schedule step --augment
"""

import math
import os
import time

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
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


def lr_factor(epoch, args):
    """The learning rate of 0-based `epoch` as a fraction of `--lr`."""
    if args.lr_schedule == "step":
        steps = [float(f) for f in args.lr_steps.split(",") if f.strip()]
        return 0.1 ** sum(epoch >= int(round(f * args.epochs)) for f in steps)
    if args.lr_schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * epoch / args.epochs))
    return 1.0


def augment_batch(x, y):
    """Random 32x32 crop of the 4-pixel zero-padded images and random flip, per image."""
    n, h, w = tf.shape(x)[0], tf.shape(x)[1], tf.shape(x)[2]
    padded = tf.pad(x, [[0, 0], [4, 4], [4, 4], [0, 0]])
    dy = tf.random.uniform([n], 0, 9, dtype=tf.int32)
    dx = tf.random.uniform([n], 0, 9, dtype=tf.int32)
    rows = dy[:, None] + tf.range(h)[None, :]
    cols = dx[:, None] + tf.range(w)[None, :]
    crop = tf.gather(padded, rows, axis=1, batch_dims=1)
    crop = tf.gather(crop, cols, axis=2, batch_dims=1)
    flip = tf.random.uniform([n]) < 0.5
    return tf.where(flip[:, None, None, None], tf.reverse(crop, axis=[2]), crop), y


def train_data(x, y, args):
    """`fit`'s `(x, y)` arguments: the arrays, or a shuffled, augmented `tf.data` pipeline."""
    if not args.augment:
        return {"x": x, "y": y, "batch_size": args.batch_size}
    ds = tf.data.Dataset.from_tensor_slices((x.astype("float32"), y))
    ds = ds.shuffle(len(x), seed=args.seed, reshuffle_each_iteration=True)
    ds = ds.batch(args.batch_size).map(augment_batch, num_parallel_calls=tf.data.AUTOTUNE)
    return {"x": ds.prefetch(tf.data.AUTOTUNE), "shuffle": False}


def split_validation(arrays, fraction):
    """`(train, validation)`: the last `fraction` of the (random) training subset held out."""
    x, y, xt, yt = arrays
    if not fraction:
        return arrays, None
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"val_split must be in (0, 1). Received: val_split={fraction!r}")
    n_val = max(1, int(round(fraction * len(x))))
    return [x[:-n_val], y[:-n_val], xt, yt], (x[-n_val:], y[-n_val:])


class TestEvaluation(keras.callbacks.Callback):
    """Adds `test_loss` / `test_accuracy` (an evaluation of the test set) to the epoch logs."""

    def __init__(self, x, y):
        super().__init__()
        self.x, self.y = x, y

    def on_epoch_end(self, epoch, logs=None):
        loss, acc = self.model.evaluate(self.x, self.y, batch_size=256, verbose=0)[:2]
        if logs is not None:
            logs["test_loss"], logs["test_accuracy"] = float(loss), float(acc)


def progress_callback(t0, lr):
    """Prints epoch, elapsed seconds, learning rate, val and test accuracy."""

    def report(epoch, logs):
        val = f", val accuracy {logs['val_accuracy']:.4f}" if "test_accuracy" in logs else ""
        test = logs.get("test_accuracy", logs.get("val_accuracy"))
        print(
            f"  epoch {epoch + 1}: {time.perf_counter() - t0:.0f} s, lr {lr(epoch):.4g}"
            f"{val}, test accuracy {test:.4f}",
            flush=True,
        )

    return keras.callbacks.LambdaCallback(on_epoch_end=report)


def monitored_run(model_name, arrays, args, initial_weights):
    """One fixed-budget run that records μ of both monitored sets and test accuracy per epoch."""
    (x, y, xt, yt), validation = split_validation(arrays, args.val_split)
    model = build(model_name, arrays, args, initial_weights)
    sets = {
        "stage_outputs": list(stage_output_names(zoo.get_spec(model_name))),
        "pooled": default_monitored_layers(model),
    }
    union = list(dict.fromkeys(sets["stage_outputs"] + sets["pooled"]))
    monitor = StabilityStopping(layers=union, monitor_only=True)
    callbacks = [monitor]
    if args.lr_schedule != "constant":
        callbacks.append(
            keras.callbacks.LearningRateScheduler(lambda e: args.lr * lr_factor(e, args))
        )
    if validation is not None:
        callbacks.append(TestEvaluation(xt, yt))
    t0 = time.perf_counter()
    hist = model.fit(
        **train_data(x, y, args),
        epochs=args.epochs,
        validation_data=(xt, yt) if validation is None else validation,
        validation_batch_size=256,
        verbose=0,
        callbacks=[*callbacks, progress_callback(t0, lambda e: args.lr * lr_factor(e, args))],
    )
    wall = time.perf_counter() - t0
    h = hist.history
    accuracy = [float(a) for a in h["val_accuracy" if validation is None else "test_accuracy"]]
    out = {
        "monitored_sets": sets,
        "fixed_budget": {"epochs": args.epochs, "test_accuracy": accuracy[-1]},
        "stops": stop_rows(monitor.history, sets, accuracy, args.epochs),
        "test_accuracy_per_epoch": accuracy,
        "mu_per_epoch": [{k: float(v) for k, v in mu.items()} for mu in monitor.history],
        "wall_s": wall,
    }
    if "learning_rate" in h:
        out["lr_per_epoch"] = [float(v) for v in h["learning_rate"]]
    if validation is not None:
        out["n_train"], out["n_val"] = len(x), len(validation[0])
        out["val_loss_per_epoch"] = [float(v) for v in h["val_loss"]]
        out["val_accuracy_per_epoch"] = [float(v) for v in h["val_accuracy"]]
        out["early_stopping_replayed"] = replay_early_stopping(
            out["val_loss_per_epoch"], accuracy, args, len(validation[0]) / len(x)
        )
    return out


def replay_early_stopping(val_loss, accuracy, args, val_ratio):
    """keras `EarlyStopping(val_loss, restore_best_weights=True)` replayed on recorded logs.

    The recorded per-epoch `val_loss` values are fed to a real keras
    `EarlyStopping` attached to a tiny dummy model, so Keras decides the stop
    epoch and the restored (best) epoch; the test accuracy is the one recorded
    at the restored epoch (the weights it restores are those of that epoch).
    `val_ratio` is validation images per training image, for the cost.
    """
    dummy = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)])
    dummy.compile("sgd", "mse")
    cb = keras.callbacks.EarlyStopping(
        "val_loss", patience=args.es_patience, restore_best_weights=True
    )
    cb.set_model(dummy)
    cb.on_train_begin()
    run = len(val_loss)
    for epoch, value in enumerate(val_loss):
        cb.on_epoch_end(epoch, {"val_loss": value})
        if dummy.stop_training:
            run = epoch + 1
            break
    cb.on_train_end()
    return {
        "patience": args.es_patience,
        "stop_epoch_1based": run if dummy.stop_training else None,
        "restored_epoch_1based": cb.best_epoch + 1,
        "epochs_run": run,
        "compute_saved": 1.0 - run * (1.0 + val_ratio) / args.epochs,
        "compute_saved_epochs": 1.0 - run / args.epochs,
        "test_accuracy": accuracy[cb.best_epoch],
        "test_accuracy_at_stop_epoch": accuracy[run - 1],
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
            if "early_stopping_replayed" in r:
                es = r["early_stopping_replayed"]
                stop = es["stop_epoch_1based"]
                acc = es["test_accuracy"]
                print(
                    f"| {ds} | {model_name} | val_loss | EarlyStopping replayed, "
                    f"patience {es['patience']}, restored epoch {es['restored_epoch_1based']} | "
                    f"{stop if stop else 'no stop'} | {100 * es['compute_saved']:.1f}% "
                    f"({100 * es['compute_saved_epochs']:.1f}% epochs only) | "
                    f"{100 * acc:.2f}% ({100 * (acc - fixed):+.2f}) |"
                )
            if "early_stopping" in r:
                es = r["early_stopping"]
                stop = es["stop_epoch_1based"]
                print(
                    f"| {ds} | {model_name} | - | EarlyStopping (val. split) | "
                    f"{stop if stop else 'no stop'} | {100 * es['compute_saved']:.1f}% | "
                    f"{100 * es['test_accuracy']:.2f}% |"
                )


def note(args):
    """The results' note: the data, the single run and, with a split, the replay."""
    text = (
        f"random subsets: {args.train} train / {args.test} test images per dataset; "
        "one training run per dataset and model, stops read off its per-epoch logs"
    )
    if args.val_split:
        text += (
            f"; the last {args.val_split:.0%} of the training subset held out as validation "
            "set and the run trains on the rest: the fixed budget, stability stopping and "
            "EarlyStopping (replayed by keras EarlyStopping on the recorded val_loss) are "
            "all read off this ONE run on the same training images, neither callback "
            "influencing training; EarlyStopping's compute_saved counts validation images "
            "like training images, compute_saved_epochs counts epochs only"
        )
    text += f"; lr schedule {args.lr_schedule}"
    if args.lr_schedule == "step":
        text += f" (/10 at fractions {args.lr_steps} of the epochs)"
    text += "; augmentation: 4-pixel pad + random crop + flip" if args.augment else ""
    return text + (f"; {args.note}" if args.note else "")


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
    parser.add_argument("--val-split", type=float, default=0.0)
    parser.add_argument("--lr-schedule", choices=("constant", "step", "cosine"), default="constant")
    parser.add_argument("--lr-steps", default="0.5,0.75")
    parser.add_argument("--augment", action="store_true")
    parser.add_argument("--note", default="", help="free text appended to the results' note")
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
            "note": note(args),
            "results": results,
        }
        write_results(args.output, out, argv)
    print_table(results)


if __name__ == "__main__":
    main()
