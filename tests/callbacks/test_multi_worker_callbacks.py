"""kerascnn's callbacks under a multi-worker `MultiWorkerMirroredStrategy` (issue #16).

Two worker processes on 127.0.0.1 (`harness.run_workers`), each with its own
shard of the data and its own copy of every variable, run three short `fit`s:

A. `StabilityStopping` + `LayerMetrics` on a conv net without batch norm: the
   per-layer mu (the moments are all-reduced inside the step, then merged
   with Chan's formula) is equal on both workers, equal to a single-process
   run over the same global batches (1e-5), and both stop in the same epoch;
   `LayerMetrics` values are equal and only the chief wrote event files.
B. `LayerDropping` with a forced drop (+ `LayerFreezing` in a separate fit):
   the drop happens at the same epoch with the same cut on both workers, each
   caches its own shard in its own directory, training goes on on the head.
C. `StochasticWeightAveraging` on a net with batch norm: the averaged weights
   and the re-estimated batch-norm statistics are equal on both workers, and
   its state files are written by the chief only.

How the global batch matches the single-process batch: the dataset is
`from_tensor_slices(...).batch(GLOBAL_BATCH)` with auto-shard policy DATA.
`tf.distribute` first splits each global batch into per-replica batches
(rebatch), then gives worker i every i-th of them: worker 0 gets the first
half of each global batch, worker 1 the second, so the union of one step's
batches is exactly the single-process batch of that step.
"""

import glob
import json
import os
import time

import numpy as np
import pytest
from harness import run_workers

N, GLOBAL_BATCH, EPOCHS = 32, 8, 3


# ---------------------------------------------------------------- helpers
# (also loaded in the workers as `helpers`)
def make_data():
    rng = np.random.default_rng(7)
    x = rng.normal(size=(N, 8, 8, 1)).astype("float32")
    y = rng.integers(0, 3, size=(N,)).astype("int32")
    return x, y


def make_dataset(x, y):
    import tensorflow as tf

    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(GLOBAL_BATCH)
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return ds.with_options(options)


