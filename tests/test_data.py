"""Tests of kerascnn.data: sources agree, errors are helpful, pipelines are right.

The real-data tests read `$KERASCNN_DATA_DIR` (CI sets it to `../shared/data`);
they are skipped, with the reason, only when it is unset or lacks the files.
"""

import hashlib
import io
import os
import zipfile

import numpy as np
import pytest
import tensorflow as tf

from kerascnn import data
from kerascnn.data import sources

DATA_DIR = os.environ.get("KERASCNN_DATA_DIR")


def _real_dir(*parts):
    if not DATA_DIR:
        pytest.skip("KERASCNN_DATA_DIR is unset (CI sets it to ../shared/data)")
    path = os.path.join(DATA_DIR, *parts)
    if not os.path.exists(path):
        pytest.skip(f"{path} is absent")
    return path


def _digests(x, y):
    """One sha1 per (image, label) pair: compares example multisets."""
    return sorted(
        hashlib.sha1(image.tobytes() + bytes([int(label)])).hexdigest()
        for image, label in zip(x, y)
    )


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("KERASCNN_CACHE_DIR", str(tmp_path / "cache"))


# ---------------------------------------------------------------------------
# The three MNIST sources give identical examples.
# ---------------------------------------------------------------------------
def test_idx_and_npz_identical(tmp_path):
    mnist = _real_dir("mnist")
    x_train, y_train = sources.resolve("mnist", mnist, source="idx").arrays("train")
    x_test, y_test = sources.resolve("mnist", mnist, source="idx").arrays("test")
    # The originals: 60000 + 10000 images, first test label is a 7, train a 5.
    assert x_train.shape == (60000, 28, 28, 1) and x_test.shape == (10000, 28, 28, 1)
    assert (int(y_train[0]), int(y_test[0])) == (5, 7)
    npz = tmp_path / "mnist.npz"
    np.savez(npz, x_train=x_train[..., 0], y_train=y_train, x_test=x_test[..., 0], y_test=y_test)
    for split, (x, y) in (("train", (x_train, y_train)), ("test", (x_test, y_test))):
        from_idx = data.load("mnist", split, 256, data_dir=mnist, source="idx", limit=512)
        from_npz = data.load("mnist", split, 256, data_dir=str(tmp_path), source="npz", limit=512)
        a = np.concatenate([b[0] for b in from_idx.as_numpy_iterator()])
        b = np.concatenate([b[0] for b in from_npz.as_numpy_iterator()])
        c, labels = data.load(
            "mnist", split, data_dir=str(npz), as_numpy=True, shuffle=False, limit=512
        )
        if split == "train":  # shuffled with seed None: compare as multisets
            a, b = np.sort(a.reshape(512, -1), axis=0), np.sort(b.reshape(512, -1), axis=0)
            c = np.sort(c.reshape(512, -1), axis=0)
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(a, c)
        # normalize=True is exactly (x / 255 - mean) / std of the raw pixels.
        raw, raw_labels = data.load(
            "mnist", split, data_dir=mnist, as_numpy=True, shuffle=False, limit=64, source="idx"
        )
        expected = (x[:64].astype(np.float32) / 255 - 0.1307) / 0.3081
        np.testing.assert_allclose(raw, expected, rtol=1e-6, atol=1e-6)
        np.testing.assert_array_equal(raw_labels, y[:64])
        np.testing.assert_array_equal(labels, y[:512])


@pytest.fixture(scope="module")
def tfds_mnist(tmp_path_factory):
    """MNIST prepared by tfds from manual_dir = the idx files (about 20 s).

    Fashion-MNIST is prepared into the same cache first: its archives have the
    same file names as MNIST's, and tfds names its extractions after the file
    name only, so with one shared download folder the "MNIST" prepared second
    held Fashion-MNIST's images (a bug this fixture keeps caught).
    """
    mnist, fashion = _real_dir("mnist"), _real_dir("fashion_mnist")
    cache = tmp_path_factory.mktemp("tfds_cache")
    fashion_source = sources.resolve(
        "fashion_mnist", fashion, source="tfds_manual", cache_dir_path=str(cache)
    )
    # Step 2 of the search order: the idx archives as tfds' manual_dir.
    source = sources.resolve("mnist", mnist, source="tfds_manual", cache_dir_path=str(cache))
    assert source.kind == "tfds" and source.location == str(cache / "tfds")
    assert fashion_source.location == source.location  # one cache, two datasets
    return source, sources.resolve("mnist", mnist, source="idx"), fashion_source


def test_tfds_mnist_and_fashion_mnist_prepared_in_one_cache_stay_apart(tfds_mnist):
    """Each dataset keeps its own examples when both are prepared in one cache."""
    source, idx, fashion_source = tfds_mnist
    x_fashion, y_fashion = fashion_source.arrays("test")
    fashion_idx = sources.resolve("fashion_mnist", _real_dir("fashion_mnist"), source="idx")
    assert _digests(x_fashion, y_fashion) == _digests(*fashion_idx.arrays("test"))
    x_mnist, y_mnist = source.arrays("test")
    assert _digests(x_mnist, y_mnist) != _digests(x_fashion, y_fashion)


