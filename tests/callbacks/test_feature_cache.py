"""Tests of kerascnn.callbacks.learn_drop.feature_cache.FeatureCache."""

import os

import numpy as np
import pytest

from kerascnn.callbacks.learn_drop.feature_cache import FeatureCache, check_directory


def fill(cache, n=10, batch=4, finalize=True):
    x = np.arange(n * 6, dtype="float32").reshape(n, 2, 3) / 7.0
    y = np.arange(n)
    for i in range(0, n, batch):
        cache.append(x[i : i + batch], y[i : i + batch])
    if finalize:
        cache.finalize()
    return x, y


@pytest.mark.parametrize("on_disk", [False, True])
def test_round_trip_shuffled_every_pass(tmp_path, on_disk):
    cache = FeatureCache(directory=str(tmp_path) if on_disk else None, shards=3)
    x, y = fill(cache)
    assert (cache.num_samples, cache.num_batches, cache.batch_size) == (10, 3, 4)
    ds = cache.dataset(batch_size=4, seed=1, repeat=False)
    orders = []
    for _ in range(2):
        got_x, got_y = zip(*[(bx.numpy(), by.numpy()) for bx, by in ds])
        assert [len(b) for b in got_y] == [4, 4, 2]
        got_x, got_y = np.concatenate(got_x), np.concatenate(got_y)
        np.testing.assert_array_equal(got_x, x[got_y])  # pairs kept together
        assert sorted(got_y.tolist()) == list(range(10))
        orders.append(got_y.tolist())
    assert orders[0] != orders[1]  # reshuffled each pass
    assert ds.options().autotune.enabled is False
    if on_disk:
        assert len([f for f in os.listdir(cache.path) if f.endswith(".tfrecord")]) == 3
        path = cache.path
        cache.cleanup()
        assert not os.path.exists(path)


def test_float16_storage_and_sample_weight(tmp_path):
    cache = FeatureCache(directory=str(tmp_path), dtype="float16")
    x = np.linspace(0, 1, 24, dtype="float32").reshape(4, 6)
    cache.append(x, np.zeros(4), np.full(4, 0.5))
    cache.finalize()
    assert cache.nbytes < x.nbytes + 4 * 8 + 4 * 8  # x stored in 2 bytes per value
    bx, by, bw = next(iter(cache.dataset(4, shuffle=False, repeat=False)))
    assert bx.dtype.name == "float32"  # cast back on read
    np.testing.assert_allclose(bx.numpy(), x, atol=1e-3)
    np.testing.assert_array_equal(bw.numpy(), 0.5)
    cache.cleanup()


def test_unwritable_directory_is_a_clear_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(ValueError, match="not writable.*cache='memory'"):
        check_directory(str(blocker / "sub"))
    with pytest.raises(ValueError, match="MiB free"):
        check_directory(str(tmp_path), required_bytes=2**62)
    with pytest.raises(ValueError, match="dtype"):
        FeatureCache(dtype="int32")


def test_removed_when_collected(tmp_path):
    cache = FeatureCache(directory=str(tmp_path))
    cache.append(np.zeros((2, 3), "float32"), np.zeros(2))
    path = cache.path
    del cache
    import gc

    gc.collect()
    assert not os.path.exists(path)


@pytest.mark.parametrize("on_disk", [False, True])
def test_tuple_features_of_a_residual_cut_round_trip(tmp_path, on_disk):
    # A cut inside a residual block caches two tensors per sample, the main path
    # and the shortcut (Learn&Drop paper, Figure 3): x is a tuple, kept aligned.
    cache = FeatureCache(directory=str(tmp_path) if on_disk else None, dtype="float16", shards=2)
    n = 10
    main = np.linspace(0, 1, n * 8, dtype="float32").reshape(n, 2, 2, 2)
    shortcut = np.linspace(-1, 0, n * 12, dtype="float32").reshape(n, 2, 2, 3)
    y = np.arange(n)
    for i in range(0, n, 4):
        cache.append(
            (main[i : i + 4], shortcut[i : i + 4]), y[i : i + 4], np.full(len(y[i : i + 4]), 2.0)
        )
    cache.finalize()
    assert cache.nbytes == (main.nbytes + shortcut.nbytes) // 2 + y.nbytes + n * 8
    got = list(cache.dataset(batch_size=4, seed=3, repeat=False))
    assert [len(b) for b in got] == [3, 3, 3]  # ((main, shortcut), y, w)
    (gm, gs), gy, gw = (
        tuple(np.concatenate([b[0][j].numpy() for b in got]) for j in range(2)),
        np.concatenate([b[1].numpy() for b in got]),
        np.concatenate([b[2].numpy() for b in got]),
    )
    assert gm.dtype == gs.dtype == np.float32  # cast back on read
    assert sorted(gy.tolist()) == list(range(n)) and gy.tolist() != list(range(n))
    np.testing.assert_allclose(gm, main[gy], atol=1e-3)  # both tensors follow the labels
    np.testing.assert_allclose(gs, shortcut[gy], atol=1e-3)
    np.testing.assert_array_equal(gw, 2.0)
    with pytest.raises(RuntimeError, match="after finalize"):
        cache.append((main[:1], shortcut[:1]), y[:1])
    cache.cleanup()


def test_features_structure_must_not_change():
    cache = FeatureCache()
    cache.append((np.zeros((2, 3), "float32"), np.zeros((2, 1), "float32")), np.zeros(2))
    with pytest.raises(ValueError, match="same features structure"):
        cache.append(np.zeros((2, 3), "float32"), np.zeros(2))


@pytest.mark.parametrize("capacity", [None, 4, 64])
def test_memory_cache_is_written_once_and_read_without_a_copy(capacity):
    # One preallocated buffer per field (grown by doubling when `capacity` is
    # short or None), handed to TensorFlow without a copy: the cache costs ~1x.
    cache = FeatureCache(capacity=capacity)
    x, y = fill(cache, n=10, batch=3, finalize=False)
    buffer = cache._buffers["x0"]
    assert buffer.ctypes.data % 64 == 0 and len(buffer) >= 10
    cache.finalize()
    assert np.shares_memory(np.asarray(cache._tensors["x0"]), buffer)  # no copy
    got = list(cache.dataset(batch_size=4, shuffle=False, repeat=False))
    np.testing.assert_array_equal(np.concatenate([b[0] for b in got]), x)
    np.testing.assert_array_equal(np.concatenate([b[1] for b in got]), y)
    with pytest.raises(ValueError, match="capacity must be None or an integer >= 1"):
        FeatureCache(capacity=0)