def make_model(batch_norm=False):
    """Conv c1-c2-c3 (+ BN), GAP, dense head; weights from a fixed NumPy seed."""
    import keras

    inputs = keras.Input((8, 8, 1))
    x = inputs
    for i, f in enumerate((4, 8, 8), 1):
        x = keras.layers.Conv2D(f, 3, padding="same", use_bias=not batch_norm, name=f"c{i}")(x)
        if batch_norm:
            x = keras.layers.BatchNormalization(name=f"bn{i}")(x)
        x = keras.layers.ReLU(name=f"relu{i}")(x)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    model = keras.Model(inputs, keras.layers.Dense(3, name="head")(x), name="mw")
    rng = np.random.default_rng(3)
    model.set_weights(
        [
            (rng.normal(size=w.shape) * 0.3).astype("float32") if w.ndim > 1 else w
            for w in model.get_weights()
        ]
    )
    model.compile(
        keras.optimizers.SGD(0.05),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    return model


def stability_fit(log_dir=None):
    """Fit A (also the single-process reference): mu per epoch and the stop epoch."""
    from kerascnn.callbacks import LayerMetrics, StabilityStopping

    model = make_model()
    stop = StabilityStopping(decimals=1, patience=1, layers=["relu1", "relu2", "gap"])
    callbacks = [stop]
    metrics = LayerMetrics(log_dir) if log_dir else None
    if metrics is not None:
        callbacks.append(metrics)
    # Planned 4 epochs; the rounded mu (1 decimal) repeats at epoch 2, so the rule stops there.
    history = model.fit(make_dataset(*make_data()), epochs=4, callbacks=callbacks, verbose=0)
    return {
        "mu": [{k: float(v) for k, v in mu.items()} for mu in stop.history],
        "stopped_epoch": int(stop.stopped_epoch),
        "epochs_run": len(history.history["loss"]),
        "loss": [float(v) for v in history.history["loss"]],
        "latest": metrics.latest if metrics is not None else None,
    }


_WORKER = """
import glob
import tempfile
from kerascnn.callbacks import LayerDropping, LayerFreezing, StochasticWeightAveraging

s = strategy()
out_dir = sys.argv[1]
out = {"task": TASK_INDEX, "pid": os.getpid()}

# A. StabilityStopping + LayerMetrics.
with s.scope():
    out["A"] = helpers.stability_fit(os.path.join(out_dir, "tb"))

# B. LayerDropping, forced drop of the first convolution at the end of epoch 0.
paths = []


class Probe(keras.callbacks.Callback):
    def on_epoch_end(self, epoch, logs=None):
        cache = drop._feature_cache
        if cache is not None and cache.path:
            paths.append(cache.path)


with s.scope():
    model = helpers.make_model()
drop = LayerDropping(warmup_epochs=5, force_drops={0: "relu1"},
                     cache=os.path.join(out_dir, "cache"),
                     backup_dir=os.path.join(out_dir, "drop_state"))
hist = model.fit(helpers.make_dataset(*helpers.make_data()), epochs=helpers.EPOCHS,
                 callbacks=[drop, Probe()], verbose=0)
out["B"] = {
    "decisions": [[h["epoch"], h["decision"]] for h in drop.history],
    "scores": [h["scores"] for h in drop.history],
    "dropped": int(drop.dropped),
    "samples": [t["samples"] for t in drop.timings],
    "loss": [float(v) for v in hist.history["loss"]],
    "cache_paths": sorted(set(paths)),
    "weights": [w.tolist() for w in model.get_weights()],
}

# LayerFreezing.
with s.scope():
    model = helpers.make_model()
freeze = LayerFreezing(warmup_epochs=5, force_drops={0: "relu1"})
hist = model.fit(helpers.make_dataset(*helpers.make_data()), epochs=2, callbacks=[freeze],
                 verbose=0)
out["F"] = {
    "decisions": [[h["epoch"], h["decision"]] for h in freeze.history],
    "loss": [float(v) for v in hist.history["loss"]],
    "weights": [w.tolist() for w in model.get_weights()],
}

# C. SWA with batch norm: average of epochs 2 and 3, BN re-estimated on the fit data.
with s.scope():
    model = helpers.make_model(batch_norm=True)
swa = StochasticWeightAveraging(start=0.5, backup_dir=os.path.join(out_dir, "swa_state"))
import warnings
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    model.fit(helpers.make_dataset(*helpers.make_data()), epochs=helpers.EPOCHS,
              callbacks=[swa], verbose=0)
out["C"] = {
    "warnings": [str(w.message) for w in caught if "StochasticWeightAveraging" in str(w.message)],
    "num_averaged": swa.num_averaged,
    "weights": [w.tolist() for w in model.get_weights()],
    "names": [w.path for w in model.weights],
}
print(json.dumps(out))
"""


def _event_pids(log_dir):
    files = glob.glob(os.path.join(log_dir, "**", "events.out.tfevents.*"), recursive=True)
    return files, {int(os.path.basename(f).split(".")[-3]) for f in files}


def _assert_equal_weights(a, b, atol=0.0):
    assert len(a) == len(b)
    for wa, wb in zip(a, b):
        np.testing.assert_allclose(np.asarray(wa), np.asarray(wb), rtol=0, atol=atol)


@pytest.fixture(scope="module")
def workers(tmp_path_factory):
    out_dir = tmp_path_factory.mktemp("mw")
    outs = run_workers(_WORKER, 2, out_dir, helpers=__file__, timeout=400)
    return out_dir, outs


def test_stability_mu_equal_across_workers_and_single_process(workers):
    _, (chief, worker) = workers
    a0, a1 = chief["A"], worker["A"]
    assert a0["mu"] == a1["mu"]  # the same float64 values, all-reduced in the step
    assert a0["stopped_epoch"] == a1["stopped_epoch"] == 2  # stopped early, together
    assert a0["epochs_run"] == a1["epochs_run"] == 3
    single = stability_fit()
    assert single["epochs_run"] == a0["epochs_run"]
    assert single["stopped_epoch"] == a0["stopped_epoch"]
    for mw, sp in zip(a0["mu"], single["mu"], strict=True):
        assert mw.keys() == sp.keys()
        for layer in mw:
            assert mw[layer] == pytest.approx(sp[layer], rel=1e-5, abs=1e-5), layer


def test_layer_metrics_equal_and_written_by_chief_only(workers):
    out_dir, (chief, worker) = workers
    assert chief["A"]["latest"] == worker["A"]["latest"]
    assert chief["A"]["latest"]["activation_std"]
    files, pids = _event_pids(os.path.join(out_dir, "tb"))
    assert files and pids == {chief["pid"]}


def test_layer_dropping_same_drop_on_both_workers(workers):
    out_dir, (chief, worker) = workers
    b0, b1 = chief["B"], worker["B"]
    assert b0["decisions"] == b1["decisions"]
    assert b0["decisions"][0][1] is not None  # the forced drop at the end of epoch 0
    assert [e for e, d in b0["decisions"] if d] == [0]
    assert b0["scores"] == b1["scores"]
    assert b0["dropped"] == b1["dropped"] == 1
    # Each worker cached its own shard (half of the data), in its own directory.
    assert b0["samples"] == b1["samples"] == [N // 2]
    assert len(b0["cache_paths"]) == len(b1["cache_paths"]) == 1
    assert b0["cache_paths"] != b1["cache_paths"]
    assert len(b0["loss"]) == len(b1["loss"]) == EPOCHS and np.all(np.isfinite(b0["loss"]))
    assert b0["loss"] == b1["loss"]
    _assert_equal_weights(b0["weights"], b1["weights"])
    assert not glob.glob(os.path.join(out_dir, "cache", "*"))  # caches removed


def test_layer_freezing_identical_across_workers(workers):
    _, (chief, worker) = workers
    assert chief["F"]["decisions"] == worker["F"]["decisions"]
    assert chief["F"]["decisions"][0][1] is not None
    assert chief["F"]["loss"] == worker["F"]["loss"]
    _assert_equal_weights(chief["F"]["weights"], worker["F"]["weights"])


def test_swa_identical_across_workers(workers):
    out_dir, (chief, worker) = workers
    c0, c1 = chief["C"], worker["C"]
    assert c0["num_averaged"] == c1["num_averaged"] == 2
    # The batch-norm pass ran (on each worker's shard of the fit data), no warning.
    assert c0["warnings"] == c1["warnings"] == []
    for name, w0, w1 in zip(c0["names"], c0["weights"], c1["weights"]):
        np.testing.assert_array_equal(np.asarray(w0), np.asarray(w1), err_msg=name)
    # Only the chief writes SWA state (and removes it when training completes).
    assert not glob.glob(os.path.join(out_dir, "swa_state*", "*"))


_RESUME = """
from kerascnn.callbacks import LayerDropping, StochasticWeightAveraging

s = strategy()
out_dir = sys.argv[1]
# Each worker its own backup folders (as on hosts without a shared file
# system): only the chief's hold state, the others get it by broadcast.
drop_dir = os.path.join(out_dir, f"drop{TASK_INDEX}")
swa_dir = os.path.join(out_dir, f"swa{TASK_INDEX}")


class Interrupt(keras.callbacks.Callback):
    def on_epoch_end(self, epoch, logs=None):
        if epoch == 1:
            raise KeyboardInterrupt("simulated failure")


with s.scope():
    model = helpers.make_model(batch_norm=True)
data = helpers.make_dataset(*helpers.make_data())
callbacks = [
    LayerDropping(warmup_epochs=5, force_drops={0: "relu1"}, backup_dir=drop_dir),
    StochasticWeightAveraging(start=0.25, backup_dir=swa_dir),
    Interrupt(),
]
try:
    model.fit(data, epochs=3, callbacks=callbacks, verbose=0)
except KeyboardInterrupt:
    pass
files = {d: sorted(os.listdir(os.path.join(out_dir, d))) for d in sorted(os.listdir(out_dir))}
drop = LayerDropping(warmup_epochs=5, backup_dir=drop_dir)
swa = StochasticWeightAveraging(start=0.25, backup_dir=swa_dir)
record = []


class Probe(keras.callbacks.Callback):
    def on_epoch_begin(self, epoch, logs=None):
        record.append([epoch, drop.dropped, drop.cut, swa.num_averaged])


model.fit(data, epochs=3, initial_epoch=2, callbacks=[drop, swa, Probe()], verbose=0)
print(json.dumps({
    "files": files,
    "record": record,
    "num_averaged": swa.num_averaged,
    "history": [h["epoch"] for h in drop.history],
    "weights": [w.numpy().tolist() for w in model.trainable_weights],
}))
"""


@pytest.mark.slow
def test_resume_takes_the_chiefs_state_on_every_worker(tmp_path):
    chief, worker = run_workers(_RESUME, 2, tmp_path, helpers=__file__, timeout=400)
    # Only the chief wrote state (the others' folders were never created).
    assert set(chief["files"]) == {"drop0", "swa0"}
    assert chief["files"]["drop0"] == ["learn_drop_state.json"]
    # Both resumed at epoch 2 with the chief's cut and average (epochs 0 and 1).
    assert chief["record"] == worker["record"] == [[2, 1, "relu1", 2]]
    assert chief["num_averaged"] == worker["num_averaged"] == 3
    assert chief["history"] == worker["history"] == [0, 1, 2]
    _assert_equal_weights(chief["weights"], worker["weights"])


def _tf_config(monkeypatch, cluster, task_type, index):
    config = {"cluster": cluster, "task": {"type": task_type, "index": index}}
    monkeypatch.setenv("TF_CONFIG", json.dumps(config))


def test_roles_from_tf_config(monkeypatch):
    from kerascnn import _distribute as d

    monkeypatch.delenv("TF_CONFIG", raising=False)
    assert (d.is_chief(), d.worker_index(), d.num_workers(), d.is_multi_worker()) == (
        True,
        0,
        1,
        False,
    )
    assert d.worker_path("/tmp/x") == "/tmp/x"
    workers = {"worker": ["127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3"]}
    _tf_config(monkeypatch, workers, "worker", 0)
    assert d.is_chief() and d.num_workers() == 3 and d.is_multi_worker()
    _tf_config(monkeypatch, workers, "worker", 2)
    assert not d.is_chief() and d.worker_index() == 2
    assert d.worker_path("/tmp/x/") == "/tmp/x.worker2"
    with_chief = dict(workers, chief=["127.0.0.1:9"])
    _tf_config(monkeypatch, with_chief, "worker", 0)  # a "chief" task exists: worker 0 is not it
    assert not d.is_chief() and d.worker_index() == 1 and d.num_workers() == 4
    _tf_config(monkeypatch, with_chief, "chief", 0)
    assert d.is_chief() and d.worker_index() == 0
    _tf_config(monkeypatch, with_chief, "evaluator", 0)
    assert not d.is_chief()


def test_run_workers_reports_the_failed_worker_and_kills_the_others():
    start = time.monotonic()
    with pytest.raises(AssertionError) as info:
        run_workers(
            """
            s = strategy()
            if TASK_INDEX == 1:
                sys.exit(3)
            # Worker 0 waits for worker 1 in a collective: the runner must kill it.
            s.reduce("SUM", s.run(lambda: tf.constant(1.0)), axis=None)
            """,
            2,
            timeout=120,
        )
    message = str(info.value)
    # Worker 0 may also fail on its own (its peer's socket closed) before it is killed.
    assert "failed" in message.splitlines()[0] and "worker 1 (rc=3)" in message
    assert time.monotonic() - start < 100


_SECOND_DROP = """
from kerascnn.callbacks import LayerDropping

s = strategy()
with s.scope():
    model = helpers.make_model()
drop = LayerDropping(warmup_epochs=5, force_drops={0: "relu1", 2: "relu2"}, refresh_every=None)
hist = model.fit(helpers.make_dataset(*helpers.make_data()), epochs=4, callbacks=[drop], verbose=0)
print(json.dumps({
    "decisions": [[h["epoch"], h["decision"]] for h in drop.history],
    "builds": [[t["epoch"], t["source"], t["samples"]] for t in drop.timings],
    "loss": [float(v) for v in hist.history["loss"]],
    "weights": [w.numpy().tolist() for w in model.trainable_weights],
}))
"""


@pytest.mark.slow
def test_second_drop_from_each_workers_cache():
    chief, worker = run_workers(_SECOND_DROP, 2, helpers=__file__, timeout=400)
    assert chief["decisions"] == worker["decisions"]
    # The second build reads each worker's own first cache (its half of the data).
    assert chief["builds"] == worker["builds"] == [[1, "raw", N // 2], [3, "cache", N // 2]]
    assert chief["loss"] == worker["loss"] and np.all(np.isfinite(chief["loss"]))
    _assert_equal_weights(chief["weights"], worker["weights"])
