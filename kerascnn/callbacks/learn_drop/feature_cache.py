"""A tf.data cache of feature maps, in memory or on disk (TFRecord).

`FeatureCache` receives batches of `(features, y[, sample_weight])` as numpy
arrays (written once, e.g. by `LayerDropping` during the epoch where the
tail computes them; `features` is one array, or a tuple of arrays when
several tensors cross the cut: inside a residual block, the main path and
the shortcut) and then serves them as a `tf.data.Dataset` reshuffled
every epoch. Storage:

* **memory** (`directory=None`): each batch is copied into one preallocated,
  64-byte aligned buffer per field (sized by `capacity`, else grown by
  doubling), which TensorFlow then reads without a copy (DLPack), so the
  cache costs about its size in memory; the dataset shuffles indices over
  the whole cache and gathers each batch.
* **disk** (`directory=...`): a fresh sub-directory
  `kerascnn_feature_cache_*` under `directory` holds `shards` TFRecord files,
  one record per written batch holding `tf.io.serialize_tensor` bytes
  (nothing is pickled). Reading interleaves the shards in a random order and
  shuffles samples in a buffer of `shuffle_buffer` samples.

`dtype="float16"` stores float features in half precision (half the memory
and disk); they are cast back to the dtype they were written with on read.

Every dataset built here has `options.autotune.enabled = False`
(destroying an autotuned iterator mid-`fit` can stall for up to 60 s) and
`deterministic=True`.

The directory is removed by `cleanup()`, and also when the cache object is
garbage collected or the interpreter exits (`weakref.finalize`), so an
exception or a KeyboardInterrupt in the middle of `fit` leaves no files
behind once the process ends. A process killed with SIGKILL (or a crash)
cannot clean up: every disk cache records its owner (`owner.json`: host,
pid and the process start time from `/proc/<pid>/stat` where available),
and creating a disk `FeatureCache` removes the `kerascnn_feature_cache_*`
directories in the same parent whose owner, on this host, no longer runs
(`remove_stale_caches()`). Directories without an owner file, of another
host or of a live process are left alone. `check_directory()` tells early
whether a directory is usable (exists or can be created, is writable, has
free space).

Example:

>>> import numpy as np
>>> cache = FeatureCache(directory=None, dtype="float16")
>>> cache.append(np.ones((4, 2, 2, 3), "float32"), np.arange(4))
>>> cache.finalize()
>>> ds = cache.dataset(batch_size=2, seed=0, repeat=False)
>>> [tuple(b[0].shape) for b in ds]
[(2, 2, 2, 3), (2, 2, 2, 3)]
>>> cache.cleanup()
>>> pair = FeatureCache()  # two tensors cross the cut: x is a tuple
>>> pair.append((np.ones((4, 2, 2, 3), "float32"), np.zeros((4, 2, 2, 5), "float32")), np.arange(4))
>>> pair.finalize()
>>> (main, shortcut), y = next(iter(pair.dataset(batch_size=4, repeat=False)))
>>> tuple(main.shape), tuple(shortcut.shape)
((4, 2, 2, 3), (4, 2, 2, 5))
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import tempfile
import time
import uuid
import weakref

import numpy as np
import tensorflow as tf

from kerascnn import _checks

#: Prefix of disk cache directories, and the owner file inside each.
CACHE_PREFIX = "kerascnn_feature_cache_"
OWNER_FILE = "owner.json"


def _process_start_time(pid):
    """Start time of process `pid` (clock ticks since boot, `/proc`), or None."""
    try:
        with open(f"/proc/{int(pid)}/stat") as f:
            stat = f.read()
        # Field 22 (starttime); the command name (field 2) may hold spaces and ")".
        return int(stat.rsplit(")", 1)[1].split()[19])
    except (OSError, ValueError, IndexError):
        return None


def _process_alive(pid, start_time):
    """Whether process `pid` runs and, when both are known, started at `start_time`."""
    if isinstance(pid, bool) or not isinstance(pid, int) or pid <= 0:
        return True  # not a pid this module wrote: keep, to be safe
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, ValueError):
        return True  # exists (another user's) or an odd value: keep, to be safe
    current = _process_start_time(pid)
    return start_time is None or current is None or current == start_time


def _write_owner(path):
    owner = {
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "start_time": _process_start_time(os.getpid()),
    }
    tmp = os.path.join(path, f".{OWNER_FILE}.tmp")
    with open(tmp, "w") as f:
        json.dump(owner, f)
    os.replace(tmp, os.path.join(path, OWNER_FILE))


def remove_stale_caches(directory):
    """Removes the disk caches under `directory` left by processes that no longer run.

    Only direct sub-directories named `kerascnn_feature_cache_*` holding an
    `owner.json` written on this host whose process is gone (or whose pid now
    belongs to a process started at another time) are removed.

    Args:
        directory: the parent directory of the caches.

    Returns:
        The list of removed paths.
    """
    removed = []
    try:
        names = os.listdir(directory)
    except OSError:
        return removed
    host = socket.gethostname()
    for name in names:
        path = os.path.join(directory, name)
        if not name.startswith(CACHE_PREFIX) or not os.path.isdir(path):
            continue
        try:
            with open(os.path.join(path, OWNER_FILE)) as f:
                owner = json.load(f)
            stale = owner["host"] == host and not _process_alive(
                owner["pid"], owner.get("start_time")
            )
        except (OSError, ValueError, KeyError, TypeError):
            continue  # no (readable) owner file: not ours to judge
        if stale:
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed


_ALIGN = 64  # bytes: what TensorFlow's CPU kernels require of a tensor's buffer


def _aligned_empty(shape, dtype):
    """An uninitialised C-contiguous array whose data starts on a 64-byte boundary.

    Its pages are only backed by memory once written, so a buffer sized for
    the whole cache costs what has been written so far.
    """
    dtype = np.dtype(dtype)
    nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    raw = np.empty(nbytes + _ALIGN, np.uint8)
    offset = (-raw.ctypes.data) % _ALIGN
    return raw[offset : offset + nbytes].view(dtype).reshape(shape)


def _as_tensor(array):
    """A tensor over `array`'s memory (zero-copy via DLPack when aligned, else a copy)."""
    if array.size and array.flags.c_contiguous and array.ctypes.data % _ALIGN == 0:
        try:
            return tf.experimental.dlpack.from_dlpack(array.__dlpack__())
        except (AttributeError, TypeError, ValueError, BufferError, tf.errors.OpError):
            pass  # a dtype DLPack does not carry (e.g. bool): copy
    return tf.convert_to_tensor(array)


