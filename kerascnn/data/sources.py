"""Where the datasets come from: the catalog, the offline readers and the search.

`resolve(name, ...)` looks for a dataset in this order (the first hit wins):

1. ``tfds``: a tensorflow-datasets data directory where the dataset is already
   prepared (``<dir>/<tfds name>/<version>/dataset_info.json``), in every data
   directory and in ``<cache dir>/tfds``. (Checked without importing tfds
   when no ``dataset_info.json`` is there.)
2. ``idx``: MNIST and Fashion-MNIST's four original ``*-idx?-ubyte.gz`` files,
   read directly with numpy (original order; about a second, so
   ``limit=1000`` on a cold cache starts in seconds).
3. ``tfds_manual``: the original archives in a folder, used as tfds'
   ``manual_dir``; the dataset is prepared once into ``<cache dir>/tfds``
   (MNIST: about 20 s on 2 CPU cores) and read from there afterwards (so by
   step 1). For MNIST and Fashion-MNIST (whose archives are the idx files of
   step 2) this happens only when asked for (``source="tfds"`` or
   ``"tfds_manual"``). The archives are checked first (a truncated idx file
   is an error naming it); a failed preparation removes what it wrote; the
   extracted copies are removed after a successful one; nothing is
   downloaded and tfds' "Downloading and preparing" line is replaced by one
   saying so.
4. ``jpeg_zip``: ``cifar10_jpeg.zip`` (``train/<class>/NNNN.jpg``,
   ``test/<class>/NNNN.jpg``), CIFAR-10 only. The zip must hold exactly the
   ten CIFAR-10 class folders per split (another class list only when passed
   as ``class_names``): an entry with ``..`` or an absolute path, a stray
   folder or file, or a class without images is a ValueError naming the zip
   and the entry (a stray folder would otherwise shift every label). Class
   index = position in the class list (airplane, automobile, bird, cat, deer,
   dog, frog, horse, ship, truck: CIFAR-10's own label order); within a class,
   files in sorted name order; `arrays()` returns the examples interleaved
   by class (the first image of every class in class order, then the
   second, ...), so that ``limit=N`` keeps a class-balanced subset instead of
   the first class's images (the zip is sorted by class). Decoded once with PIL (identical to
   ``tf.io.decode_jpeg(..., dct_method="INTEGER_ACCURATE")``; a corrupt JPEG
   is a ValueError naming the zip and the member) and cached as ``.npy``
   files under the cache dir (written to a temporary file and renamed; a
   cache that cannot be read back is removed and rebuilt with a warning).
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
import shutil
import warnings
import zipfile
import zlib

import numpy as np

#: The subset of Fashion-MNIST shipped with the package.
EMBEDDED_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fashion_mnist_small.npz")

#: Source kinds, in search order.
SOURCE_KINDS = ("tfds", "idx", "tfds_manual", "jpeg_zip", "npz", "download")

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
        kinds = ["tfds"] if self.tfds_name else []
        if self.name in ("mnist", "fashion_mnist"):
            kinds.append("idx")
        if self.tfds_name:
            kinds.append("tfds_manual")
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
# (checked in tests/data/test_data.py); CIFAR-10/100 and SVHN are the usual values
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
_GZIP_ERRORS = (EOFError, zlib.error, gzip.BadGzipFile)


def _read_file(path, size=-1):
    """Reads `size` bytes (all by default) of a file, gunzipping `.gz` files.

    A truncated or corrupt gzip stream is a ValueError naming the file (not
    gzip's own EOFError / zlib.error, which name nothing).
    """
    opener = gzip.open if path.endswith(".gz") else open
    try:
        with opener(path, "rb") as f:
            return f.read(size)
    except _GZIP_ERRORS as error:
        raise ValueError(
            f"Truncated or corrupt gzip file {path!r} ({type(error).__name__}: {error}); "
            "replace it with an intact copy."
        ) from error


def _idx_header(data, path):
    """Checks an idx header; returns `(dims, header_size)`."""
    if len(data) < 4 or data[:3] != b"\0\0\x08" or not 1 <= data[3] <= 4:
        raise ValueError(f"Not a uint8 idx file (bad header). Received: path={path!r}")
    header_size = 4 + 4 * data[3]
    if len(data) < header_size:
        raise ValueError(f"Truncated idx file {path!r}: its header is incomplete.")
    dims = tuple(int(d) for d in np.frombuffer(data, ">i4", count=data[3], offset=4))
    return dims, header_size


def read_idx(path):
    """Reads one idx file (optionally gzipped) into a numpy array.

    The header is 2 zero bytes, a type byte (0x08: uint8), the number of
    dimensions and one big-endian int32 per dimension (16 bytes for images,
    8 for labels). A truncated, corrupt or oversized file is a ValueError
    naming it.
    """
    data = _read_file(path)
    dims, header_size = _idx_header(data, path)
    expected, found = int(np.prod(dims)), len(data) - header_size
    if found != expected:
        kind = "Truncated" if found < expected else "Corrupt"
        raise ValueError(
            f"{kind} idx file {path!r}: its header gives shape {dims} ({expected} bytes of "
            f"data), the file holds {found} bytes."
        )
    return np.frombuffer(data, np.uint8, offset=header_size).reshape(dims)


def _idx_paths(folder, split):
    paths = []
    for name in _IDX_FILES[split]:
        path = os.path.join(folder, name)
        if not os.path.exists(path) and os.path.exists(path[:-3]):
            path = path[:-3]  # un-gzipped copy
        paths.append(path)
    return paths


def read_idx_split(folder, name, split):
    """Returns `(images (N, 28, 28, 1) uint8, labels (N,) uint8)` from idx files.

    Raises a ValueError naming the file when one is truncated or corrupt,
    when images and labels disagree, or when a label is out of range.
    """
    images_path, labels_path = _idx_paths(folder, check_split(split))
    x = read_idx(images_path)
    y = read_idx(labels_path)
    if x.ndim != 3 or y.ndim != 1 or len(x) != len(y):
        raise ValueError(
            f"Inconsistent idx files in {folder!r}: {x.shape} images in {images_path!r}, "
            f"{y.shape} labels in {labels_path!r}"
        )
    num_classes = CATALOG[canonical_name(name)].num_classes
    if len(y) and int(y.max()) >= num_classes:
        raise ValueError(
            f"Corrupt idx labels file {labels_path!r}: label {int(y.max())} is out of "
            f"range for {num_classes} classes."
        )
    return x[..., None], y


def _idx_count(path):
    """The number of records of an idx file, from its header alone."""
    dims, _ = _idx_header(_read_file(path, 16), path)
    return dims[0]


def read_npz_split(path, split):
    """Returns `(images, labels)` of `split` from an `.npz` with `x_<split>, y_<split>`."""
    try:
        data = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:
        raise ValueError(f"Cannot read the .npz file {path!r}: {error}") from error
    with data:
        keys = (f"x_{split}", f"y_{split}")
        missing = [k for k in keys if k not in data.files]
        if missing:
            raise ValueError(
                f"{path!r} lacks {missing}; an .npz dataset needs x_train, y_train, "
                f"x_test, y_test. Received keys: {data.files}"
            )
        try:
            x, y = data[keys[0]], data[keys[1]]
        except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as error:
            raise ValueError(f"Truncated or corrupt .npz file {path!r}: {error}") from error
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


def check_class_names(class_names):
    """Returns `class_names` as a tuple (CIFAR-10's ten classes for None).

    Raises a TypeError / ValueError naming `class_names` unless it is a
    non-empty list of distinct folder names (no `/`, `\\`, `.` or `..`).
    """
    if class_names is None:
        return _CIFAR10_CLASSES
    if isinstance(class_names, str) or not isinstance(class_names, (list, tuple)):
        raise TypeError(
            "class_names must be a list of class folder names. "
            f"Received: class_names={class_names!r}"
        )
    names = tuple(class_names)
    bad = [
        n for n in names if not isinstance(n, str) or n in ("", ".", "..") or "/" in n or "\\" in n
    ]
    if not names or bad or len(set(names)) != len(names):
        raise ValueError(
            "class_names must be a non-empty list of distinct folder names (no '/', '\\\\', "
            f"'.' or '..'). Received: class_names={class_names!r}"
        )
    return names


def _unsafe(name):
    parts = name.replace("\\", "/").split("/")
    return name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":") or ".." in parts


def _expected_entry(parts, is_dir, classes):
    """`<split>/`, `<split>/<class>/` or `<split>/<class>/<file>.jpg`."""
    if not parts or parts[0] not in SPLITS:
        return False
    if len(parts) == 1 or (len(parts) == 2 and parts[1] in classes):
        return is_dir
    return (
        len(parts) == 3
        and parts[1] in classes
        and not is_dir
        and parts[2].endswith(".jpg")
        and len(parts[2]) > len(".jpg")
    )


def zip_members(path, names, split, class_names=None):
    """Checks every entry of a CIFAR-10 JPEG zip; returns the `.jpg` members of `split`.

    Allowed entries are `<split>/`, `<split>/<class>/` and
    `<split>/<class>/<file>.jpg` for the two splits and the classes of
    `class_names` (CIFAR-10's by default). Anything else, a `..` component, an
    absolute path, a duplicate, or a class of `split` without images is a
    ValueError naming the zip and the entry.
    """
    classes = check_class_names(class_names)
    allowed = set(classes)
    members, seen, found = [], set(), set()
    hint = (
        f"expected only train/<class>/<name>.jpg and test/<class>/<name>.jpg with the classes "
        f"{list(classes)}"
        + ("" if class_names is not None else " (pass class_names= for another list)")
    )
    for name in names:
        if _unsafe(name):
            raise ValueError(
                f"Unsafe entry in the CIFAR-10 zip {path!r}: {name!r} (absolute paths and '..' "
                "are rejected)."
            )
        if name in seen:
            raise ValueError(f"Duplicate entry in the CIFAR-10 zip {path!r}: {name!r}.")
        seen.add(name)
        parts = name.split("/")
        is_dir = parts[-1] == ""
        parts = parts[:-1] if is_dir else parts
        if not _expected_entry(parts, is_dir, allowed):
            raise ValueError(f"Unexpected entry in the CIFAR-10 zip {path!r}: {name!r}; {hint}.")
        if not is_dir and parts[0] == split:
            members.append(name)
            found.add(parts[1])
    missing = [f"{split}/{c}/" for c in classes if c not in found]
    if missing:
        raise ValueError(
            f"The CIFAR-10 zip {path!r} has no images in {missing[0]!r}"
            + (f" (nor in {missing[1:]})" if len(missing) > 1 else "")
            + f"; {hint}."
        )
    return members


def _open_zip(path):
    try:
        return zipfile.ZipFile(path)
    except (zipfile.BadZipFile, EOFError) as error:
        raise ValueError(
            f"Not a valid zip file (truncated or corrupt): {path!r} ({error})"
        ) from error


def _decode_member(archive, path, name):
    from PIL import Image

    try:
        with Image.open(io.BytesIO(archive.read(name))) as image:
            array = np.asarray(image.convert("RGB"))
    except Exception as error:  # PIL, zlib and zipfile raise many kinds
        raise ValueError(
            f"Corrupt JPEG {name!r} in the zip {path!r} ({type(error).__name__}: {error})."
        ) from error
    if array.shape != (32, 32, 3):
        raise ValueError(
            f"JPEG {name!r} in the zip {path!r} is {array.shape[1]}x{array.shape[0]}; "
            "CIFAR-10 images are 32x32."
        )
    return array


def decode_jpeg_zip(path, split, members=None, class_names=None):
    """Decodes the CIFAR-10 JPEGs of `split` from the zip with PIL.

    The zip's entries are checked first (`zip_members`): a stray folder, a
    `..` entry or a missing class is a ValueError naming the zip and the
    entry, and a corrupt JPEG one naming the zip and the member.

    Args:
        path: the zip.
        split: `"train"` or `"test"`.
        members: decode only these members. Defaults to None (all).
        class_names: the class folders, in label order. Defaults to None
            (CIFAR-10's ten classes).

    Returns:
        `(images (N, 32, 32, 3) uint8, labels (N,) int64, names)`, ordered by
        label then sorted file name.
    """
    classes = check_class_names(class_names)
    with _open_zip(path) as archive:
        names = zip_members(path, archive.namelist(), check_split(split), class_names)
        if members is not None:
            wanted = set(members)
            names = [n for n in names if n in wanted]
        index = {c: i for i, c in enumerate(classes)}
        names.sort(key=lambda n: (index[n.split("/")[1]], n))
        images = np.empty((len(names), 32, 32, 3), np.uint8)
        for i, n in enumerate(names):
            images[i] = _decode_member(archive, path, n)
        labels = np.array([index[n.split("/")[1]] for n in names], np.int64)
    return images, labels, names


def _remove_quietly(*paths):
    for path in paths:
        try:
            os.remove(path)
        except OSError:
            pass


def _pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, ValueError):
        return True
    return True


def _save_atomic(target, array):
    """Writes `array` to `target` (`.npy`) through a temporary file and a rename.

    Temporary files left by processes that no longer exist are removed. A
    cache that cannot be written (read-only) only costs the decoding time.
    """
    folder, base = os.path.split(target)
    try:
        os.makedirs(folder, exist_ok=True)
        for entry in os.listdir(folder):
            pid = entry[len(base) + 1 : -len(".tmp")] if entry.startswith(base + ".") else ""
            if entry.endswith(".tmp") and pid.isdigit() and not _pid_alive(int(pid)):
                _remove_quietly(os.path.join(folder, entry))
    except OSError:
        return
    tmp = f"{target}.{os.getpid()}.tmp"
    try:
        with open(tmp, "wb") as f:
            np.save(f, array)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except OSError:
        _remove_quietly(tmp)


def _load_cached(x_path, y_path, num_classes):
    """The cached `(x, y)`, or None when absent; a corrupt pair is removed (warning)."""
    if not (os.path.exists(x_path) and os.path.exists(y_path)):
        return None
    try:
        x = np.load(x_path, allow_pickle=False)
        y = np.load(y_path, allow_pickle=False)
        if x.dtype != np.uint8 or x.shape[1:] != (32, 32, 3) or y.shape != (len(x),):
            raise ValueError(f"unexpected arrays {x.dtype}{x.shape}, {y.dtype}{y.shape}")
        if len(y) and (y.min() < 0 or y.max() >= num_classes):
            raise ValueError(f"labels out of range [0, {num_classes})")
    except (OSError, ValueError, EOFError) as error:
        warnings.warn(
            f"Removing the unreadable cache {x_path!r} / {y_path!r} ({error}); "
            "decoding the zip again.",
            stacklevel=3,
        )
        _remove_quietly(x_path, y_path)
        return None
    return x, y


def interleave_classes(x, y):
    """`(x, y)` reordered round robin over the classes, stable within a class.

    The k-th example of every class comes before the (k+1)-th of any class,
    classes in label order, so any prefix is as class-balanced as it can be.

    Example:

    >>> interleave_classes(np.arange(5), np.array([0, 0, 0, 1, 1]))[1]
    array([0, 1, 0, 1, 0])
    """
    y = np.asarray(y)
    by_class = np.argsort(y, kind="stable")
    starts = np.searchsorted(y[by_class], y[by_class], side="left")
    rank = np.empty(len(y), np.int64)
    rank[by_class] = np.arange(len(y)) - starts
    order = np.lexsort((y, rank))
    return x[order], y[order]


def _jpeg_zip_cached(path, split, cache, class_names=None):
    classes = check_class_names(class_names)
    stat = os.stat(path)
    text = f"{os.path.abspath(path)}|{stat.st_size}|{stat.st_mtime_ns}"
    if class_names is not None:
        text += "|" + "/".join(classes)
    key = hashlib.sha256(text.encode())
    stem = os.path.join(cache, f"cifar10_jpeg_{key.hexdigest()[:16]}_{split}")
    x_path, y_path = stem + "_x.npy", stem + "_y.npy"
    cached = _load_cached(x_path, y_path, len(classes))
    if cached is not None:
        return cached
    x, y, _ = decode_jpeg_zip(path, split, class_names=class_names)
    _save_atomic(x_path, x)
    _save_atomic(y_path, y)
    return x, y


def _checked_labels(y, num_classes, what):
    """`y` as int64, or a ValueError unless every label is an integer in range."""
    y = np.asarray(y)
    if not y.size:
        return y.astype(np.int64)
    numeric = np.issubdtype(y.dtype, np.integer) or np.issubdtype(y.dtype, np.floating)
    if not numeric or not np.all(np.isfinite(y)) or not np.all(y == np.round(y)):
        raise ValueError(f"{what} must be integers. Received: dtype={y.dtype}")
    if y.min() < 0 or y.max() >= num_classes:
        raise ValueError(
            f"{what} must be in [0, {num_classes}). Received: labels from {y.min()} to {y.max()}"
        )
    return y.astype(np.int64)


# --------------------------------------------------------------------------
# Sources.
# --------------------------------------------------------------------------
@dataclasses.dataclass
class Source:
    """A located dataset: `kind` (one of `SOURCE_KINDS` or "embedded") and `location`.

    `class_names` is the class folder list of a `jpeg_zip` source (None:
    CIFAR-10's ten classes).
    """

    name: str
    kind: str
    location: str
    manual_dir: str | None = None
    cache: str | None = None
    class_names: tuple | None = None

    def describe(self):
        return f"{self.kind}: {self.location}"

    @property
    def in_memory(self):
        return self.kind in ("idx", "jpeg_zip", "npz", "embedded")

    @property
    def num_classes(self):
        if self.class_names is not None:
            return len(self.class_names)
        return CATALOG[self.name].num_classes

    def arrays(self, split):
        """Returns `(images uint8 (N, H, W, C), labels int64 (N,))` of `split`.

        Raises a ValueError naming the file when it is truncated or corrupt,
        or when a label is outside `[0, num_classes)`.
        """
        check_split(split)
        if self.kind == "idx":
            x, y = read_idx_split(self.location, self.name, split)
        elif self.kind in ("npz", "embedded"):
            x, y = read_npz_split(self.location, split)
        elif self.kind == "jpeg_zip":
            x, y = _jpeg_zip_cached(self.location, split, self.cache, self.class_names)
            x, y = interleave_classes(x, y)
        else:
            batches = list(self.tfds_dataset(split).batch(4096).as_numpy_iterator())
            x = np.concatenate([b[0] for b in batches])
            y = np.concatenate([b[1] for b in batches])
        return x, _checked_labels(y, self.num_classes, f"{self.describe()}: the {split} labels")

    def num_examples(self, split):
        """Number of examples of `split` (without decoding the images)."""
        check_split(split)
        if self.kind == "idx":
            return _idx_count(_idx_paths(self.location, split)[1])
        if self.kind in ("npz", "embedded"):
            try:
                with np.load(self.location, allow_pickle=False) as data:
                    return len(data[f"y_{split}"])
            except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile) as error:
                raise ValueError(
                    f"Cannot read y_{split} from the .npz file {self.location!r}: {error}"
                ) from error
        if self.kind == "jpeg_zip":
            with _open_zip(self.location) as archive:
                names = archive.namelist()
            return len(zip_members(self.location, names, split, self.class_names))
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
    """True when `data_dir` holds a prepared tfds copy of `info`.

    tfds is imported only when a `dataset_info.json` lies within three levels
    of `<data_dir>/<tfds name>` (`<version>/` or `<config>/<version>/`): an
    idx folder named `mnist/` is not mistaken for one, and costs no import.
    """
    root = os.path.join(data_dir, info.tfds_name)
    if not os.path.isdir(root):
        return False
    depth = root.rstrip(os.sep).count(os.sep)
    found = False
    for folder, subfolders, files in os.walk(root):
        if "dataset_info.json" in files:
            found = True
            break
        if folder.rstrip(os.sep).count(os.sep) - depth >= 2:
            subfolders[:] = []
    if not found:
        return False
    try:
        tfds = _import_tfds()
        builder = tfds.builder(info.tfds_name, data_dir=data_dir)
    except Exception:  # tfds missing or broken: try the other sources
        return False
    return os.path.exists(os.path.join(builder.data_dir, "dataset_info.json"))


def _quiet_tfds_messages(builder, info, manual_dir):
    """Replaces tfds' "Downloading and preparing dataset" (nothing is downloaded)."""

    def announce():
        print(
            f"Preparing {info.name} with tensorflow-datasets from the local files in "
            f"{manual_dir} (nothing is downloaded) into {builder.data_dir}...",
            flush=True,
        )

    builder._log_download_bytes = announce
    builder._log_download_done = lambda: None


def _prepare_tfds(info, manual_dir, data_dir, download):
    """Prepares `info`'s tfds dataset into `data_dir` (from `manual_dir` or a download).

    Each dataset gets its own tfds download directory: tfds names the files it
    extracts from a manual_dir after the archive's file name alone, so in a
    shared `downloads/` folder MNIST's `train-images-idx3-ubyte.gz` would be
    read back from Fashion-MNIST's extraction of its same-named file (or the
    other way round), and the prepared copy would silently hold the other
    dataset. idx archives are checked before tfds sees them (a truncated one
    is a ValueError naming it). On failure (or interrupt) everything this
    call created is removed; after a preparation from `manual_dir` the
    extracted copies are removed too (only the prepared files are read).
    """
    if manual_dir is None and not download:
        raise ValueError("Preparing a tfds dataset needs a manual_dir or download=True.")
    if manual_dir is not None and "idx" in info.kinds:
        for split in SPLITS:
            read_idx_split(manual_dir, info.name, split)
    tfds = _import_tfds()
    builder = tfds.builder(info.tfds_name, data_dir=data_dir)
    config = tfds.download.DownloadConfig(manual_dir=manual_dir) if manual_dir else None
    download_dir = os.path.join(data_dir, "downloads", info.tfds_name.replace("/", "_"))
    dataset_root = os.path.join(data_dir, info.tfds_name.split("/")[0])
    planned = (data_dir, os.path.dirname(download_dir), download_dir, dataset_root)
    created = [p for p in planned if not os.path.exists(p)]
    if manual_dir is not None:
        _quiet_tfds_messages(builder, info, manual_dir)
    try:
        builder.download_and_prepare(download_dir=download_dir, download_config=config)
    except BaseException as error:
        for path in created:
            shutil.rmtree(path, ignore_errors=True)
        if not isinstance(error, Exception):
            raise
        origin = f"the files in {manual_dir!r}" if manual_dir else "a download"
        reason = " ".join(str(error).split())[:300] or type(error).__name__
        raise ValueError(
            f"Preparing {info.name!r} with tensorflow-datasets from {origin} failed "
            f"(nothing kept in {data_dir!r}): {reason}"
        ) from error
    if manual_dir is not None:
        shutil.rmtree(download_dir, ignore_errors=True)
    return builder


def _check_source(name, info, source):
    if source != "auto" and source not in SOURCE_KINDS:
        raise ValueError(
            f"source must be 'auto' or one of {SOURCE_KINDS}. Received: source={source!r}"
        )
    if source not in ("auto", "download") and source not in info.kinds:
        raise ValueError(
            f"Dataset {name!r} cannot be read from source {source!r}; its sources are "
            f"{info.kinds}. Received: source={source!r}"
        )


def _find_prepared(name, info, source, bases, tfds_cache, looked):
    """Step 1: a prepared tfds data dir."""
    if source not in ("auto", "tfds"):
        return None
    for d in bases + [tfds_cache]:
        if _tfds_prepared(info, d):
            return Source(name, "tfds", d)
        looked.append(f"tfds data dir {os.path.join(d, info.tfds_name)} (not prepared)")
    return None


def _find_manual(name, info, source, candidates, tfds_cache, looked):
    """Step 3: tfds' manual_dir, prepared now into `tfds_cache`.

    In "auto" mode only for datasets without idx files (MNIST and
    Fashion-MNIST read those directly, in seconds).
    """
    if not (source in ("tfds", "tfds_manual") or (source == "auto" and "idx" not in info.kinds)):
        return None
    for d in candidates:
        paths = [os.path.join(d, f) for f in info.manual_files]
        files = [p for p in paths if os.path.exists(p)]
        if len(files) == len(paths) or (name == "svhn" and len(files) >= 2):
            try:
                _prepare_tfds(info, d, tfds_cache, download=False)
            except ImportError as error:  # tfds missing: try the other sources
                looked.append(f"tfds manual_dir {d} (tensorflow-datasets unavailable: {error})")
                continue
            return Source(name, "tfds", tfds_cache, manual_dir=d)
        looked.append(f"tfds manual_dir {d} (needs {', '.join(info.manual_files)})")
    return None


def _find_files(name, info, source, candidates, kinds, cache, class_names, looked):
    """Steps 2, 4 and 5 (`kinds`): idx files, the CIFAR-10 JPEG zip, an `.npz`."""

    def wanted(kind):
        return kind in kinds and kind in info.kinds and source in ("auto", kind)

    if wanted("idx"):
        for d in candidates:
            if all(os.path.exists(p) for s in SPLITS for p in _idx_paths(d, s)):
                return Source(name, "idx", d)
            looked.append(f"idx files in {d} (needs {', '.join(info.manual_files)})")
    if wanted("jpeg_zip"):
        for d in candidates:
            path = os.path.join(d, "cifar10_jpeg.zip")
            if os.path.isfile(path):
                return Source(name, "jpeg_zip", path, cache=cache, class_names=class_names)
            looked.append(f"JPEG zip {path}")
    if wanted("npz"):
        for d in candidates:
            for stem in dict.fromkeys((name, info.folders[0])):
                path = os.path.join(d, stem + ".npz")
                if os.path.isfile(path):
                    return Source(name, "npz", path)
                looked.append(f"npz {path}")
    return None


def _not_found(name, info, source, bases, looked):
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
    return FileNotFoundError(
        f"Dataset {name!r} not found (source={source!r}). Looked at: {'; '.join(looked)}. "
        f"To provide it: {how}."
    )


def resolve(
    name, data_dir=None, source="auto", download=False, cache_dir_path=None, class_names=None
):
    """Finds dataset `name` (see the module docstring for the order).

    Args:
        name: a dataset name (`CATALOG`).
        data_dir: a path, list of paths or an `.npz` path. Defaults to
            `$KERASCNN_DATA_DIR`.
        source: `"auto"` (the documented order) or one kind of `SOURCE_KINDS`
            to use only that one (`"tfds"` also prepares from tfds'
            manual_dir when no prepared copy exists).
        download: allow tfds to download (needs internet). Defaults to False.
        cache_dir_path: the cache dir. Defaults to `cache_dir()`.
        class_names: the class folders of the CIFAR-10 JPEG zip, in label
            order. Defaults to None (CIFAR-10's ten classes); only for a
            `jpeg_zip` source.

    Returns:
        A `Source`.

    Raises:
        FileNotFoundError: nothing found; the message lists every place looked
            at and how to provide the data.
        ValueError: a bad argument, or files found but unusable (the message
            names the file).
    """
    name = canonical_name(name)
    info = CATALOG[name]
    if class_names is not None:
        class_names = check_class_names(class_names)
    if name == "embedded":
        if data_dir is not None and not os.fspath(data_dir).endswith(".npz"):
            data_dirs(data_dir)  # a bad data_dir is an error even when unused
        source_obj = Source(name, "embedded", EMBEDDED_PATH)
    else:
        source_obj = _resolve_files(
            name, info, data_dir, source, download, cache_dir_path, class_names
        )
    if class_names is not None and source_obj.kind != "jpeg_zip":
        raise ValueError(
            f"class_names applies to the CIFAR-10 JPEG zip only; {name} was found as "
            f"{source_obj.describe()}. Received: class_names={list(class_names)!r}"
        )
    return source_obj


def _resolve_files(name, info, data_dir, source, download, cache_dir_path, class_names):
    _check_source(name, info, source)
    cache = cache_dir(cache_dir_path)
    tfds_cache = os.path.join(cache, "tfds")
    if isinstance(data_dir, (str, os.PathLike)) and os.fspath(data_dir).endswith(".npz"):
        npz_file = os.path.abspath(os.path.expanduser(os.fspath(data_dir)))
        if not os.path.isfile(npz_file):
            raise ValueError(f"data_dir does not exist. Received: data_dir={os.fspath(data_dir)!r}")
        if source in ("auto", "npz"):
            return Source(name, "npz", npz_file)
        bases = []
    else:
        bases = data_dirs(data_dir)
    looked = []
    candidates = _candidate_dirs(info, bases, looked)
    tfds = info.tfds_name is not None
    found = (
        (tfds and _find_prepared(name, info, source, bases, tfds_cache, looked))
        or _find_files(name, info, source, candidates, ("idx",), cache, None, looked)
        or (tfds and _find_manual(name, info, source, candidates, tfds_cache, looked))
        or _find_files(
            name, info, source, candidates, ("jpeg_zip", "npz"), cache, class_names, looked
        )
    )
    if found:
        return found
    if info.tfds_name and (download or source == "download"):
        if not download:
            raise ValueError("source='download' needs download=True.")
        _prepare_tfds(info, None, tfds_cache, download=True)
        return Source(name, "tfds", tfds_cache)
    raise _not_found(name, info, source, bases, looked)
