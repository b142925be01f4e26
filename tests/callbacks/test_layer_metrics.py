"""Tests of LayerMetrics and of stability values in TensorBoard event files."""

import copy
import glob
import os

import keras
import numpy as np
import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from kerascnn.callbacks import LayerMetrics, LayerStatistics, StabilityStopping


def conv_model():
    return keras.Sequential(
        [
            keras.Input((8, 8, 3)),
            keras.layers.Conv2D(4, 3, name="c1"),
            keras.layers.Conv2D(4, 3, activation="relu", name="c2"),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(3, name="dense"),
        ]
    )


def load(path):
    acc = EventAccumulator(path, size_guidance={"tensors": 0, "scalars": 0})
    acc.Reload()
    return acc


def scalars(acc, tag):
    return [
        float(np.asarray(__import__("tensorflow").make_ndarray(e.tensor_proto)))
        for e in acc.Tensors(tag)
    ]


def test_layer_metrics_event_files(tmp_path):
    keras.utils.set_random_seed(0)
    model = conv_model()
    model.compile(keras.optimizers.SGD(0.1), "sparse_categorical_crossentropy")
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(16, 8, 8, 3)).astype("float32"), rng.integers(0, 3, 16)
    w0 = model.get_layer("c1").kernel.numpy().copy()
    stop = StabilityStopping(patience=5)
    metrics = LayerMetrics(str(tmp_path), histograms=True)
    tb = keras.callbacks.TensorBoard(str(tmp_path))
    model.fit(x, y, batch_size=8, epochs=2, verbose=0, callbacks=[stop, metrics, tb])
    acc = load(str(tmp_path / "layer_metrics"))
    tags = acc.Tags()["tensors"]
    for metric in ("activation_mean", "activation_std"):
        assert f"{metric}/c1" in tags and f"{metric}/c2" in tags
    for metric in ("weight_norm", "gradient_norm", "update_ratio"):
        assert f"{metric}/c1" in tags and f"{metric}/dense" in tags
    assert "custom_scalars__config__" in tags
    # The same μ as StabilityStopping's (one mechanism).
    np.testing.assert_allclose(
        scalars(acc, "activation_std/c2"), [h["c2"] for h in stop.history], rtol=1e-6
    )
    w1 = model.get_layer("c1").kernel.numpy()
    np.testing.assert_allclose(
        scalars(acc, "weight_norm/c1")[-1],
        np.linalg.norm(np.concatenate([w1.ravel(), model.get_layer("c1").bias.numpy()])),
        rtol=1e-5,
    )
    assert scalars(acc, "update_ratio/c1")[0] > 0
    assert all(g > 0 for g in scalars(acc, "gradient_norm/c1"))
    assert any(t.startswith("weights/") for t in acc.Tags()["tensors"])  # histograms
    # keras' TensorBoard placed after StabilityStopping logs its values.
    train = load(glob.glob(os.path.join(str(tmp_path), "train"))[0])
    assert "epoch_stability/c1" in train.Tags()["tensors"]
    assert len(train.Tensors("epoch_stability/c2")) == 2
    # Epoch-aligned with keras' own epoch_* scalars (0-based steps).
    keras_steps = [e.step for e in train.Tensors("epoch_stability/c2")]
    assert keras_steps == [0, 1]
    assert [e.step for e in acc.Tensors("activation_std/c2")] == keras_steps
    assert [e.step for e in acc.Tensors("weight_norm/c1")] == keras_steps
    assert LayerStatistics.get(model) is None
    assert not np.allclose(w0, w1)


def test_update_freq_batches(tmp_path):
    keras.utils.set_random_seed(1)
    model = conv_model()
    model.compile(keras.optimizers.SGD(0.0), "sparse_categorical_crossentropy")
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(16, 8, 8, 3)).astype("float32"), rng.integers(0, 3, 16)
    metrics = LayerMetrics(str(tmp_path), update_freq=2, layers=["c2"], weight_layers=["c1"])
    copy.deepcopy(metrics)
    model.fit(x, y, batch_size=4, epochs=2, verbose=0, shuffle=False, callbacks=[metrics])
    acc = load(str(tmp_path / "layer_metrics"))
    steps = [e.step for e in acc.Tensors("activation_std/c2")]
    assert steps == [2, 4, 6, 8]
    values = scalars(acc, "activation_std/c2")
    # lr=0, no shuffle: each epoch's two windows (batches 1-2, 3-4) repeat,
    # and differ from each other (the windows are differenced, not cumulative).
    np.testing.assert_allclose(values[2:], values[:2], rtol=1e-5)
    assert abs(values[0] - values[1]) > 1e-4
    assert "activation_std/c1" not in acc.Tags()["tensors"]
    assert scalars(acc, "update_ratio/c1") == [0.0] * 4
    copy.deepcopy(metrics)


def test_bad_arguments():
    with pytest.raises(ValueError, match="update_freq"):
        LayerMetrics("x", update_freq=0)
    with pytest.raises(TypeError, match="log_dir"):
        LayerMetrics(3)
    with pytest.raises(TypeError, match="histograms"):
        LayerMetrics("x", histograms="yes")
    with pytest.raises(TypeError, match="layers"):
        LayerMetrics("x", layers=[])
    with pytest.raises(ValueError, match="update_freq"):
        LayerMetrics("x", update_freq="batch")
    with pytest.raises(ValueError, match="log_dir.*file"):
        LayerMetrics(__file__)


