"""Tests of kerascnn.data: sources agree, errors are helpful, pipelines are right.

The real-data tests read `$KERASCNN_DATA_DIR` (CI sets it to `../shared/data`);
they are skipped, with the reason, only when it is unset or lacks the files.
"""

import gzip
import hashlib
import io
import os
import subprocess
import sys
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


@pytest.mark.slow
def test_tfds_mnist_and_fashion_mnist_prepared_in_one_cache_stay_apart(tfds_mnist):
    """Each dataset keeps its own examples when both are prepared in one cache."""
    source, idx, fashion_source = tfds_mnist
    x_fashion, y_fashion = fashion_source.arrays("test")
    fashion_idx = sources.resolve("fashion_mnist", _real_dir("fashion_mnist"), source="idx")
    assert _digests(x_fashion, y_fashion) == _digests(*fashion_idx.arrays("test"))
    x_mnist, y_mnist = source.arrays("test")
    assert _digests(x_mnist, y_mnist) != _digests(x_fashion, y_fashion)


@pytest.mark.slow
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
    # The zip is sorted by class; the examples come interleaved so that a
    # prefix (`limit=N`) is class-balanced, not N airplanes.
    np.testing.assert_array_equal(y[:20], np.tile(np.arange(10), 2))
    _, y_limited = data.load("cifar10", split="test", limit=300, as_numpy=True)
    assert np.bincount(y_limited).tolist() == [30] * 10


def test_interleave_classes_is_round_robin_and_stable():
    x = np.arange(7)
    y = np.array([2, 0, 1, 0, 2, 2, 0])
    xi, yi = sources.interleave_classes(x, y)
    assert yi.tolist() == [0, 1, 2, 0, 2, 0, 2]
    assert xi.tolist() == [1, 2, 0, 3, 4, 6, 5]  # within a class: original order


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


# ---------------------------------------------------------------------------
# Bad data is an error naming the file, never silently wrong labels.
# Tiny fixtures built in tmp_path (a 20-image zip, 40 + 20 idx records).
# ---------------------------------------------------------------------------
CIFAR10 = sources.CATALOG["cifar10"].class_names


def _jpeg(value):
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.full((32, 32, 3), value, np.uint8)).save(buffer, format="JPEG")
    return buffer.getvalue()


