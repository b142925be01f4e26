"""Tests of LayerFreezing (the Learn&Drop paper's freezing baseline)."""

import keras
import numpy as np

from kerascnn import zoo
from kerascnn.callbacks import LayerFreezing
from kerascnn.callbacks.learn_drop import dropping


class Snapshots(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.weights = {}

    def on_epoch_end(self, epoch, logs=None):
        self.weights[epoch] = {
            layer.name: [w.numpy().copy() for w in layer.weights] for layer in self.model.layers
        }


def test_vgg_bn_frozen_layers_stop_changing_and_flags_restored(monkeypatch):
    model = zoo.vgg11_bn(input_shape=(32, 32, 3), width_multiplier=0.125, classes=3)
    model.compile(keras.optimizers.SGD(0.01, momentum=0.9), "sparse_categorical_crossentropy")
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(16, 32, 32, 3)).astype("float32"), rng.integers(0, 3, 16)
    freeze = LayerFreezing(warmup_epochs=1, force_drops={1: "stage2_pool"})
    snaps = Snapshots()
    traces, original = [], dropping._Head.train_step

    def counted(self, data):
        traces.append(id(self))
        return original(self, data)

    monkeypatch.setattr(dropping._Head, "train_step", counted)
    history = model.fit(x, y, batch_size=8, epochs=4, callbacks=[freeze, snaps], verbose=0)
    h = history.history
    assert h["learn_drop/frozen_convs"] == [0, 0, 2, 2]  # frozen during that epoch
    # Frozen layers (conv, BN incl. its moving statistics) keep their weights.
    for name in ("stage1_conv1_conv", "stage1_conv1_bn", "stage2_conv1_bn"):
        for a, b in zip(snaps.weights[1][name], snaps.weights[3][name]):
            np.testing.assert_array_equal(a, b)
    for name in ("stage3_conv1_conv", "predictions"):
        assert any(
            not np.array_equal(a, b) for a, b in zip(snaps.weights[1][name], snaps.weights[3][name])
        )
    # Still run forward: the MACs of what trains do not shrink.
    assert len(set(h["learn_drop/train_macs"])) == 1
    assert np.isnan(h["learn_drop/score/stage1_conv1_conv"][3])
    assert np.isfinite(h["learn_drop/score/stage3_conv1_conv"][3])
    assert all(layer.trainable for layer in model.layers)  # restored
    assert freeze.history[1]["decision"] == {"cut": "stage2_pool", "convs": 2}
    assert len(traces) == 1  # the head's train step is traced once per freeze
