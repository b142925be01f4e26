"""Builds `kerascnn/data/fashion_mnist_small.npz`, the embedded default dataset.

A class-balanced random subset of Fashion-MNIST (Xiao, Rasul & Vollgraf 2017,
https://github.com/zalandoresearch/fashion-mnist, MIT licence, Copyright (c)
2017 Zalando SE): 250 training images per class (2,500) from the original
training set and 100 test images per class (1,000) from the original test set,
uint8, 28x28, written with `np.savez_compressed` (about 1.5 MB).

The selection is reproducible: `numpy.random.default_rng(seed)` picks the
indices class by class, and they are stored sorted (original order) as
`train_index` / `test_index` beside `x_train, y_train, x_test, y_test`.

Usage (from the repository root, with the original idx files):

    python tools/make_embedded_dataset.py --source ../shared/data/fashion_mnist
"""

import argparse
import hashlib
import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from kerascnn.data import sources  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_OUTPUT = os.path.normpath(
    os.path.join(HERE, "..", "kerascnn", "data", "fashion_mnist_small.npz")
)


def balanced_indices(labels, per_class, rng):
    """Returns sorted indices with `per_class` random examples of each class."""
    picked = []
    for c in np.unique(labels):
        candidates = np.flatnonzero(labels == c)
        picked.append(rng.choice(candidates, per_class, replace=False))
    return np.sort(np.concatenate(picked)).astype(np.int32)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", default="../shared/data/fashion_mnist")
    parser.add_argument("--output", default=DEFAULT_OUTPUT)
    parser.add_argument("--train-per-class", type=int, default=250)
    parser.add_argument("--test-per-class", type=int, default=100)
    parser.add_argument("--seed", type=int, default=20170825)  # Fashion-MNIST's release date
    args = parser.parse_args(argv)

    rng = np.random.default_rng(args.seed)
    arrays = {}
    for split, per_class in (("train", args.train_per_class), ("test", args.test_per_class)):
        x, y = sources.read_idx_split(args.source, "fashion_mnist", split)
        index = balanced_indices(y, per_class, rng)
        arrays[f"x_{split}"] = x[index]
        arrays[f"y_{split}"] = y[index].astype(np.uint8)
        arrays[f"{split}_index"] = index
    np.savez_compressed(args.output, **arrays)
    with open(args.output, "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()
    size = os.path.getsize(args.output)
    print(f"wrote {args.output}: {size:,} bytes, sha256 {digest}")
    for key, value in arrays.items():
        print(f"  {key}: {value.shape} {value.dtype}")


if __name__ == "__main__":
    main()
