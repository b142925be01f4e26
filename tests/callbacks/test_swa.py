"""Tests of kerascnn.callbacks.swa.StochasticWeightAveraging."""

import argparse

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


# ---------------------------------------------------------------- SWA learning rate
from kerascnn.callbacks.swa import SWALearningRate, swa_learning_rate  # noqa: E402
from kerascnn.training.schedules import OneCycle  # noqa: E402


class _Rates(keras.callbacks.Callback):
    """The learning rate the optimizer uses at the first and last batch of each epoch."""

    def __init__(self, last_batch):
        super().__init__()
        self.first, self.last, self.last_batch = [], [], last_batch

    def _rate(self):
        return float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))

    def on_train_batch_begin(self, batch, logs=None):
        if batch == 0:
            self.first.append(self._rate())
        if batch == self.last_batch:
            self.last.append(self._rate())


def test_swa_learning_rate_formulas():
    # Constant (SWA paper Sec. 3.1, alpha_2 from the first averaged epoch).
    assert swa_learning_rate(0, 0.1, 0.01) == 0.01
    # Annealing as PyTorch SWALR: lr0 + (swa_lr - lr0) * a((k + 1) / anneal_epochs).
    lin = [
        swa_learning_rate(k, 0.1, 0.02, anneal_epochs=4, anneal_strategy="linear") for k in range(5)
    ]
    np.testing.assert_allclose(lin, [0.08, 0.06, 0.04, 0.02, 0.02])
    cos = [swa_learning_rate(k, 0.1, 0.02, anneal_epochs=2) for k in range(3)]
    np.testing.assert_allclose(cos, [0.06, 0.02, 0.02])
    # Cyclical (SWA paper eq. 2): t = (mod(i - 1, c) + 1) / c, alpha_1 -> alpha_2 per cycle.
    cyc = [swa_learning_rate(k, 0.1, 0.02, "cyclical", cycle_epochs=4) for k in range(5)]
    np.testing.assert_allclose(cyc, [0.08, 0.06, 0.04, 0.02, 0.08])


def test_lr_per_epoch_follows_the_anneal_then_is_restored():
    x, y = _data()
    model = _model(batch_norm=False)  # SGD(0.05): a variable learning rate
    rates = _Rates(last_batch=3)
    swa = StochasticWeightAveraging(
        start=0.5, swa_lr=0.01, anneal_epochs=2, anneal_strategy="linear"
    )
    model.fit(x, y, batch_size=16, epochs=8, verbose=0, callbacks=[rates, swa])
    # 8 epochs, start 0.5: the phase is epochs 4..8 (1-based); lr0 = 0.05.
    want = [0.05] * 3 + [0.03] + [0.01] * 4
    np.testing.assert_allclose(rates.first, want, rtol=1e-6)
    np.testing.assert_allclose(rates.last, want, rtol=1e-6)
    assert swa.num_averaged == 5
    np.testing.assert_allclose(float(model.optimizer.learning_rate.numpy()), 0.05)


def test_schedule_is_wrapped_in_graph_with_sam_and_restored():
    from kerascnn.training.sam import enable_sam

    x, y = _data()
    model = _model(batch_norm=False)
    schedule = OneCycle(0.1, total_steps=32)
    model.compile(keras.optimizers.SGD(schedule), "mse")
    enable_sam(model, rho=0.05)
    rates = _Rates(last_batch=3)
    swa = StochasticWeightAveraging(start=0.75, swa_lr=0.02)
    model.fit(x, y, batch_size=16, epochs=8, verbose=0, callbacks=[rates, swa])
    # 8 epochs of 4 steps, start 0.75: the phase is epochs 6..8 (1-based).
    steps = [4 * e for e in range(5)]
    want_first = [float(schedule(s)) for s in steps] + [0.02] * 3
    want_last = [float(schedule(s + 3)) for s in steps] + [0.02] * 3
    np.testing.assert_allclose(rates.first, want_first, rtol=1e-5)
    np.testing.assert_allclose(rates.last, want_last, rtol=1e-5)
    assert model.optimizer._learning_rate is schedule  # the user's schedule is back
    # A second fit reuses the wrapper (the traced step would hold a new one otherwise).
    rates2 = _Rates(last_batch=3)
    model.fit(x, y, batch_size=16, epochs=4, verbose=0, callbacks=[rates2, swa])
    assert rates2.first[-1] == pytest.approx(0.02)


def test_cyclical_averages_at_cycle_ends():
    x, y = _data()
    model = _model(batch_norm=False)
    recorder, rates = _Recorder(), _Rates(last_batch=0)
    swa = StochasticWeightAveraging(start=0.5, swa_lr=0.01, schedule="cyclical", cycle_epochs=2)
    with pytest.warns(UserWarning, match="the last 1 epoch"):
        model.fit(x, y, batch_size=16, epochs=8, verbose=0, callbacks=[rates, recorder, swa])
    # Phase: 0-based epochs 3..7, cycles (3, 4), (5, 6) and 7 alone (trained, not averaged).
    np.testing.assert_allclose(rates.first, [0.05] * 3 + [0.03, 0.01, 0.03, 0.01, 0.03])
    assert [swa.averages_at(e, 8) for e in range(8)] == [False] * 4 + [True, False, True, False]
    assert swa.num_averaged == 2
    expected = np.mean([recorder.weights[4][0], recorder.weights[6][0]], axis=0)
    np.testing.assert_allclose(model.trainable_variables[0].numpy(), expected, rtol=1e-6)


