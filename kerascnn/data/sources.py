"""Where the datasets come from: the catalog, the offline readers and the search.

`resolve(name, ...)` looks for a dataset in this order (the first hit wins):

1. ``tfds``: a tensorflow-datasets data directory where the dataset is already
   prepared (``<dir>/<tfds name>/<version>/dataset_info.json``), in every data
   directory and in ``<cache dir>/tfds``.
2. ``tfds_manual``: the original archives in a folder, used as tfds'
   ``manual_dir``; the dataset is prepared once into ``<cache dir>/tfds``
   (MNIST: about 20 s on 2 CPU cores) and read from there afterwards (so by
   step 1). For MNIST and Fashion-MNIST the archives are the four
   ``*-idx?-ubyte.gz`` files. Each dataset extracts into its own
   ``<cache dir>/tfds/downloads/<tfds name>`` (the two share file names).
3. ``idx``: the same four idx files, read directly with numpy (original order).
4. ``jpeg_zip``: ``cifar10_jpeg.zip`` (``train/<class>/NNNN.jpg``,
   ``test/<class>/NNNN.jpg``), CIFAR-10 only. Class index = position of the
   class folder in sorted order (airplane, automobile, bird, cat, deer, dog,
   frog, horse, ship, truck: also CIFAR-10's own label order); within a class,
   files in sorted name order. Decoded once with PIL (identical to
   ``tf.io.decode_jpeg(..., dct_method="INTEGER_ACCURATE")``) and cached as
   ``.npy`` files under the cache dir.
5. ``npz``: an ``.npz`` with ``x_train, y_train, x_test, y_test`` (images
   ``(N, H, W)`` or ``(N, H, W, C)`` uint8, labels ``(N,)`` or ``(N, 1)``),
   named ``<dataset>.npz`` (keras.datasets' ``mnist.npz`` works), or the
   ``data_dir`` itself when it is a path to an ``.npz`` file.
6. ``download``: only with ``download=True``: ``tfds`` downloads and prepares
   into ``<cache dir>/tfds`` (needs internet; off by default because the
   development machines are offline).

Data directories: ``data_dir`` (a path or a list of paths), else the
``KERASCNN_DATA_DIR`` environment variable (``os.pathsep``-separated). In
each one the dataset's own subfolder (``mnist/``, ``fashion_mnist/``,
``cifar10/``...) is searched first, then the directory itself.
The cache dir is ``cache_dir``, else ``KERASCNN_CACHE_DIR``, else
``~/.cache/kerascnn`` (never inside the repository).

The special name ``"embedded"`` is the Fashion-MNIST subset shipped in the
package (`EMBEDDED_PATH`), always available.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import io
import os
import zipfile

import numpy as np

#: The subset of Fashion-MNIST shipped with the package.
EMBEDDED_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fashion_mnist_small.npz")

#: Source kinds, in search order.
SOURCE_KINDS = ("tfds", "tfds_manual", "idx", "jpeg_zip", "npz", "download")

_IDX_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
SPLITS = ("train", "test")


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
    """Catalog entry of a dataset.

    `mean` / `std` are per-channel statistics of the training images scaled to
    [0, 1]; `load(..., normalize=True)` computes `(x / 255 - mean) / std`.
    `pad` / `flip` describe `augment=True` (zero-pad `pad` pixels, random crop
    back to size, random horizontal flip when `flip`).
    """

    name: str
    num_classes: int
    shape: tuple
    mean: tuple
    std: tuple
    tfds_name: str | None
    folders: tuple
    manual_files: tuple = ()
    pad: int = 4
    flip: bool = True
    class_names: tuple = ()
    resize: bool = False

    @property
    def kinds(self):
        kinds = ["tfds", "tfds_manual"] if self.tfds_name else []
        if self.name in ("mnist", "fashion_mnist"):
            kinds.append("idx")
        if self.name == "cifar10":
            kinds.append("jpeg_zip")
        kinds.append("npz")
        return tuple(kinds)


_FASHION_CLASSES = (
    "t-shirt/top", "trouser", "pullover", "dress", "coat",
    "sandal", "shirt", "sneaker", "bag", "ankle boot",
)  # fmt: skip
_CIFAR10_CLASSES = (
    "airplane", "automobile", "bird", "cat", "deer",
    "dog", "frog", "horse", "ship", "truck",
)  # fmt: skip

# Statistics: MNIST / Fashion-MNIST computed from the original training files
# (checked in tests/test_data.py); CIFAR-10/100 and SVHN are the usual values
# computed on the original training sets; Imagenette uses ImageNet's.
CATALOG = {
    "mnist": DatasetInfo(
        "mnist", 10, (28, 28, 1), (0.1307,), (0.3081,), "mnist",
        ("mnist",), tuple(f for pair in _IDX_FILES.values() for f in pair),
        pad=2, flip=False, class_names=tuple(str(i) for i in range(10)),
    ),
    "fashion_mnist": DatasetInfo(
        "fashion_mnist", 10, (28, 28, 1), (0.2860,), (0.3530,), "fashion_mnist",
        ("fashion_mnist", "fashion-mnist", "fashionmnist"),
        tuple(f for pair in _IDX_FILES.values() for f in pair),
        pad=2, flip=False, class_names=_FASHION_CLASSES,
    ),
    "cifar10": DatasetInfo(
        "cifar10", 10, (32, 32, 3), (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616),
        "cifar10", ("cifar10", "cifar-10", "cifar_10"), ("cifar-10-binary.tar.gz",),
        class_names=_CIFAR10_CLASSES,
    ),
    "cifar100": DatasetInfo(
        "cifar100", 100, (32, 32, 3), (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762),
        "cifar100", ("cifar100", "cifar-100", "cifar_100"), ("cifar-100-binary.tar.gz",),
    ),
    "svhn": DatasetInfo(
        "svhn", 10, (32, 32, 3), (0.4377, 0.4438, 0.4728), (0.1980, 0.2010, 0.1970),
        "svhn_cropped", ("svhn", "svhn_cropped"),
        ("train_32x32.mat", "test_32x32.mat", "extra_32x32.mat"), flip=False,
    ),
    "imagenette": DatasetInfo(
        "imagenette", 10, (128, 128, 3), (0.485, 0.456, 0.406), (0.229, 0.224, 0.225),
        "imagenette/160px-v2", ("imagenette", "imagenette2-160"), ("imagenette2-160.tgz",),
        pad=16, resize=True,
    ),
    "embedded": DatasetInfo(
        "embedded", 10, (28, 28, 1), (0.2860,), (0.3530,), None, (),
        pad=2, flip=False, class_names=_FASHION_CLASSES,
    ),
}  # fmt: skip

_ALIASES = {
    "fashion-mnist": "fashion_mnist",
    "fashionmnist": "fashion_mnist",
    "cifar-10": "cifar10",
    "cifar-100": "cifar100",
    "svhn_cropped": "svhn",
    "fashion_mnist_small": "embedded",
}


def canonical_name(name):
    """Returns the catalog name of `name`, or raises a ValueError listing them."""
    if not isinstance(name, str):
        raise TypeError(f"Dataset name must be a string. Received: name={name!r}")
    key = name.strip().lower()
    key = _ALIASES.get(key, key.replace("-", "_"))
    if key not in CATALOG:
        raise ValueError(
            f"Unknown dataset. Expected one of {sorted(CATALOG)}. Received: name={name!r}"
        )
    return key


def check_split(split):
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}. Received: split={split!r}")
    return split


# --------------------------------------------------------------------------
# Directories.
# --------------------------------------------------------------------------
def cache_dir(path=None):
    """The cache directory: `path`, `$KERASCNN_CACHE_DIR` or `~/.cache/kerascnn`."""
    path = path or os.environ.get("KERASCNN_CACHE_DIR") or os.path.join("~", ".cache", "kerascnn")
    return os.path.abspath(os.path.expanduser(path))


def data_dirs(data_dir=None):
    """The data directories searched: `data_dir` or `$KERASCNN_DATA_DIR`.

    Raises a ValueError when an explicitly given `data_dir` does not exist or
    cannot be read (a typo should not silently fall back to other data).
    """
    if data_dir is None:
        env = os.environ.get("KERASCNN_DATA_DIR", "")
        return [os.path.abspath(os.path.expanduser(p)) for p in env.split(os.pathsep) if p]
    dirs = [data_dir] if isinstance(data_dir, (str, os.PathLike)) else list(data_dir)
    result = []
    for d in dirs:
        if not isinstance(d, (str, os.PathLike)):
            raise TypeError(f"data_dir must be a path or a list of paths. Received: data_dir={d!r}")
        path = os.path.abspath(os.path.expanduser(os.fspath(d)))
        if not os.path.exists(path):
            raise ValueError(f"data_dir does not exist. Received: data_dir={os.fspath(d)!r}")
        if not os.access(path, os.R_OK) or (os.path.isdir(path) and not os.access(path, os.X_OK)):
            raise ValueError(f"data_dir is not readable. Received: data_dir={os.fspath(d)!r}")
        result.append(path)
    return result


def _candidate_dirs(info, bases, looked=None):
    """Existing dataset subfolders first, then the base itself (unless it is
    another dataset's folder, e.g. `.../mnist` when looking for Fashion-MNIST)."""
    others = {f for n, i in CATALOG.items() if n != info.name for f in i.folders} - set(
        info.folders
    )
    candidates = []
    for base in bases:
        if not os.path.isdir(base):
            continue
        found = [
            os.path.join(base, f) for f in info.folders if os.path.isdir(os.path.join(base, f))
        ]
        if not found and looked is not None and info.folders:
            looked.append(f"subfolders {'/, '.join(info.folders)}/ in {base} (absent)")
        candidates.extend(found)
        if os.path.basename(base.rstrip(os.sep)).lower() not in others:
            candidates.append(base)
    return candidates


# --------------------------------------------------------------------------
# Readers.
# --------------------------------------------------------------------------
def read_idx(path):
    """Reads one idx file (optionally gzipped) into a numpy array.

    The header is 2 zero bytes, a type byte (0x08: uint8), the number of
    dimensions and one big-endian int32 per dimension (16 bytes for images,
    8 for labels).
    """
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        data = f.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise ValueError(f"Not a uint8 idx file. Received: path={path!r}")
    ndim = data[3]
    dims = np.frombuffer(data, ">i4", count=ndim, offset=4)
    array = np.frombuffer(data, np.uint8, offset=4 + 4 * ndim)
    if array.size != int(np.prod(dims)):
        raise ValueError(f"Truncated idx file. Received: path={path!r}")
    return array.reshape(tuple(int(d) for d in dims))


def _idx_paths(folder, split):
    paths = []
    for name in _IDX_FILES[split]:
        path = os.path.join(folder, name)
        if not os.path.exists(path) and os.path.exists(path[:-3]):
            path = path[:-3]  # un-gzipped copy
        paths.append(path)
    return paths


def read_idx_split(folder, name, split):
    """Returns `(images (N, 28, 28, 1) uint8, labels (N,) uint8)` from idx files."""
    del name
    images_path, labels_path = _idx_paths(folder, check_split(split))
    x = read_idx(images_path)
    y = read_idx(labels_path)
    if x.ndim != 3 or y.ndim != 1 or len(x) != len(y):
        raise ValueError(
            f"Inconsistent idx files in {folder!r}: {x.shape} images, {y.shape} labels"
        )
    return x[..., None], y


def read_npz_split(path, split):
    """Returns `(images, labels)` of `split` from an `.npz` with `x_<split>, y_<split>`."""
    with np.load(path, allow_pickle=False) as data:
        keys = (f"x_{split}", f"y_{split}")
        missing = [k for k in keys if k not in data.files]
        if missing:
            raise ValueError(
                f"{path!r} lacks {missing}; an .npz dataset needs x_train, y_train, "
                f"x_test, y_test. Received keys: {data.files}"
            )
        x, y = data[keys[0]], data[keys[1]]
    if x.ndim == 3:
        x = x[..., None]
    y = np.asarray(y).reshape(-1)
    if x.ndim != 4 or len(x) != len(y):
        raise ValueError(
            f"{path!r}: expected images (N, H, W[, C]) and labels (N,). "
            f"Received: x_{split}.shape={x.shape}, y_{split}.shape={y.shape}"
        )
    if x.dtype != np.uint8:
        if x.min() < 0 or x.max() > 255:
            raise ValueError(f"{path!r}: x_{split} must hold pixel values in [0, 255].")
        x = x.astype(np.uint8)
    return x, y


def decode_jpeg_zip(path, split, members=None):
    """Decodes the CIFAR-10 JPEGs of `split` from the zip with PIL.

    Returns `(images (N, 32, 32, 3) uint8, labels (N,) int64, names)`, ordered
    by sorted class folder (the label) then sorted file name.
    """
    from PIL import Image

    with zipfile.ZipFile(path) as archive:
        names = [n for n in archive.namelist() if n.startswith(f"{split}/") and n.endswith(".jpg")]
        classes = sorted({n.split("/")[1] for n in names})
        if members is not None:
            names = [n for n in names if n in set(members)]
        names.sort(key=lambda n: (classes.index(n.split("/")[1]), n))
        images = np.empty((len(names), 32, 32, 3), np.uint8)
        for i, n in enumerate(names):
            with Image.open(io.BytesIO(archive.read(n))) as image:
                images[i] = np.asarray(image.convert("RGB"))
        labels = np.array([classes.index(n.split("/")[1]) for n in names], np.int64)
    return images, labels, names


def _jpeg_zip_cached(path, split, cache):
    stat = os.stat(path)
    key = hashlib.sha256(f"{os.path.abspath(path)}|{stat.st_size}|{stat.st_mtime_ns}".encode())
    stem = os.path.join(cache, f"cifar10_jpeg_{key.hexdigest()[:16]}_{split}")
    x_path, y_path = stem + "_x.npy", stem + "_y.npy"
    if os.path.exists(x_path) and os.path.exists(y_path):
        return np.load(x_path), np.load(y_path)
    x, y, _ = decode_jpeg_zip(path, split)
    os.makedirs(cache, exist_ok=True)
    for target, array in ((x_path, x), (y_path, y)):
        tmp = f"{target}.{os.getpid()}.tmp.npy"
        try:
            np.save(tmp, array)
            os.replace(tmp, target)
        except OSError:  # a read-only cache only costs the decoding time
            if os.path.exists(tmp):
                os.remove(tmp)
    return x, y


# --------------------------------------------------------------------------
# Sources.
# --------------------------------------------------------------------------
@dataclasses.dataclass
class Source:
    """A located dataset: `kind` (one of `SOURCE_KINDS` or "embedded") and `location`."""

    name: str
    kind: str
    location: str
    manual_dir: str | None = None
    cache: str | None = None

    def describe(self):
        return f"{self.kind}: {self.location}"

    @property
    def in_memory(self):
        return self.kind in ("idx", "jpeg_zip", "npz", "embedded")

    def arrays(self, split):
        """Returns `(images uint8 (N, H, W, C), labels int64 (N,))` of `split`."""
        check_split(split)
        if self.kind == "idx":
            x, y = read_idx_split(self.location, self.name, split)
        elif self.kind in ("npz", "embedded"):
            x, y = read_npz_split(self.location, split)
        elif self.kind == "jpeg_zip":
            x, y = _jpeg_zip_cached(self.location, split, self.cache)
        else:
            batches = list(self.tfds_dataset(split).batch(4096).as_numpy_iterator())
            x = np.concatenate([b[0] for b in batches])
            y = np.concatenate([b[1] for b in batches])
        return x, np.asarray(y, np.int64)

    def num_examples(self, split):
        """Number of examples of `split` (without decoding the images)."""
        check_split(split)
        if self.kind == "idx":
            path = _idx_paths(self.location, split)[1]
            opener = gzip.open if path.endswith(".gz") else open
            with opener(path, "rb") as f:
                return int(np.frombuffer(f.read(8), ">i4")[1])
        if self.kind in ("npz", "embedded"):
            with np.load(self.location) as data:
                return len(data[f"y_{split}"])
        if self.kind == "jpeg_zip":
            with zipfile.ZipFile(self.location) as archive:
                return sum(
                    n.startswith(f"{split}/") and n.endswith(".jpg") for n in archive.namelist()
                )
        tfds = _import_tfds()
        builder = tfds.builder(CATALOG[self.name].tfds_name, data_dir=self.location)
        return int(builder.info.splits[split].num_examples)

    def tfds_dataset(self, split):
        """The tfds dataset of `split` as `(uint8 image, int64 label)` pairs, file order."""
        tfds = _import_tfds()
        info = CATALOG[self.name]
        builder = tfds.builder(info.tfds_name, data_dir=self.location)
        return builder.as_dataset(split=split, as_supervised=True, shuffle_files=False)


def _import_tfds():
    import tensorflow_datasets as tfds

    tfds.disable_progress_bar()
    return tfds


def _tfds_prepared(info, data_dir):
    """True when `data_dir` holds a prepared tfds copy of `info` (no tfds import
    unless the dataset folder exists)."""
    root = os.path.join(data_dir, info.tfds_name)
    if not os.path.isdir(root):
        return False
    try:
        tfds = _import_tfds()
        builder = tfds.builder(info.tfds_name, data_dir=data_dir)
    except Exception:  # tfds missing or broken: try the other sources
        return False
    return os.path.exists(os.path.join(builder.data_dir, "dataset_info.json"))


def _prepare_tfds(info, manual_dir, data_dir, download):
    """Prepares `info`'s tfds dataset into `data_dir` (from `manual_dir` or a download).

    Each dataset gets its own tfds download directory: tfds names the files it
    extracts from a manual_dir after the archive's file name alone, so in a
    shared `downloads/` folder MNIST's `train-images-idx3-ubyte.gz` would be
    read back from Fashion-MNIST's extraction of its same-named file (or the
    other way round), and the prepared copy would silently hold the other
    dataset.
    """
    tfds = _import_tfds()
    builder = tfds.builder(info.tfds_name, data_dir=data_dir)
    if manual_dir is None and not download:
        raise ValueError("Preparing a tfds dataset needs a manual_dir or download=True.")
    config = tfds.download.DownloadConfig(manual_dir=manual_dir) if manual_dir else None
    download_dir = os.path.join(data_dir, "downloads", info.tfds_name.replace("/", "_"))
    builder.download_and_prepare(download_dir=download_dir, download_config=config)
    return builder


def resolve(name, data_dir=None, source="auto", download=False, cache_dir_path=None):
    """Finds dataset `name` (see the module docstring for the order).

    Args:
        name: a dataset name (`CATALOG`).
        data_dir: a path, list of paths or an `.npz` path. Defaults to
            `$KERASCNN_DATA_DIR`.
        source: `"auto"` (the documented order) or one kind of `SOURCE_KINDS`
            to use only that one.
        download: allow tfds to download (needs internet). Defaults to False.
        cache_dir_path: the cache dir. Defaults to `cache_dir()`.

    Returns:
        A `Source`.

    Raises:
        FileNotFoundError: nothing found; the message lists every place looked
            at and how to provide the data.
    """
    name = canonical_name(name)
    info = CATALOG[name]
    if name == "embedded":
        if data_dir is not None and not os.fspath(data_dir).endswith(".npz"):
            data_dirs(data_dir)  # a bad data_dir is an error even when unused
        return Source(name, "embedded", EMBEDDED_PATH)
    if source != "auto" and source not in SOURCE_KINDS:
        raise ValueError(
            f"source must be 'auto' or one of {SOURCE_KINDS}. Received: source={source!r}"
        )
    if source not in ("auto", "download") and source not in info.kinds:
        raise ValueError(
            f"Dataset {name!r} cannot be read from source {source!r}; its sources are "
            f"{info.kinds}. Received: source={source!r}"
        )
    cache = cache_dir(cache_dir_path)
    tfds_cache = os.path.join(cache, "tfds")
    npz_file = None
    if isinstance(data_dir, (str, os.PathLike)) and os.fspath(data_dir).endswith(".npz"):
        npz_file = os.path.abspath(os.path.expanduser(os.fspath(data_dir)))
        if not os.path.isfile(npz_file):
            raise ValueError(f"data_dir does not exist. Received: data_dir={os.fspath(data_dir)!r}")
        bases = []
    else:
        bases = data_dirs(data_dir)
    looked = []
    candidates = _candidate_dirs(info, bases, looked)

    def wanted(kind):
        return source == "auto" or source == kind

    if npz_file and wanted("npz"):
        return Source(name, "npz", npz_file)
    # 1. prepared tfds data directories.
    if info.tfds_name and wanted("tfds"):
        for d in bases + [tfds_cache]:
            if _tfds_prepared(info, d):
                return Source(name, "tfds", d)
            looked.append(f"tfds data dir {os.path.join(d, info.tfds_name)} (not prepared)")
    # 2. the original archives as tfds' manual_dir.
    if info.tfds_name and wanted("tfds_manual"):
        for d in candidates:
            paths = [os.path.join(d, f) for f in info.manual_files]
            files = [p for p in paths if os.path.exists(p)]
            if len(files) == len(paths) or (name == "svhn" and len(files) >= 2):
                try:
                    _prepare_tfds(info, d, tfds_cache, download=False)
                except Exception as error:  # tfds missing, or the archives rejected
                    reason = str(error).strip().splitlines()[0][:200] if str(error) else ""
                    looked.append(f"tfds manual_dir {d} (preparing failed: {reason})")
                    continue
                return Source(name, "tfds", tfds_cache, manual_dir=d)
            looked.append(f"tfds manual_dir {d} (needs {', '.join(info.manual_files)})")
    # 3. idx files read directly.
    if "idx" in info.kinds and wanted("idx"):
        for d in candidates:
            if all(os.path.exists(p) for s in SPLITS for p in _idx_paths(d, s)):
                return Source(name, "idx", d)
            looked.append(f"idx files in {d} (needs {', '.join(info.manual_files)})")
    # 4. the CIFAR-10 JPEG zip.
    if "jpeg_zip" in info.kinds and wanted("jpeg_zip"):
        for d in candidates:
            path = os.path.join(d, "cifar10_jpeg.zip")
            if os.path.isfile(path):
                return Source(name, "jpeg_zip", path, cache=cache)
            looked.append(f"JPEG zip {path}")
    # 5. an .npz.
    if wanted("npz"):
        for d in candidates:
            for stem in dict.fromkeys((name, info.folders[0])):
                path = os.path.join(d, stem + ".npz")
                if os.path.isfile(path):
                    return Source(name, "npz", path)
                looked.append(f"npz {path}")
    # 6. download, on request only.
    if info.tfds_name and (download or source == "download"):
        if not download:
            raise ValueError("source='download' needs download=True.")
        _prepare_tfds(info, None, tfds_cache, download=True)
        return Source(name, "tfds", tfds_cache)
    if not bases:
        looked.insert(0, "no data directory given (data_dir=None and KERASCNN_DATA_DIR is unset)")
    how = (
        "set KERASCNN_DATA_DIR (or pass data_dir= / --data-dir) to a folder holding "
        f"a '{info.folders[0]}/' subfolder or the files themselves: "
        + ("the four original idx .gz files, " if "idx" in info.kinds else "")
        + ("cifar10_jpeg.zip, " if "jpeg_zip" in info.kinds else "")
        + (f"a prepared tfds data dir ('{info.tfds_name}'), " if info.tfds_name else "")
        + (f"tfds' manual archives ({', '.join(info.manual_files)}), " if info.manual_files else "")
        + f"or {name}.npz with x_train, y_train, x_test, y_test (uint8 images, int labels); "
        "with internet, pass download=True; or use the shipped dataset 'embedded'"
    )
    raise FileNotFoundError(
        f"Dataset {name!r} not found (source={source!r}). Looked at: {'; '.join(looked)}. "
        f"To provide it: {how}."
    )