def test_unwritable_log_dir_is_a_clear_error_before_training():
    model = conv_model()
    model.compile(keras.optimizers.SGD(0.1), "sparse_categorical_crossentropy")
    x, y = np.zeros((4, 8, 8, 3), "float32"), np.zeros(4, "int64")
    with pytest.raises(ValueError, match="log_dir='/proc/forbidden'"):
        model.fit(x, y, epochs=1, verbose=0, callbacks=[LayerMetrics("/proc/forbidden")])
    assert LayerStatistics.get(model) is None
    assert model.fit(x, y, epochs=1, verbose=0).history["loss"]


def test_plot_stability_from_tensorboard_and_csv(tmp_path):
    import argparse

    from kerascnn.cli.plots import add_plot_stability_parser
    from kerascnn.observe.stability_logs import read_stability

    keras.utils.set_random_seed(2)
    model = conv_model()
    model.compile(keras.optimizers.SGD(0.0), "sparse_categorical_crossentropy")
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(8, 8, 8, 3)).astype("float32"), rng.integers(0, 3, 8)
    stop = StabilityStopping()
    csv_path = str(tmp_path / "log.csv")
    model.fit(
        x,
        y,
        batch_size=4,
        epochs=8,
        verbose=0,
        callbacks=[
            stop,
            keras.callbacks.TensorBoard(str(tmp_path / "tb")),
            keras.callbacks.CSVLogger(csv_path),
        ],
    )
    assert stop.stopped_epoch == 3
    for source in (str(tmp_path / "tb"), csv_path):
        series = read_stability(source)
        assert sorted(series) == ["c1", "c2"]
        np.testing.assert_allclose(series["c2"], [h["c2"] for h in stop.history], rtol=1e-6)
    parser = argparse.ArgumentParser()
    add_plot_stability_parser(parser.add_subparsers())
    png = str(tmp_path / "fig.png")
    args = parser.parse_args(["plot-stability", str(tmp_path / "tb"), "-o", png])
    assert args.func(args) == 0
    assert os.path.getsize(png) > 1000
    with pytest.raises(ValueError, match="logdir"):
        read_stability(str(tmp_path / "missing"))
    with pytest.raises(ValueError, match="nor a CSV"):
        read_stability(png)
    os.mkdir(tmp_path / "empty")
    with pytest.raises(ValueError, match="No 'stability"):
        read_stability(str(tmp_path / "empty"))


class GradientRecorder(keras.callbacks.Callback):
    """Per step, the float64 numpy gradient norms of the step's batch (no shuffle)."""

    def __init__(self, x, y, batch_size, names):
        super().__init__()
        self.data, self.batch_size, self.names = (x, y), batch_size, names
        self.norms = []

    def on_train_batch_begin(self, batch, logs=None):
        x, y = self.data
        part = slice(batch * self.batch_size, (batch + 1) * self.batch_size)
        weights = [list(self.model.get_layer(n).trainable_weights) for n in self.names]
        with __import__("tensorflow").GradientTape() as tape:
            loss = self.model.compute_loss(
                x=None, y=y[part], y_pred=self.model(x[part], training=True)
            )
        grads = tape.gradient(loss, [w for layer in weights for w in layer])
        norms, k = {}, 0
        for name, layer in zip(self.names, weights):
            flat = [np.asarray(g, np.float64).ravel() for g in grads[k : k + len(layer)]]
            norms[name] = np.linalg.norm(np.concatenate(flat))
            k += len(layer)
        self.norms.append(norms)


def flat_weights(model, name):
    return np.concatenate(
        [np.asarray(w.numpy(), np.float64).ravel() for w in model.get_layer(name).trainable_weights]
    )


def test_in_graph_norms_equal_numpy(tmp_path):
    keras.utils.set_random_seed(3)
    model = conv_model()
    model.compile(keras.optimizers.SGD(0.5), "sparse_categorical_crossentropy")
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(12, 8, 8, 3)).astype("float32"), rng.integers(0, 3, 12)
    names = ["c1", "c2", "dense"]
    start = {n: flat_weights(model, n) for n in names}
    recorder = GradientRecorder(x, y, 4, names)
    metrics = LayerMetrics(str(tmp_path))
    model.fit(x, y, batch_size=4, epochs=1, verbose=0, shuffle=False, callbacks=[recorder, metrics])
    latest = metrics.latest
    assert sorted(latest["weight_norm"]) == sorted(names)
    for name in names:
        now = flat_weights(model, name)
        np.testing.assert_allclose(latest["weight_norm"][name], np.linalg.norm(now), rtol=1e-6)
        ratio = np.linalg.norm(now - start[name]) / np.linalg.norm(start[name])
        assert ratio > 1e-3  # the weights moved
        np.testing.assert_allclose(latest["update_ratio"][name], ratio, rtol=1e-5)
        grad = np.mean([step[name] for step in recorder.norms])
        np.testing.assert_allclose(latest["gradient_norm"][name], grad, rtol=1e-5)
    # What was written is what `latest` holds.
    acc = load(str(tmp_path / "layer_metrics"))
    for metric in ("weight_norm", "update_ratio", "gradient_norm"):
        np.testing.assert_allclose(scalars(acc, f"{metric}/c2"), [latest[metric]["c2"]], rtol=1e-6)
    assert "on_train_batch_end" not in metrics.__dict__  # no per-batch hook: async steps