def test_tfds_prepared_mnist_identical_to_idx(tfds_mnist):
    """tfds' prepared MNIST holds the same test examples as the idx files.

    tfds stores the examples in its own (hashed) order, so the split is
    compared as a multiset of (image, label) pairs; `load` also finds the
    prepared copy by itself (source "auto" searches tfds data dirs first).
    """
    source, idx, _ = tfds_mnist
    assert sources.resolve("mnist", source.location).kind == "tfds"  # step 1 finds it
    x_idx, y_idx = idx.arrays("test")
    x_tfds, y_tfds = source.arrays("test")
    assert x_tfds.shape == x_idx.shape == (10000, 28, 28, 1) and x_tfds.dtype == np.uint8
    assert _digests(x_tfds, y_tfds) == _digests(x_idx, y_idx)
    # Through the pipeline, normalised the same way.
    from_tfds, y1 = data.load("mnist", "test", data_dir=source.location, as_numpy=True, limit=100)
    expected = (x_tfds[:100].astype(np.float32) / 255 - 0.1307) / 0.3081
    np.testing.assert_allclose(from_tfds, expected, atol=1e-6)
    np.testing.assert_array_equal(y1, y_tfds[:100])


@pytest.mark.slow
def test_tfds_prepared_mnist_train_identical_to_idx(tfds_mnist):
    """The 60000 training examples too (decoding tfds' PNGs takes ~30 s here)."""
    source, idx, _ = tfds_mnist
    x_idx, y_idx = idx.arrays("train")
    x_tfds, y_tfds = source.arrays("train")
    assert _digests(x_tfds, y_tfds) == _digests(x_idx, y_idx)


def test_normalisation_constants_match_the_training_sets():
    for name in ("mnist", "fashion_mnist"):
        x, _ = sources.resolve(name, _real_dir(name), source="idx").arrays("train")
        scaled = x.astype(np.float64) / 255
        entry = sources.CATALOG[name]
        assert abs(scaled.mean() - entry.mean[0]) < 1e-4
        assert abs(scaled.std() - entry.std[0]) < 1e-4


def test_fashion_mnist_folder_is_not_read_as_mnist():
    mnist = _real_dir("mnist")
    with pytest.raises(FileNotFoundError, match="fashion_mnist"):
        sources.resolve("fashion_mnist", mnist, source="idx")


def test_cifar10_jpeg_zip_matches_pil(tmp_path):
    from PIL import Image

    path = _real_dir("cifar10_jpeg.zip")
    with zipfile.ZipFile(path) as archive:
        names = sorted(
            n for n in archive.namelist() if n.startswith("test/") and n.endswith(".jpg")
        )
        picks = [n for n in names if n.startswith("test/cat/")][:3] + names[:2]
        x, y, order = sources.decode_jpeg_zip(path, "test", members=picks)
        for image, label, name in zip(x, y, order):
            raw = archive.read(name)
            with Image.open(io.BytesIO(raw)) as pil:
                np.testing.assert_array_equal(image, np.asarray(pil.convert("RGB")))
            decoded = tf.io.decode_jpeg(raw, channels=3, dct_method="INTEGER_ACCURATE")
            np.testing.assert_array_equal(image, decoded.numpy())
            # Label = position of the class folder in sorted order (cat = 3).
            assert data.info("cifar10")["class_names"][label] == name.split("/")[1]
    assert sorted(sources.CATALOG["cifar10"].class_names) == list(
        sources.CATALOG["cifar10"].class_names
    )


def test_cifar10_jpeg_zip_is_found_and_cached(tmp_path):
    _real_dir("cifar10_jpeg.zip")
    source = sources.resolve("cifar10", DATA_DIR)
    assert source.kind == "jpeg_zip"
    assert source.num_examples("test") == 10000
    x, y = source.arrays("test")
    assert x.shape == (10000, 32, 32, 3) and np.bincount(y).tolist() == [1000] * 10
    cached = [f for f in os.listdir(tmp_path / "cache") if f.endswith(".npy")]
    assert len(cached) == 2  # images + labels of the test split
    x2, y2 = source.arrays("test")  # from the cache
    np.testing.assert_array_equal(x, x2)
    np.testing.assert_array_equal(y, y2)


# ---------------------------------------------------------------------------
# Errors.
# ---------------------------------------------------------------------------
def test_missing_dataset_lists_places(tmp_path, monkeypatch):
    monkeypatch.delenv("KERASCNN_DATA_DIR", raising=False)
    empty = tmp_path / "empty"
    (empty / "cifar100").mkdir(parents=True)
    with pytest.raises(FileNotFoundError) as info:
        data.load("cifar100", data_dir=str(empty))
    message = str(info.value)
    assert "\n" not in message
    assert str(empty / "cifar100") in message  # tfds dir, manual_dir and npz
    assert str(empty / "cifar100" / "cifar100.npz") in message
    assert str(tmp_path / "cache" / "tfds" / "cifar100") in message
    assert "KERASCNN_DATA_DIR" in message and "x_train" in message and "download=True" in message
    with pytest.raises(FileNotFoundError, match="KERASCNN_DATA_DIR is unset"):
        data.load("mnist")