class _Interrupt(keras.callbacks.Callback):
    def __init__(self, epoch):
        super().__init__()
        self.epoch = epoch

    def on_epoch_begin(self, epoch, logs=None):
        if epoch == self.epoch:
            raise RuntimeError("interrupted")


@pytest.mark.parametrize("lr", ["variable", "schedule"])
def test_resume_mid_swa_phase_gives_the_uninterrupted_weights(tmp_path, lr):
    x, y = _data()

    def run(folder, interrupt=None):
        model = _model(batch_norm=False)
        if lr == "schedule":
            model.compile(
                keras.optimizers.SGD(keras.optimizers.schedules.CosineDecay(0.1, 40)), "mse"
            )
        backup = str(tmp_path / folder)
        callbacks = [
            StochasticWeightAveraging(
                start=0.5, swa_lr=0.01, anneal_epochs=3, backup_dir=f"{backup}/swa"
            ),
            keras.callbacks.BackupAndRestore(backup),
        ]
        model.fit(
            x,
            y,
            batch_size=16,
            epochs=10,
            verbose=0,
            shuffle=False,
            callbacks=callbacks + ([_Interrupt(interrupt)] if interrupt else []),
        )
        return model

    straight = run("a")
    with pytest.raises(RuntimeError, match="interrupted"):
        run("b", interrupt=6)  # epochs 5..6 (1-based) of the phase 5..10 averaged
    resumed = run("b")
    for a, b in zip(straight.trainable_variables, resumed.trainable_variables):
        np.testing.assert_allclose(b.numpy(), a.numpy(), rtol=1e-5, atol=1e-6)
    assert not (tmp_path / "b").exists()  # BackupAndRestore removed it, SWA state included


def test_get_config_round_trip_and_bad_lr_args():
    swa = StochasticWeightAveraging(
        start=0.6, swa_lr=0.01, schedule="cyclical", cycle_epochs=3, backup_dir="somewhere"
    )
    config = swa.get_config()
    assert StochasticWeightAveraging(**config).get_config() == config
    assert config["swa_lr"] == 0.01 and config["cycle_epochs"] == 3
    schedule = SWALearningRate(keras.optimizers.schedules.CosineDecay(0.1, 10))
    restored = keras.optimizers.schedules.deserialize(
        keras.optimizers.schedules.serialize(schedule)
    )
    assert isinstance(restored, SWALearningRate)
    assert float(restored(3)) == pytest.approx(float(schedule.base(3)))
    with pytest.raises(ValueError, match="swa_lr=None"):
        StochasticWeightAveraging(schedule="cyclical")
    with pytest.raises(ValueError, match="anneal_epochs"):
        StochasticWeightAveraging(swa_lr=0.1, schedule="cyclical", anneal_epochs=2)
    with pytest.raises(ValueError, match="anneal_strategy"):
        StochasticWeightAveraging(swa_lr=0.1, anneal_strategy="step")
    with pytest.raises(ValueError, match="swa_lr"):
        StochasticWeightAveraging(swa_lr=-1.0)
    x, y = _data()
    model = _model(batch_norm=False)
    model.compile(keras.optimizers.SGD(lambda: 0.1), "mse")
    with pytest.raises(ValueError, match="learning_rate"):
        model.fit(x, y, epochs=1, verbose=0, callbacks=[StochasticWeightAveraging(swa_lr=0.01)])


def test_train_config_swa_schedule_options():
    from kerascnn.cli import train as train_cli
    from kerascnn.training.config import TrainConfig

    config = TrainConfig(swa=True, swa_lr=1, swa_cycle_epochs=2).validate()
    assert (config.swa, config.swa_lr, config.swa_cycle_epochs) == (0.75, 1.0, 2)
    assert isinstance(config.swa_lr, float)
    for kwargs, match in [
        ({"swa_lr": 0.01}, "swa_lr needs swa"),
        ({"swa": True, "swa_anneal_epochs": 2}, "needs swa_lr"),
        ({"swa": True, "swa_lr": 0.1, "swa_cycle_epochs": 2, "swa_anneal_epochs": 1}, "constant"),
        ({"swa": True, "swa_lr": 0.0}, "swa_lr"),
    ]:
        with pytest.raises(ValueError, match=match):
            TrainConfig(**kwargs).validate()
    parser = train_cli.add_train_parser(argparse.ArgumentParser().add_subparsers(dest="command"))
    args = parser.parse_args(["--swa", "--swa-lr", "0.01", "--swa-anneal-epochs", "2"])
    assert (args.swa, args.swa_lr, args.swa_anneal_epochs, args.swa_cycle_epochs) == (
        0.75,
        0.01,
        2,
        None,
    )
