"""Train the efficient-CNN paper's compact nets with its techniques, the Keras way.

Every technique is an ordinary Keras part:

- BlurPool / squeeze-excite: builder flags
  (`kerascnn.builder.build_model(spec, blurpool=True, squeeze_excite=True)`);
- cutout: the preprocessing layer `kerascnn.layers.Cutout(10)` in tf.data;
- mixup: Keras' own `keras.layers.MixUp` (one-hot labels) in tf.data;
- label smoothing: `keras.losses.CategoricalCrossentropy(label_smoothing=0.1)`;
- one-cycle: `kerascnn.training.schedules.OneCycle` as the optimizer's learning rate;
- SWA: the callback `kerascnn.callbacks.StochasticWeightAveraging(start=0.75)`;
- SAM: `kerascnn.training.sam.enable_sam(model, rho=0.05)` before `fit`.

Run: `python examples/compact_nets.py --dataset mnist --techniques bp --epochs 20`
(`--quick` trains a few hundred images for one epoch). The functions here are
reused by `benchmarks/bench_compact_*.py`.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

TECHNIQUES = ("bp", "se", "co", "m", "ls", "swa", "sam", "ocl")
MODELS = {"mnist": "compact_mnist_1k5_dw", "cifar10": "compact_cifar_143k_dw"}


def load(dataset, split, limit=None):
    """`(images in [0, 1], int labels)` of a split, a random subset of `limit` if given.

    Read by `kerascnn.data.load` (MNIST idx files, the CIFAR-10 JPEG zip) from
    `$KERASCNN_DATA_DIR`, by default `../shared/data` beside the repository.
    """
    from kerascnn import data

    directory = os.environ.get(
        "KERASCNN_DATA_DIR",
        os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "data"),
    )
    x, y = data.load(dataset, split, as_numpy=True, normalize=False, data_dir=directory)
    if limit is not None:
        rng = np.random.default_rng(0)
        keep = rng.permutation(len(x))[:limit]
        x, y = x[keep], y[keep]
    return x, y


def make_dataset(x, y, batch_size, techniques=(), training=True, seed=0, classes=10, shift=0):
    """A tf.data pipeline with one-hot labels, plus cutout and mixup in training.

    `shift` > 0 adds random translations of up to `shift` whole pixels to the
    training batches (`keras.layers.RandomTranslation`, nearest neighbour,
    zero fill: the same as `kerascnn.data.load(augment=True)`'s pad-and-crop
    for MNIST, done per batch).
    """
    import keras
    import tensorflow as tf

    from kerascnn.layers import Cutout

    ds = tf.data.Dataset.from_tensor_slices((x, keras.utils.to_categorical(y, classes)))
    # Fixed parallelism and no autotuning: `fit` makes a new iterator every
    # epoch, and destroying an autotuned one can stall for seconds here.
    options = tf.data.Options()
    options.autotune.enabled = False
    ds = ds.with_options(options)
    if training:
        ds = ds.shuffle(len(x), seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size)
    if training and shift:
        size = x.shape[1]
        translate = keras.layers.RandomTranslation(
            shift / size, shift / size, fill_mode="constant", interpolation="nearest", seed=seed
        )
        ds = ds.map(lambda a, b: (translate(a, training=True), b), num_parallel_calls=2)
    if training and "co" in techniques:
        cutout = Cutout(10, seed=seed)
        ds = ds.map(lambda a, b: (cutout(a), b), num_parallel_calls=2)
    if training and "m" in techniques:
        mixup = keras.layers.MixUp(alpha=0.2, seed=seed)

        def mix(a, b):
            out = mixup({"images": a, "labels": b})
            return out["images"], out["labels"]

        ds = ds.map(mix, num_parallel_calls=2)
    return ds.prefetch(2)


def build(dataset, techniques=(), model_name=None):
    from kerascnn import zoo
    from kerascnn.builder.model import build_model

    name = model_name or MODELS[dataset]
    shape = (28, 28, 1) if dataset == "mnist" else (32, 32, 3)
    return build_model(
        zoo.get_spec(name),
        input_shape=shape,
        classes=10,
        blurpool="bp" in techniques,
        squeeze_excite="se" in techniques,
        # Composer's default SE threshold (128 channels) adds nothing to the MNIST net;
        # the paper tuned "latent/min channels": we use 8/8 there.
        se_min_channels=128 if dataset != "mnist" else 8,
        se_latent_channels=64 if dataset != "mnist" else 8,
    )


def train_and_evaluate(
    dataset,
    techniques=(),
    epochs=10,
    batch_size=128,
    learning_rate=0.05,
    weight_decay=None,
    limit=None,
    test_limit=None,
    seed=0,
    verbose=2,
    shift=0,
):
    """Trains the paper's net with `techniques`; returns a dict of results.

    `shift`: random translations of up to that many pixels in training (see
    `make_dataset`); 0 (default) trains on the images as they are.
    """
    import keras

    from kerascnn.callbacks import StochasticWeightAveraging
    from kerascnn.training.sam import enable_sam
    from kerascnn.training.schedules import OneCycle

    if isinstance(shift, bool) or not isinstance(shift, int) or shift < 0:
        raise ValueError(f"shift must be a non-negative int. Received: shift={shift!r}")
    unknown = set(techniques) - set(TECHNIQUES)
    if unknown:
        raise ValueError(f"Unknown techniques {sorted(unknown)}; expected some of {TECHNIQUES}")
    keras.utils.set_random_seed(seed)
    x, y = load(dataset, "train", limit)
    xt, yt = load(dataset, "test", test_limit)
    train = make_dataset(x, y, batch_size, techniques, training=True, seed=seed, shift=shift)
    test = make_dataset(xt, yt, 512, training=False)
    steps = int(np.ceil(len(x) / batch_size)) * epochs
    if "ocl" in techniques:
        lr = OneCycle(learning_rate, total_steps=max(steps, 2))
    else:
        lr = keras.optimizers.schedules.CosineDecay(learning_rate, max(steps, 1))
    model = build(dataset, techniques)
    model.compile(
        optimizer=keras.optimizers.SGD(lr, momentum=0.9, nesterov=True, weight_decay=weight_decay),
        loss=keras.losses.CategoricalCrossentropy(label_smoothing=0.1 if "ls" in techniques else 0),
        metrics=["accuracy"],
    )
    if "sam" in techniques:
        enable_sam(model, rho=0.05)
    callbacks = []
    if "swa" in techniques:
        bn_data = make_dataset(x, y, batch_size, (), training=False)
        callbacks.append(StochasticWeightAveraging(start=0.75, data=bn_data))
    epoch_times = []

    class _Timer(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.t = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            epoch_times.append(time.perf_counter() - self.t)

    start = time.perf_counter()
    # The timer is the last callback, so an epoch's time includes the other
    # callbacks' end-of-epoch work (SWA's weight averaging).
    model.fit(train, epochs=epochs, verbose=verbose, callbacks=[*callbacks, _Timer()])
    train_time = time.perf_counter() - start
    _, accuracy = model.evaluate(test, verbose=0)
    return {
        "dataset": dataset,
        "model": model.name,
        "techniques": "+".join(techniques) or "baseline",
        "params": int(sum(np.prod(v.shape) for v in model.trainable_variables)),
        "epochs": epochs,
        "seed": seed,
        "shift": shift,
        "train_examples": len(x),
        "test_accuracy": float(accuracy),
        "train_seconds": train_time,
        "epoch_seconds": epoch_times,
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", choices=sorted(MODELS), default="mnist")
    parser.add_argument("--techniques", default="", help=f"comma list of {TECHNIQUES}")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--learning-rate", type=float, default=0.05)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--shift", type=int, default=0, help="random shifts of up to N pixels")
    parser.add_argument("--quick", action="store_true", help="512 images, 1 epoch")
    args = parser.parse_args(argv)
    techniques = tuple(t for t in args.techniques.split(",") if t)
    kwargs = {"limit": 512, "test_limit": 512, "epochs": 1} if args.quick else {}
    result = train_and_evaluate(
        args.dataset,
        techniques,
        epochs=kwargs.pop("epochs", args.epochs),
        batch_size=args.batch_size,
        learning_rate=args.learning_rate,
        seed=args.seed,
        shift=args.shift,
        **kwargs,
    )
    print(result)


if __name__ == "__main__":
    main()
