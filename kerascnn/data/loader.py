"""`load`: tf.data input pipelines for the supported datasets."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from kerascnn import _checks
from kerascnn.data import sources

AUTOTUNE = tf.data.AUTOTUNE


def info(name):
    """Returns `{"name", "num_classes", "shape", "mean", "std", "class_names"}` of a dataset.

    `shape` is the `(height, width, channels)` of the images `load` yields.

    Example:

    >>> from kerascnn import data
    >>> data.info("cifar10")["shape"]
    (32, 32, 3)
    """
    entry = sources.CATALOG[sources.canonical_name(name)]
    return {
        "name": entry.name,
        "num_classes": entry.num_classes,
        "shape": entry.shape,
        "mean": entry.mean,
        "std": entry.std,
        "class_names": entry.class_names,
        "augmentation": f"zero-pad {entry.pad}, random crop"
        + (", random horizontal flip" if entry.flip else ""),
    }


def list_datasets():
    """Returns the sorted names accepted by `load`."""
    return sorted(sources.CATALOG)


def _check_positive_int(value, arg, allow_none=False):
    if allow_none and value is None:
        return
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{arg} must be a positive integer. Received: {arg}={value!r}")


def load(
    name,
    split="train",
    batch_size=128,
    augment=False,
    data_dir=None,
    shuffle=None,
    normalize=True,
    as_numpy=False,
    limit=None,
    *,
    seed=None,
    source="auto",
    download=False,
    cache_dir=None,
    drop_remainder=False,
    autotune=True,
    image_size=None,
    class_names=None,
    skip=0,
):
    """Returns a batched, prefetched `tf.data.Dataset` of `(image, label)`.

    Images are float32 `(batch, height, width, channels)`, labels int32
    `(batch,)`. Where the data comes from, and in which order the places are
    searched, is described in `kerascnn.data.sources` (a prepared tfds data
    dir, tfds' manual_dir, the idx files, the CIFAR-10 JPEG zip, an `.npz`;
    `"embedded"` is the Fashion-MNIST subset shipped in the package).

    Normalisation (`normalize=True`): `(x / 255 - mean) / std` with the
    per-channel constants of `info(name)` (training-set statistics);
    `normalize=False` gives `x / 255` in [0, 1].

    Augmentation (`augment=True`, the CIFAR recipe): zero-pad 4 pixels, random
    crop back to 32x32 and random horizontal flip. The 28x28 datasets (MNIST,
    Fashion-MNIST, embedded) get pad-2 random crops only, without flips (a
    flipped digit is another symbol); SVHN is not flipped either. Imagenette
    images are resized (shorter side to `image_size`, then a random crop
    with augmentation or the central crop without).

    Bad data is an error, never silently wrong labels: a truncated or corrupt
    idx / `.npz` file, a CIFAR-10 zip holding anything but the ten class
    folders per split (or a `..` / absolute entry), a corrupt JPEG or a label
    out of range raise a ValueError naming the file (and the zip member).

    Ordering: the test split (and any `shuffle=False` pipeline) keeps the
    source's file order; with `seed` set the shuffling and augmentation of
    the training split are reproducible.

    Args:
        name: `"mnist"`, `"fashion_mnist"`, `"cifar10"`, `"cifar100"`,
            `"svhn"`, `"imagenette"` or `"embedded"`.
        split: `"train"` or `"test"`. Defaults to `"train"`.
        batch_size: positive int. Defaults to 128.
        augment: apply the augmentation above. Defaults to False.
        data_dir: a folder, list of folders or `.npz` path. Defaults to
            `$KERASCNN_DATA_DIR`.
        shuffle: shuffle every epoch (whole-split buffer). Defaults to True
            for `"train"`, False otherwise.
        normalize: standardise (True) or scale to [0, 1] (False). Defaults
            to True.
        as_numpy: return `(images, labels)` numpy arrays of the whole
            (limited) split after normalisation instead of a dataset (not
            batched; shuffled/augmented only if asked). Defaults to False.
        limit: keep only the first `limit` examples (before shuffling; the
            CIFAR-10 JPEG zip is read class-interleaved, so they are balanced).
        skip: leave out the first `skip` examples (before `limit`): with
            `skip=n, limit=m` examples `n` to `n + m - 1` of the split, e.g.
            a validation split held out of the training data. Defaults to 0.
        seed: int seed for shuffling and augmentation. Defaults to None.
        source: `"auto"` or one source kind (see `sources.SOURCE_KINDS`).
        download: let tensorflow-datasets download (needs internet).
            Defaults to False: these machines are offline.
        cache_dir: cache for decoded arrays and tfds preparations. Defaults
            to `$KERASCNN_CACHE_DIR` or `~/.cache/kerascnn`.
        drop_remainder: drop the last incomplete batch. Defaults to False.
        autotune: tf.data autotuning. Pass False for pipelines created and
            destroyed repeatedly (iterator teardown can stall with autotune).
            Defaults to True.
        image_size: output size of Imagenette images. Defaults to 128.
        class_names: the class folders of the CIFAR-10 JPEG zip, in label
            order, when the zip holds another class list than CIFAR-10's.
            Defaults to None (CIFAR-10's ten classes).

    Returns:
        A `tf.data.Dataset`, or a tuple of numpy arrays with `as_numpy=True`.

    Example:

    >>> from kerascnn import data
    >>> train = data.load("embedded", "train", batch_size=64, augment=True, seed=0)
    >>> images, labels = next(iter(train))
    >>> tuple(images.shape), images.dtype.name
    ((64, 28, 28, 1), 'float32')
    """
    name = sources.canonical_name(name)
    entry = sources.CATALOG[name]
    _check_load_args(entry, name, split, batch_size, limit, image_size, seed)
    _checks.check_non_negative_int(skip, "skip")
    if shuffle is None:
        shuffle = split == "train"
    source_obj = sources.resolve(name, data_dir, source, download, cache_dir, class_names)
    ds, size = _raw_dataset(source_obj, entry, name, split, limit, skip)
    if shuffle:
        buffer = size if size is not None else 50_000
        ds = ds.shuffle(buffer, seed=seed, reshuffle_each_iteration=True)
    target = entry.shape
    if entry.resize:
        target = (image_size or entry.shape[0], image_size or entry.shape[1], 3)
    ds = _map_prepare(ds, entry, target, augment, normalize, seed, AUTOTUNE if autotune else 2)
    ds = ds.with_options(_options(autotune))
    if as_numpy:
        images, labels = [], []
        for batch_x, batch_y in ds.batch(4096).as_numpy_iterator():
            images.append(batch_x)
            labels.append(batch_y)
        return np.concatenate(images), np.concatenate(labels)
    ds = ds.batch(batch_size, drop_remainder=drop_remainder)
    return ds.prefetch(AUTOTUNE if autotune else 2)


def _check_load_args(entry, name, split, batch_size, limit, image_size, seed):
    """Validates `load`'s arguments before any data is read."""
    sources.check_split(split)
    _check_positive_int(batch_size, "batch_size")
    _check_positive_int(limit, "limit", allow_none=True)
    if image_size is not None:
        if not entry.resize:
            raise ValueError(f"image_size applies to imagenette only. Received: name={name!r}")
        _check_positive_int(image_size, "image_size")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, (int, np.integer))):
        raise TypeError(f"seed must be an int or None. Received: seed={seed!r}")