def test_bad_arguments():
    with pytest.raises(ValueError, match="Unknown dataset.*'mnist'.*Received: name='imagenet'"):
        data.load("imagenet")
    with pytest.raises(ValueError, match="data_dir does not exist"):
        data.load("mnist", data_dir="/nonexistent/folder")
    with pytest.raises(ValueError, match="split"):
        data.load("embedded", split="validation")
    with pytest.raises(ValueError, match="batch_size"):
        data.load("embedded", batch_size=0)
    with pytest.raises(ValueError, match="source"):
        data.load("mnist", source="jpeg_zip")


# ---------------------------------------------------------------------------
# Embedded dataset and pipelines.
# ---------------------------------------------------------------------------
def test_embedded_offline(monkeypatch):
    monkeypatch.delenv("KERASCNN_DATA_DIR", raising=False)
    size = os.path.getsize(sources.EMBEDDED_PATH)
    assert size < 2_000_000
    licence = os.path.join(os.path.dirname(sources.EMBEDDED_PATH), "LICENSE_fashion_mnist.txt")
    with open(licence) as f:
        assert "Copyright (c) 2017 Zalando SE" in f.read()
    x, y = data.load("embedded", "train", as_numpy=True, normalize=False, shuffle=False)
    assert x.shape == (2500, 28, 28, 1) and x.dtype == np.float32
    assert np.bincount(y).tolist() == [250] * 10  # class balanced
    assert 0.0 <= x.min() and x.max() <= 1.0
    test = data.load("embedded", "test", batch_size=100)
    images, labels = next(iter(test))
    assert images.shape == (100, 28, 28, 1) and labels.dtype == tf.int32
    assert sum(1 for _ in test) == 10


def test_embedded_matches_fashion_mnist_originals():
    folder = _real_dir("fashion_mnist")
    with np.load(sources.EMBEDDED_PATH) as embedded:
        for split in ("train", "test"):
            x, y = sources.read_idx_split(folder, "fashion_mnist", split)
            index = embedded[f"{split}_index"]
            np.testing.assert_array_equal(embedded[f"x_{split}"], x[index])
            np.testing.assert_array_equal(embedded[f"y_{split}"], y[index])


def test_augmentation_shapes_and_determinism():
    def first_batch(seed):
        ds = data.load("embedded", "train", 32, augment=True, seed=seed, normalize=False)
        return next(iter(ds))

    a, la = first_batch(1)
    b, lb = first_batch(1)
    c, _ = first_batch(2)
    assert a.shape == (32, 28, 28, 1)
    np.testing.assert_array_equal(a.numpy(), b.numpy())
    np.testing.assert_array_equal(la.numpy(), lb.numpy())
    assert not np.array_equal(a.numpy(), c.numpy())
    # Pad-2 crops of 28x28 data: each augmented image is a shift of the
    # original by at most 2 pixels (zeros enter at the border), never flipped.
    x, y = data.load("embedded", "train", as_numpy=True, normalize=False, shuffle=False, limit=8)
    aug, _ = data.load(
        "embedded",
        "train",
        as_numpy=True,
        normalize=False,
        shuffle=False,
        limit=8,
        augment=True,
        seed=3,
    )
    for original, shifted in zip(x[..., 0], aug[..., 0]):
        padded = np.pad(original, 2)
        matches = [
            np.array_equal(padded[dy : dy + 28, dx : dx + 28], shifted)
            for dy in range(5)
            for dx in range(5)
        ]
        assert any(matches)
    # Two epochs of the same pipeline see different crops (re-randomised).
    ds = data.load("embedded", "train", 16, augment=True, seed=0, shuffle=False, limit=16)
    first, second = [batch[0].numpy() for batch in ds], [batch[0].numpy() for batch in ds]
    assert not np.array_equal(first[0], second[0])


def test_cifar_augmentation_flips_and_crops():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (4, 32, 32, 3), dtype=np.uint8)
    y = np.arange(4)
    path = os.path.join(os.environ["KERASCNN_CACHE_DIR"], "cifar10.npz")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    np.savez(path, x_train=x, y_train=y, x_test=x, y_test=y)
    aug, labels = data.load(
        "cifar10",
        data_dir=path,
        as_numpy=True,
        augment=True,
        seed=0,
        normalize=False,
        shuffle=False,
    )
    assert aug.shape == (4, 32, 32, 3)
    np.testing.assert_array_equal(labels, y)
    seen_flip = False
    for original, out in zip(x, (aug * 255).round().astype(np.uint8)):
        padded = np.pad(original, ((4, 4), (4, 4), (0, 0)))
        found = None
        for flip in (False, True):
            source = padded[:, ::-1] if flip else padded
            for dy in range(9):
                for dx in range(9):
                    if np.array_equal(source[dy : dy + 32, dx : dx + 32], out):
                        found = flip
        assert found is not None
        seen_flip |= found
    assert seen_flip  # seed 0 flips at least one of the four
    info = data.info("cifar10")
    assert info["shape"] == (32, 32, 3) and info["num_classes"] == 10
    assert data.info("cifar100")["num_classes"] == 100
