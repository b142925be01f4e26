"""Tests of kerascnn.callbacks.swa.StochasticWeightAveraging."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from kerascnn.callbacks.swa import StochasticWeightAveraging


class _Recorder(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.weights = []

    def on_epoch_end(self, epoch, logs=None):
        self.weights.append([v.numpy().copy() for v in self.model.trainable_variables])


def _data(n=64):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, 6)).astype("float32")
    y = (x @ rng.normal(size=(6, 1)) + 0.1).astype("float32")
    return x, y


def _model(batch_norm):
    keras.utils.set_random_seed(0)
    layers = [keras.Input((6,)), keras.layers.Dense(8)]
    if batch_norm:
        layers.append(keras.layers.BatchNormalization(momentum=0.9))
    layers += [keras.layers.ReLU(), keras.layers.Dense(1)]
    model = keras.Sequential(layers)
    model.compile(keras.optimizers.SGD(0.05), "mse")
    return model


def test_average_equals_mean_of_recorded_weights():
    x, y = _data()
    model = _model(batch_norm=False)
    recorder = _Recorder()
    swa = StochasticWeightAveraging(start=0.75)
    model.fit(x, y, batch_size=16, epochs=8, verbose=0, callbacks=[recorder, swa])
    # 8 epochs, start 0.75: the ends of epochs 6, 7, 8 (1-based) are averaged.
    assert swa.num_averaged == 3
    expected = [np.mean([w[i] for w in recorder.weights[5:]], axis=0) for i in range(4)]
    for got, want in zip(model.trainable_variables, expected):
        np.testing.assert_allclose(got.numpy(), want, rtol=1e-6, atol=1e-7)
    # ... and not the last epoch's weights.
    assert not np.allclose(model.trainable_variables[0].numpy(), recorder.weights[-1][0])


def test_batch_norm_statistics_re_estimated_from_given_data():
    x, y = _data()
    model = _model(batch_norm=True)
    swa = StochasticWeightAveraging(start=0.5, data=x, batch_size=16)
    model.fit(x, y, batch_size=16, epochs=4, verbose=0, callbacks=[swa])
    bn = model.layers[1]
    assert bn.momentum == 0.9  # restored after the pass
    # Exact: moving mean = average over the 4 batches of the batch means of BN's input.
    h = x @ model.layers[0].kernel.numpy() + model.layers[0].bias.numpy()
    batches = h.reshape(4, 16, 8)
    np.testing.assert_allclose(bn.moving_mean.numpy(), batches.mean(axis=1).mean(0), atol=1e-5)
    np.testing.assert_allclose(
        bn.moving_variance.numpy(), batches.var(axis=1).mean(0), rtol=1e-4, atol=1e-5
    )


def test_batch_norm_pass_uses_fit_data_when_none_given():
    x, y = _data()
    model = _model(batch_norm=True)
    swa = StochasticWeightAveraging(start=0.5)
    dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(16)
    model.fit(dataset, epochs=2, verbose=0, callbacks=[swa])
    h = x @ model.layers[0].kernel.numpy() + model.layers[0].bias.numpy()
    np.testing.assert_allclose(
        model.layers[1].moving_mean.numpy(), h.reshape(4, 16, 8).mean(axis=1).mean(0), atol=1e-5
    )


def test_early_stop_leaves_weights_and_bad_args():
    x, y = _data()
    model = _model(batch_norm=False)

    class Stop(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            self.model.stop_training = True

    recorder = _Recorder()
    with pytest.warns(UserWarning, match="before averaging started"):
        model.fit(
            x, y, epochs=10, verbose=0, callbacks=[recorder, StochasticWeightAveraging(), Stop()]
        )
    np.testing.assert_array_equal(model.trainable_variables[0].numpy(), recorder.weights[-1][0])
    with pytest.raises(ValueError, match="start"):
        StochasticWeightAveraging(start=1.0)
    with pytest.raises(ValueError, match="batch_size"):
        StochasticWeightAveraging(batch_size=0)


def test_checkpoint_after_swa_holds_the_average_and_fit_data_is_captured(tmp_path):
    import warnings

    x, y = _data()
    model = _model(batch_norm=True)
    swa = StochasticWeightAveraging(start=0.5)
    path = str(tmp_path / "ckpt.keras")
    checkpoint = keras.callbacks.ModelCheckpoint(path)
    # LayerMetrics (after SWA) rebuilds the train function in on_train_begin: the fit
    # data is still captured (lazily, at the first batch) for the BN pass.
    from kerascnn.callbacks import LayerMetrics

    metrics = LayerMetrics(str(tmp_path / "lm"), layers=[model.layers[0].name])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.fit(x, y, batch_size=16, epochs=4, verbose=0, callbacks=[swa, metrics, checkpoint])
    assert not [w for w in caught if "stale" in str(w.message)]
    assert swa.num_averaged == 3  # epochs 2, 3, 4 (1-based)
    # The swap happens at the end of the last planned epoch, before the
    # checkpoint placed after SWA writes: the checkpoint is the final model.
    loaded = keras.saving.load_model(path)
    for a, b in zip(loaded.weights, model.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    with pytest.raises(ValueError, match="verbose='loud'"):
        StochasticWeightAveraging(verbose="loud")