def _raw_dataset(source_obj, entry, name, split, limit, skip=0):
    """`(dataset of (uint8 image, int32 label), size or None)` of one split."""
    if source_obj.in_memory:
        x, y = source_obj.arrays(split)
        stop = None if limit is None else skip + limit
        if skip or limit is not None:
            x, y = x[skip:stop], y[skip:stop]
        if x.shape[1:] != entry.shape and not entry.resize:
            raise ValueError(
                f"{source_obj.describe()}: images have shape {x.shape[1:]}, "
                f"{name} needs {entry.shape}."
            )
        return tf.data.Dataset.from_tensor_slices((x, y.astype(np.int32))), len(x)
    ds = source_obj.tfds_dataset(split)
    if skip:
        ds = ds.skip(skip)
    if limit is not None:
        ds = ds.take(limit)
    ds = ds.map(lambda image, label: (image, tf.cast(label, tf.int32)))
    if not entry.resize:
        ds = ds.cache()  # small datasets: decode the PNGs once
    return ds, None


def _map_prepare(ds, entry, target, augment, normalize, seed, parallel):
    """Maps crop/flip augmentation, scaling and normalisation over `ds`."""
    mean = tf.constant(entry.mean, tf.float32)
    std = tf.constant(entry.std, tf.float32)

    def prepare(image, label, rand=None):
        image = tf.cast(image, tf.float32)
        if entry.resize:
            image = _resize_shorter(image, target[0] + (entry.pad if augment else 0))
        if augment:
            seeds = tf.reshape(tf.cast(rand, tf.int64), (2, 2))
            if not entry.resize:
                pad = entry.pad
                image = tf.pad(image, [[pad, pad], [pad, pad], [0, 0]])
            image = tf.image.stateless_random_crop(image, target, seed=seeds[0])
            if entry.flip:
                image = tf.image.stateless_random_flip_left_right(image, seed=seeds[1])
        elif entry.resize:
            image = _center_crop(image, target[0])
        image = image / 255.0
        if normalize:
            image = (image - mean) / std
        return tf.ensure_shape(image, target), label

    if not augment:
        return ds.map(prepare, num_parallel_calls=parallel, deterministic=True)
    rand = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).batch(4)
    return tf.data.Dataset.zip((ds, rand)).map(
        lambda pair, r: prepare(pair[0], pair[1], r),
        num_parallel_calls=parallel,
        deterministic=True,
    )


def _options(autotune):
    """Deterministic tf.data options; autotuning as asked; auto-shard by data."""
    options = tf.data.Options()
    options.deterministic = True
    options.autotune.enabled = bool(autotune)
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return options


def _resize_shorter(image, size):
    shape = tf.cast(tf.shape(image)[:2], tf.float32)
    scale = tf.cast(size, tf.float32) / tf.reduce_min(shape)
    new = tf.cast(tf.math.ceil(shape * scale), tf.int32)
    return tf.image.resize(image, new, antialias=True)


def _center_crop(image, size):
    shape = tf.shape(image)
    top = (shape[0] - size) // 2
    left = (shape[1] - size) // 2
    return image[top : top + size, left : left + size, :]