def _options():
    options = tf.data.Options()
    options.autotune.enabled = False
    options.deterministic = True
    return options


def check_directory(directory, required_bytes=0):
    """Raises a clear `ValueError` unless cache files can be written there.

    Args:
        directory: the parent directory (created if missing).
        required_bytes: free space needed, when known. Defaults to 0.
    """
    try:
        os.makedirs(directory, exist_ok=True)
        probe = os.path.join(directory, f".kerascnn_probe_{uuid.uuid4().hex}")
        with open(probe, "wb") as f:
            f.write(b"0" * 4096)
            f.flush()
            os.fsync(f.fileno())
        os.remove(probe)
    except OSError as error:
        raise ValueError(
            f"The feature cache directory is not writable ({error.strerror or error}). "
            "Pass another directory or cache='memory'. "
            f"Received: cache={os.fspath(directory)!r}"
        ) from error
    free = shutil.disk_usage(directory).free
    if required_bytes and free < required_bytes:
        raise ValueError(
            f"The feature cache needs about {required_bytes / 2**20:.1f} MiB but "
            f"{os.fspath(directory)!r} has {free / 2**20:.1f} MiB free. Pass "
            f"another directory or cache='memory'. Received: cache={os.fspath(directory)!r}"
        )


class FeatureCache:
    """Feature maps written once, then read back shuffled as a `tf.data.Dataset`.

    Args:
        directory: parent directory for a disk cache, or None for memory.
            Defaults to None.
        dtype: storage dtype of float features, e.g. `"float16"`; None keeps
            them as written. Defaults to None.
        shards: number of TFRecord files of a disk cache. Defaults to 8.
        shuffle_buffer: samples in the shuffle buffer of a disk cache (a
            memory cache is shuffled fully). Defaults to 4096.
        capacity: expected number of samples of a memory cache (an upper
            bound is fine), or None. With it the buffers are allocated once
            and the cache costs about its size in memory; without it they
            grow by doubling. Defaults to None.

    Example:

    >>> cache = FeatureCache()
    >>> cache.append(np.zeros((3, 4), "float32"), np.zeros(3), np.ones(3))
    >>> cache.finalize(); cache.num_samples
    3
    """

    def __init__(self, directory=None, dtype=None, shards=8, shuffle_buffer=4096, capacity=None):
        if dtype is not None:
            dtype = tf.dtypes.as_dtype(dtype)
            if not dtype.is_floating:
                raise ValueError(f"dtype must be a float dtype or None. Received: dtype={dtype!r}")
        if not isinstance(shards, int) or shards < 1:
            raise ValueError(f"shards must be an integer >= 1. Received: shards={shards!r}")
        if not isinstance(shuffle_buffer, int) or shuffle_buffer < 1:
            raise ValueError(
                "shuffle_buffer must be an integer >= 1. "
                f"Received: shuffle_buffer={shuffle_buffer!r}"
            )
        self.dtype = dtype
        self.shards = shards
        self.shuffle_buffer = shuffle_buffer
        self.capacity = _checks.check_positive_int(capacity, "capacity", allow_none=True)
        self.path = None
        self.num_samples = 0
        self.num_batches = 0
        self.batch_size = 0
        self.nbytes = 0
        self.write_seconds = 0.0
        self._buffers = {}
        self._tensors = {}
        self._specs = None
        self._x_structure = None
        self._source_dtypes = []
        self._writers = []
        self._finalized = False
        self._finalizer = None
        if directory is not None:
            check_directory(directory)
            remove_stale_caches(directory)
            self.path = tempfile.mkdtemp(prefix=CACHE_PREFIX, dir=directory)
            self._finalizer = weakref.finalize(self, shutil.rmtree, self.path, True)
            _write_owner(self.path)

    @property
    def on_disk(self):
        return self.path is not None

    def append(self, x, y, sample_weight=None):
        """Adds one batch (numpy arrays with the same first dimension).

        Args:
            x: the features, an array or a tuple / list of arrays (several
                tensors cross the cut); every batch must have the same
                structure.
            y: the targets.
            sample_weight: the sample weights, or None.
        """
        if self._finalized:
            raise RuntimeError("FeatureCache.append after finalize().")
        start = time.perf_counter()
        parts = [np.asarray(v) for v in x] if isinstance(x, (tuple, list)) else [np.asarray(x)]
        structure = len(parts) if isinstance(x, (tuple, list)) else None
        if self._specs is not None and structure != self._x_structure:
            raise ValueError(
                "Every batch appended to a FeatureCache must have the same features structure. "
                f"Received: x with {structure or 1} arrays after {self._x_structure or 1}"
            )
        source_dtypes = [tf.dtypes.as_dtype(v.dtype) for v in parts]
        if self.dtype is not None:
            parts = [
                v.astype(self.dtype.as_numpy_dtype) if np.issubdtype(v.dtype, np.floating) else v
                for v in parts
            ]
        values = {f"x{i}": v for i, v in enumerate(parts)}
        values["y"] = np.asarray(y)
        if sample_weight is not None:
            values["w"] = np.asarray(sample_weight)
        if self._specs is None:
            self._specs = {
                key: (tf.dtypes.as_dtype(v.dtype), v.shape[1:]) for key, v in values.items()
            }
            self._source_dtypes = source_dtypes
            self._x_structure = structure
        x = parts[0]
        n = x.shape[0]
        if self.on_disk:
            if not self._writers:
                self._writers = [
                    tf.io.TFRecordWriter(os.path.join(self.path, f"shard-{i:03d}.tfrecord"))
                    for i in range(self.shards)
                ]
            feature = {
                key: tf.train.Feature(
                    bytes_list=tf.train.BytesList(value=[tf.io.serialize_tensor(v).numpy()])
                )
                for key, v in values.items()
            }
            record = tf.train.Example(features=tf.train.Features(feature=feature))
            try:
                self._writers[self.num_batches % self.shards].write(record.SerializeToString())
            except (OSError, tf.errors.OpError) as error:
                self.cleanup()
                raise OSError(
                    f"Writing the feature cache under {os.path.dirname(self.path)!r} failed "
                    f"(disk full or not writable?): {error}. Pass another directory or "
                    "cache='memory'."
                ) from error
        else:
            self._write_buffers(values, n)
        self.num_samples += n
        self.batch_size = max(self.batch_size, n)
        self.num_batches += 1
        self.nbytes += sum(v.nbytes for v in values.values())
        self.write_seconds += time.perf_counter() - start

    def _write_buffers(self, values, n):
        """Copies a batch into the preallocated buffers (grown by doubling when full)."""
        start, stop = self.num_samples, self.num_samples + n
        for key, v in values.items():
            buf = self._buffers.get(key)
            if buf is None or stop > len(buf):
                size = max(stop, self.capacity or 0, 2 * (0 if buf is None else len(buf)))
                new = _aligned_empty((size,) + v.shape[1:], self._specs[key][0].as_numpy_dtype)
                if buf is not None:
                    new[:start] = buf[:start]
                self._buffers[key] = buf = new
            buf[start:stop] = v

    def finalize(self):
        """Closes the writers (disk) or concatenates the batches (memory)."""
        if self._finalized:
            return
        start = time.perf_counter()
        if self.on_disk:
            try:
                for writer in self._writers:
                    writer.close()
            except (OSError, tf.errors.OpError) as error:
                self.cleanup()
                raise OSError(f"Closing the feature cache files failed: {error}") from error
        else:
            # Views of the buffers, shared with TensorFlow without a copy when aligned.
            n = self.num_samples
            self._tensors = {key: _as_tensor(buf[:n]) for key, buf in self._buffers.items()}
            self._buffers = {}
        self._writers = []
        self._finalized = True
        self.write_seconds += time.perf_counter() - start

    def dataset(self, batch_size, shuffle=True, seed=None, repeat=True):
        """The cached samples as a batched dataset, reshuffled every pass.

        Args:
            batch_size: global batch size.
            shuffle: shuffle the samples (each pass differently). Defaults
                to True.
            seed: shuffle seed. Defaults to None.
            repeat: repeat forever. Defaults to True.

        Returns:
            A `tf.data.Dataset` of `(x, y)` or `(x, y, sample_weight)`
            batches, `x` in the dtype it was written with: one tensor, or a
            tuple of tensors when tuples were appended.
        """
        if not self._finalized:
            raise RuntimeError("FeatureCache.dataset before finalize().")
        if self.num_samples == 0:
            raise ValueError("The feature cache is empty.")
        if self.on_disk:
            ds = self._disk_dataset(shuffle, seed).batch(batch_size)
        else:
            ds = self._memory_dataset(batch_size, shuffle, seed)
        ds = self._restructure(ds)
        if repeat:
            ds = ds.repeat()
        ds = ds.prefetch(2)
        return ds.with_options(_options())

    def _memory_dataset(self, batch_size, shuffle, seed):
        """Batches gathered from the cached tensors by shuffled indices.

        Only indices go through the shuffle buffer (not a copy of every
        sample, as `from_tensor_slices(...).shuffle(n)` would hold).
        """
        tensors = tuple(self._tensors[k] for k in self._specs)  # "x0", ["x1", ...], "y", ["w"]
        ds = tf.data.Dataset.range(self.num_samples)
        if shuffle:
            ds = ds.shuffle(self.num_samples, seed=seed, reshuffle_each_iteration=True)
        return ds.batch(batch_size).map(lambda idx: tuple(tf.gather(t, idx) for t in tensors))

    def _disk_dataset(self, shuffle, seed):
        """Samples parsed from the TFRecord shards (interleaved, buffer-shuffled)."""
        keys = list(self._specs)
        files = sorted(
            os.path.join(self.path, f) for f in os.listdir(self.path) if f.endswith(".tfrecord")
        )
        specs = self._specs
        description = {k: tf.io.FixedLenFeature([], tf.string) for k in keys}

        def parse(record):
            parsed = tf.io.parse_single_example(record, description)
            out = []
            for k in keys:
                t = tf.io.parse_tensor(parsed[k], specs[k][0])
                t.set_shape((None,) + tuple(specs[k][1]))
                out.append(t)
            return tuple(out)

        ds = tf.data.Dataset.from_tensor_slices(files)
        if shuffle:
            ds = ds.shuffle(len(files), seed=seed, reshuffle_each_iteration=True)
        ds = ds.interleave(tf.data.TFRecordDataset, cycle_length=min(4, len(files)), block_length=1)
        ds = ds.map(parse).unbatch()
        if shuffle:
            ds = ds.shuffle(
                min(self.shuffle_buffer, self.num_samples), seed=seed, reshuffle_each_iteration=True
            )
        return ds

    def _restructure(self, ds):
        """Casts stored features back to their written dtype and nests a tuple `x`."""
        n = len(self._source_dtypes)
        sources = self._source_dtypes
        cast = self.dtype is not None and any(d != self.dtype for d in sources)
        if not cast and self._x_structure is None:
            return ds

        def restructure(*fields):
            x = tuple(
                tf.cast(f, d) if cast and f.dtype != d else f
                for f, d in zip(fields[:n], sources, strict=True)
            )
            return (x if self._x_structure is not None else x[0],) + tuple(fields[n:])

        return ds.map(restructure)

    def cleanup(self):
        """Frees the memory cache or removes the cache directory."""
        for writer in self._writers:
            try:
                writer.close()
            except Exception:  # noqa: BLE001 - best effort on the way out
                pass
        self._writers = []
        self._buffers = {}
        self._tensors = {}
        if self._finalizer is not None:
            self._finalizer()  # removes self.path (once)
        self._finalized = True
