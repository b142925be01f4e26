"""Learn&Drop: stop training the first layers once they stop learning; train the rest on a cache.

A plain Keras `fit` with `kerascnn.callbacks.LayerDropping(...)`: after the
warm-up epochs, at the end of every epoch the callback scores every
convolution from the epoch's gradients (accumulated inside the training
step), and when the first layers have stopped learning (the paper's n* and
median check) it drops them: their output is computed once into a tf.data
cache and only the rest of the network (the head) trains from then on. The
model keeps every layer, so `evaluate`, `predict` and `save` use the full
network. The same model is also trained plainly (and, with `--freezing`, with
`LayerFreezing`, the paper's baseline that freezes without caching) from the
same initial weights, and the script prints, per run: the training time, the
test accuracy, the forward MACs saved and the number of dropped convolutions
per epoch. The epoch after a decision builds the cache (it still runs the
whole network forward); the saving starts with the next one.

    python examples/layer_dropping.py             # ResNet-18 x1/8, embedded data, 12 epochs
    python examples/layer_dropping.py --quick     # smoke test: 4 epochs, 512 images, forced drop
    python examples/layer_dropping.py --freezing  # + the LayerFreezing run

The default data is the Fashion-MNIST subset shipped in the package (2,500
training images), so it runs anywhere; `--dataset fashion_mnist` or
`cifar10` (with `KERASCNN_DATA_DIR`, see `kerascnn.data`) for real sizes,
`--cache DIR --cache-dtype float16` for a disk cache.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import keras  # noqa: E402

from kerascnn import data, zoo  # noqa: E402
from kerascnn.callbacks import LayerDropping, LayerFreezing  # noqa: E402


def run(args, method, initial_weights):
    """Trains one model with `method` ("plain", "dropping", "freezing"); returns a dict."""
    keras.utils.set_random_seed(args.seed)
    info = data.info(args.dataset)
    train = data.load(
        args.dataset,
        "train",
        args.batch_size,
        seed=args.seed,
        limit=args.limit or None,
        autotune=False,
    )
    test = data.load(args.dataset, "test", 256, shuffle=False, autotune=False)
    model = zoo.build(
        args.model,
        input_shape=info["shape"],
        classes=info["num_classes"],
        width_multiplier=args.width,
    )
    model.set_weights(initial_weights)
    model.compile(
        optimizer=keras.optimizers.SGD(args.lr, momentum=0.9),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    force = {args.warmup: args.force_convs} if args.force_convs else None
    callbacks = []
    if method == "dropping":
        callbacks.append(
            LayerDropping(
                warmup_epochs=args.warmup,
                cache=args.cache,
                cache_dtype=args.cache_dtype,
                force_drops=force,
                seed=args.seed,
                verbose=1,
            )
        )
    elif method == "freezing":
        callbacks.append(LayerFreezing(warmup_epochs=args.warmup, force_drops=force, verbose=1))
    start = time.perf_counter()
    history = model.fit(
        train, epochs=args.epochs, callbacks=callbacks, verbose=args.verbose, shuffle=False
    )
    seconds = time.perf_counter() - start
    # The full model, every layer, current weights.
    _, accuracy = model.evaluate(test, verbose=0)
    result = {"method": method, "train_time_s": seconds, "test_accuracy": float(accuracy)}
    logs = history.history
    key = {"dropping": "learn_drop/dropped_convs", "freezing": "learn_drop/frozen_convs"}
    if method in key:
        result["dropped_convs_per_epoch"] = [int(v) for v in logs[key[method]]]
        result["train_macs_per_epoch"] = [int(v) for v in logs["learn_drop/train_macs"]]
    return result


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resnet18")
    parser.add_argument("--dataset", default="embedded")
    parser.add_argument("--width", type=float, default=0.125)
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--warmup", type=int, default=3, help="epochs before the first decision")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=0.02, help="SGD (momentum 0.9)")
    parser.add_argument("--limit", type=int, default=0, help="training images (0: all)")
    parser.add_argument("--cache", default="memory", help="'memory' or a directory")
    parser.add_argument("--cache-dtype", default=None, help="e.g. float16")
    parser.add_argument(
        "--force-convs",
        type=int,
        default=0,
        help="experiments: drop this many convolutions after the warm-up whatever the score",
    )
    parser.add_argument("--freezing", action="store_true", help="also run LayerFreezing")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--verbose", type=int, default=2, help="fit's verbosity")
    parser.add_argument("--output-dir", default="runs/layer_dropping")
    parser.add_argument("--quick", action="store_true", help="4 epochs, 512 images, forced drop")
    args = parser.parse_args(argv)
    if args.quick:
        # The drop is decided after epoch 2, the cache built in epoch 3, the head
        # alone trained in epoch 4.
        args.epochs, args.limit, args.warmup = 4, 512, 1
        args.force_convs = args.force_convs or 5
    info = data.info(args.dataset)
    keras.utils.set_random_seed(args.seed)
    initial = zoo.build(
        args.model,
        input_shape=info["shape"],
        classes=info["num_classes"],
        width_multiplier=args.width,
    ).get_weights()
    methods = ["plain", "dropping"] + (["freezing"] if args.freezing else [])
    results = [run(args, m, initial) for m in methods]
    plain = results[0]
    print()
    for r in results:
        line = f"{r['method']:>9}: {r['train_time_s']:6.1f} s, "
        line += f"test accuracy {r['test_accuracy']:.4f}"
        if r["method"] != "plain":
            saved = 100 * (1 - r["train_time_s"] / plain["train_time_s"])
            full = r["train_macs_per_epoch"][0]
            macs = 100 * (1 - sum(r["train_macs_per_epoch"]) / (full * args.epochs))
            line += (
                f" ({saved:+.0f}% time saved, {macs:.0f}% forward MACs saved); "
                f"dropped convolutions per epoch {r['dropped_convs_per_epoch']}"
            )
        print(line)
    os.makedirs(args.output_dir, exist_ok=True)
    path = os.path.join(args.output_dir, "summary.json")
    with open(path, "w") as f:
        json.dump({"args": vars(args), "results": results}, f, indent=2)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
