"""Base vs 3DRF-optimized models, trained the same short way on Fashion-MNIST.

For each base model, the stage organizer (and optionally the kernel
decomposer) produces an optimized spec; every model is built with
`kerascnn.builder.build_model`, trained with the same recipe and evaluated on
the test split. Prints (and writes as JSON) parameters, MACs and accuracy.

Images are zero-padded from 28x28 to 32x32 (the CIFAR geometry the organizer
settings were found on). Models:

- `vgg16_bn` base; organizer (theta=0, rule="paper"); organizer + DW+RPW-g2-o50%;
- `mobilenet` base; organizer (theta=0.1).

Usage:
    python examples/optimize_3drf.py --quick         # 2048 images, 1 epoch, width 1/8
    python examples/optimize_3drf.py --epochs 15 --width 0.25 --limit 0
"""

import argparse
import json
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import keras  # noqa: E402
import numpy as np  # noqa: E402

from kerascnn import zoo  # noqa: E402
from kerascnn.builder.model import build_model  # noqa: E402
from kerascnn.observe.summary import summarize  # noqa: E402
from kerascnn.transforms.decomposer import decompose  # noqa: E402
from kerascnn.transforms.organizer import body_depths, organize  # noqa: E402

INPUT_SHAPE = (32, 32, 1)


def load_split(split, limit):
    """Fashion-MNIST through `kerascnn.data.load` (`$KERASCNN_DATA_DIR`), padded to 32x32."""
    from kerascnn import data

    x, y = data.load("fashion_mnist", split, as_numpy=True, limit=limit or None)
    x = np.pad(np.asarray(x, "float32"), ((0, 0), (2, 2), (2, 2), (0, 0)))
    return x, np.asarray(y, "int32")


def specs(width):
    vgg = zoo.get_spec("vgg16_bn", input_shape=INPUT_SHAPE, width_multiplier=width)
    vgg_opt = organize(vgg, theta=0.0, rule="paper", input_shape=INPUT_SHAPE).spec
    vgg_rpw = decompose(vgg_opt, "dw_rpw", groups=2, overlap=0.5, input_shape=INPUT_SHAPE)
    mob = zoo.get_spec("mobilenet", input_shape=INPUT_SHAPE, width_multiplier=width)
    mob_opt = organize(mob, theta=0.1, input_shape=INPUT_SHAPE).spec
    return [
        ("vgg16_bn", vgg),
        ("vgg16_bn-opt", vgg_opt),
        ("vgg16_bn-opt dw+rpw-g2-o50", vgg_rpw),
        ("mobilenet", mob),
        ("mobilenet-opt", mob_opt),
    ]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--width", type=float, default=0.25)
    parser.add_argument("--limit", type=int, default=0, help="training images (0: all)")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", default="benchmarks/results/optimize_3drf.json")
    args = parser.parse_args(argv)
    if args.quick:
        args.epochs, args.width, args.limit = 1, 0.125, 2048
    x_train, y_train = load_split("train", args.limit)
    x_test, y_test = load_split("test", 2000 if args.quick else 0)
    rows = []
    for name, spec in specs(args.width):
        keras.utils.set_random_seed(args.seed)
        model = build_model(spec, input_shape=INPUT_SHAPE, classes=10)
        totals = summarize(model).totals
        steps = args.epochs * int(np.ceil(len(x_train) / args.batch))
        model.compile(
            optimizer=keras.optimizers.SGD(
                keras.optimizers.schedules.CosineDecay(0.05, steps), momentum=0.9
            ),
            loss="sparse_categorical_crossentropy",
            metrics=["accuracy"],
        )
        start = time.time()
        model.fit(x_train, y_train, batch_size=args.batch, epochs=args.epochs, verbose=0)
        _, acc = model.evaluate(x_test, y_test, batch_size=256, verbose=0)
        row = {
            "model": name,
            "stages": list(body_depths(spec)),
            "params": totals["params"],
            "macs": totals["macs"],
            "test_accuracy": float(acc),
            "train_seconds": round(time.time() - start, 1),
        }
        rows.append(row)
        print(
            f"{name:<28} stages {row['stages']!s:<18} params {row['params']:>10,} "
            f"MACs {row['macs']:>12,} acc {acc:.4f} ({row['train_seconds']} s)",
            flush=True,
        )
        keras.backend.clear_session()
    out = {
        "command": "python " + " ".join([os.path.relpath(__file__)] + (argv or sys.argv[1:])),
        "epochs": args.epochs,
        "width": args.width,
        "train_images": len(x_train),
        "test_images": len(x_test),
        "rows": rows,
    }
    os.makedirs(os.path.dirname(args.output) or ".", exist_ok=True)
    with open(args.output, "w") as f:
        json.dump(out, f, indent=2)
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