def _cifar_zip(path, classes=CIFAR10, extra=(), skip=(), corrupt=None):
    """A CIFAR-10-layout zip: one image per class and split (pixel value = 20 x label)."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with zipfile.ZipFile(path, "w") as archive:
        for split in sources.SPLITS:
            archive.writestr(f"{split}/", b"")
            for label, name in enumerate(classes):
                member = f"{split}/{name}/0000.jpg"
                if member in skip:
                    continue
                archive.writestr(f"{split}/{name}/", b"")
                jpeg = _jpeg(20 * label)
                archive.writestr(member, jpeg[: len(jpeg) // 3] if member == corrupt else jpeg)
        for name in extra:
            archive.writestr(name, _jpeg(255) if name.endswith(".jpg") else b"")
    return str(path)


def _write_idx(path, array):
    header = bytes([0, 0, 8, array.ndim]) + b"".join(d.to_bytes(4, "big") for d in array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


def _tiny_mnist(root, truncate=None):
    """`<root>/mnist/` with the four idx .gz files (40 train, 20 test records)."""
    folder = os.path.join(root, "mnist")
    os.makedirs(folder, exist_ok=True)
    rng = np.random.default_rng(0)
    for split, n in (("train", 40), ("test", 20)):
        images, labels = sources._IDX_FILES[split]
        _write_idx(os.path.join(folder, images), rng.integers(0, 256, (n, 28, 28)))
        _write_idx(os.path.join(folder, labels), np.arange(n) % 10)
    if truncate:
        path = os.path.join(folder, truncate)
        with open(path, "rb") as f:
            raw = f.read()
        with open(path, "wb") as f:
            f.write(raw[: len(raw) // 2])
    return folder


def _cache_files():
    cache = os.environ["KERASCNN_CACHE_DIR"]
    return sorted(
        os.path.relpath(os.path.join(r, f), cache) for r, _, fs in os.walk(cache) for f in fs
    )


@pytest.mark.parametrize(
    "entry",
    [
        "train/stray/0000.jpg",  # a stray class folder would become a class and shift labels
        "test/stray/",  # an empty stray folder too
        "train/../x.jpg",
        "/abs/train/cat/x.jpg",
        "test/cat/../../x.jpg",
        "notes.txt",
        "train/cat/0001.png",
        "train/cat/sub/0002.jpg",
        "validation/cat/0000.jpg",
    ],
)
def test_zip_with_unexpected_entry_is_rejected(tmp_path, entry):
    path = _cifar_zip(tmp_path / "d" / "cifar10_jpeg.zip", extra=[entry])
    with pytest.raises(ValueError) as info:
        sources.decode_jpeg_zip(path, "train")
    message = str(info.value)
    assert path in message and repr(entry) in message
    # The same through the loader (and before any decoding: num_examples).
    source = sources.resolve("cifar10", str(tmp_path / "d"))
    with pytest.raises(ValueError, match="CIFAR-10 zip"):
        source.num_examples("test")
    with pytest.raises(ValueError, match="CIFAR-10 zip"):
        data.load("cifar10", "test", data_dir=str(tmp_path / "d"))
    assert _cache_files() == []


def test_zip_with_missing_class_is_rejected(tmp_path):
    path = _cifar_zip(tmp_path / "cifar10_jpeg.zip", skip=["train/truck/0000.jpg"])
    with pytest.raises(ValueError) as info:
        sources.decode_jpeg_zip(path, "train")
    assert path in str(info.value) and "'train/truck/'" in str(info.value)
    x, y, _ = sources.decode_jpeg_zip(path, "test")  # the test split is complete
    assert y.tolist() == list(range(10))


def test_zip_labels_follow_the_cifar10_class_list(tmp_path):
    path = _cifar_zip(tmp_path / "cifar10_jpeg.zip")
    x, y, names = sources.decode_jpeg_zip(path, "train")
    assert y.tolist() == list(range(10))
    assert [n.split("/")[1] for n in names] == list(CIFAR10)
    np.testing.assert_allclose(x.reshape(10, -1).mean(axis=1), 20 * np.arange(10), atol=2)


def test_zip_explicit_class_names(tmp_path):
    path = _cifar_zip(tmp_path / "d" / "cifar10_jpeg.zip", classes=("cat", "dog"))
    with pytest.raises(ValueError, match="has no images in 'train/airplane/'"):
        sources.decode_jpeg_zip(path, "train")  # CIFAR-10's classes unless told otherwise
    # Labels follow the given order (dog = 0 here), not the folders' order.
    x, y, names = sources.decode_jpeg_zip(path, "train", class_names=["dog", "cat"])
    assert names == ["train/dog/0000.jpg", "train/cat/0000.jpg"] and y.tolist() == [0, 1]
    images, labels = data.load(
        "cifar10",
        "test",
        data_dir=str(tmp_path / "d"),
        class_names=["dog", "cat"],
        as_numpy=True,
        normalize=False,
    )
    assert labels.tolist() == [0, 1] and abs(images[0].mean() * 255 - 20) < 3
    with pytest.raises(ValueError, match="class_names"):
        sources.decode_jpeg_zip(path, "train", class_names=["cat", "cat"])
    with pytest.raises(ValueError, match="class_names"):
        sources.decode_jpeg_zip(path, "train", class_names=["..", "cat"])
    with pytest.raises(TypeError, match="class_names"):
        sources.decode_jpeg_zip(path, "train", class_names="cat")
    mnist = _tiny_mnist(str(tmp_path))
    with pytest.raises(ValueError, match="class_names applies to the CIFAR-10 JPEG zip"):
        data.load("mnist", data_dir=mnist, class_names=["a"])


def test_corrupt_jpeg_names_zip_and_member(tmp_path):
    member = "train/cat/0000.jpg"
    path = _cifar_zip(tmp_path / "d" / "cifar10_jpeg.zip", corrupt=member)
    with pytest.raises(ValueError) as info:
        sources.decode_jpeg_zip(path, "train")
    assert path in str(info.value) and repr(member) in str(info.value)
    with pytest.raises(ValueError, match="Corrupt JPEG 'train/cat/0000.jpg'"):
        data.load("cifar10", "train", data_dir=str(tmp_path / "d"))
    assert _cache_files() == []  # nothing cached
    with open(tmp_path / "d" / "cifar10_jpeg.zip", "r+b") as f:
        f.truncate(500)  # the zip itself truncated
    with pytest.raises(ValueError, match="Not a valid zip file.*cifar10_jpeg.zip"):
        sources.decode_jpeg_zip(path, "train")


def test_half_written_cache_is_detected_and_rebuilt(tmp_path):
    _cifar_zip(tmp_path / "d" / "cifar10_jpeg.zip")
    source = sources.resolve("cifar10", str(tmp_path / "d"))
    x, y = source.arrays("train")
    cache = os.environ["KERASCNN_CACHE_DIR"]
    (x_file,) = [f for f in _cache_files() if f.endswith("_train_x.npy")]
    x_path = os.path.join(cache, x_file)
    size = os.path.getsize(x_path)
    with open(x_path, "r+b") as f:
        f.truncate(size // 2)  # a half-written cache file
    stale = f"{x_path}.999999999.tmp"  # left by a process that no longer exists
    with open(stale, "wb") as f:
        f.write(b"partial")
    with pytest.warns(UserWarning, match="unreadable cache"):
        x2, y2 = source.arrays("train")
    np.testing.assert_array_equal(x, x2)
    np.testing.assert_array_equal(y, y2)
    assert os.path.getsize(x_path) == size and not os.path.exists(stale)
    assert not any(f.endswith(".tmp") for f in _cache_files())
    x3, _ = source.arrays("train")  # read back from the rebuilt cache
    np.testing.assert_array_equal(x, x3)


@pytest.mark.parametrize("damage", ["truncated", "corrupt", "short_data"])
def test_bad_idx_gz_names_the_file(tmp_path, damage):
    folder = _tiny_mnist(str(tmp_path))
    path = os.path.join(folder, "train-images-idx3-ubyte.gz")
    with open(path, "rb") as f:
        raw = bytearray(f.read())
    if damage == "truncated":
        raw = raw[: len(raw) // 2]
    elif damage == "corrupt":  # a complete gzip stream whose data is damaged
        raw[len(raw) // 2] ^= 0xFF
    else:  # a valid gzip stream holding fewer records than its header says
        _write_idx(path, np.zeros((40, 28, 28)))
        with gzip.open(path, "rb") as f:
            raw = gzip.compress(f.read()[:-784])
    with open(path, "wb") as f:
        f.write(raw)
    with pytest.raises(ValueError, match="(Truncated|corrupt).*train-images-idx3-ubyte.gz"):
        data.load("mnist", data_dir=folder, limit=8)
    assert _cache_files() == []


def test_truncated_idx_gz_leaves_no_tfds_extraction(tmp_path):
    """source="tfds" checks the idx files before tfds extracts anything."""
    folder = _tiny_mnist(str(tmp_path), truncate="train-images-idx3-ubyte.gz")
    with pytest.raises(ValueError, match=f"Truncated.*{os.path.join(folder, 'train-images')}"):
        sources.resolve("mnist", folder, source="tfds")
    assert not os.path.exists(os.path.join(os.environ["KERASCNN_CACHE_DIR"], "tfds"))


def test_failed_tfds_preparation_removes_what_it_wrote(tmp_path, capsys):
    """Intact idx files that are not MNIST's originals: tfds' checksums fail."""
    pytest.importorskip("tensorflow_datasets")
    folder = _tiny_mnist(str(tmp_path))
    with pytest.raises(ValueError, match="Preparing 'mnist' with tensorflow-datasets.*failed"):
        sources.resolve("mnist", folder, source="tfds_manual")
    cache = os.environ["KERASCNN_CACHE_DIR"]
    assert not os.path.exists(os.path.join(cache, "tfds"))
    printed = capsys.readouterr().out
    assert "Downloading" not in printed and "nothing is downloaded" in printed


def test_limit_on_idx_files_does_not_touch_tfds(tmp_path, monkeypatch):
    def no_tfds(*args, **kwargs):
        raise AssertionError("tfds used")

    monkeypatch.setattr(sources, "_import_tfds", no_tfds)
    monkeypatch.setattr(sources, "_prepare_tfds", no_tfds)
    folder = _tiny_mnist(str(tmp_path))
    source = sources.resolve("mnist", str(tmp_path))  # "auto": the idx files, read directly
    assert source.kind == "idx" and source.num_examples("train") == 40
    x, y = data.load("mnist", data_dir=str(tmp_path), limit=8, as_numpy=True, shuffle=False)
    assert x.shape == (8, 28, 28, 1) and y.tolist() == list(range(8))
    assert sources.resolve("mnist", folder).kind == "idx"
    if DATA_DIR and os.path.isdir(os.path.join(DATA_DIR, "mnist")):  # the real files, cold cache
        assert sources.resolve("mnist", DATA_DIR).kind == "idx"
    assert _cache_files() == []


def _cli(tmp_path, *argv):
    env = dict(
        os.environ,
        TF_CPP_MIN_LOG_LEVEL="3",
        TF_ENABLE_ONEDNN_OPTS="0",
        MPLBACKEND="Agg",
        PYTHONPATH=os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
    )
    command = [sys.executable, "-m", "kerascnn", *argv, "--output-dir", str(tmp_path / "out")]
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)


@pytest.mark.parametrize("case", ["trunc-idx", "corrupt-jpeg"])
def test_cli_bad_data_one_line_exit_2(tmp_path, case):
    root = tmp_path / "data"
    if case == "trunc-idx":
        bad = _tiny_mnist(str(root), truncate="train-images-idx3-ubyte.gz")
        bad = os.path.join(bad, "train-images-idx3-ubyte.gz")
        args = ["--dataset", "mnist", "--data-source", "idx"]
    else:
        bad = _cifar_zip(root / "cifar10_jpeg.zip", corrupt="train/dog/0000.jpg")
        args = ["--dataset", "cifar10"]
    proc = _cli(tmp_path, "train", *args, "--data-dir", str(root), "--epochs", "1", "--limit", "8")
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr
    assert lines[0].startswith("kerascnn train: error:") and bad in lines[0]
    if case == "corrupt-jpeg":
        assert "'train/dog/0000.jpg'" in lines[0]
    assert _cache_files() == []


def test_labels_out_of_range_are_rejected(tmp_path):
    folder = _tiny_mnist(str(tmp_path))
    labels_path = os.path.join(folder, "t10k-labels-idx1-ubyte.gz")
    _write_idx(labels_path, np.full(20, 12))
    with pytest.raises(ValueError, match="t10k-labels-idx1-ubyte.gz.*label 12 is out of range"):
        data.load("mnist", "test", data_dir=folder)
    npz = tmp_path / "mnist.npz"
    x = np.zeros((4, 28, 28), np.uint8)
    np.savez(npz, x_train=x, y_train=[0, 1, 2, 10], x_test=x, y_test=[0.0, 1.0, 2.5, 3.0])
    with pytest.raises(ValueError, match="mnist.npz.*train labels must be in \\[0, 10\\)"):
        data.load("mnist", "train", data_dir=str(npz))
    with pytest.raises(ValueError, match="mnist.npz.*test labels must be integers"):
        data.load("mnist", "test", data_dir=str(npz))
