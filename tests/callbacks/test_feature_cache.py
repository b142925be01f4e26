"""Tests of kerascnn.callbacks.learn_drop.feature_cache.FeatureCache."""

import os

import numpy as np
import pytest

from kerascnn.callbacks.learn_drop.feature_cache import FeatureCache, check_directory


def fill(cache, n=10, batch=4):
    x = np.arange(n * 6, dtype="float32").reshape(n, 2, 3) / 7.0
    y = np.arange(n)
    for i in range(0, n, batch):
        cache.append(x[i : i + batch], y[i : i + batch])
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
