"""Tests of the main job `kerascnn.training.run` on the embedded dataset (offline)."""

import json
import os

import keras
import numpy as np
import pytest

from kerascnn import cli, data
from kerascnn.cli import train as train_cli
from kerascnn.training import run as train_module
from kerascnn.training.run import train


@pytest.fixture(autouse=True)
def _offline(monkeypatch, tmp_path):
    monkeypatch.delenv("KERASCNN_DATA_DIR", raising=False)
    monkeypatch.setenv("KERASCNN_CACHE_DIR", str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def one_epoch_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    report = train(
        "compact_mnist_1k5_dw", epochs=1, batch_size=128, output_dir=str(out), verbose=0, seed=1
    )
    return report, out


def test_report_and_files(one_epoch_run):
    report, out = one_epoch_run
    with open(out / "report.json") as f:
        saved = json.load(f)
    assert saved["test_accuracy"] == pytest.approx(report["test_accuracy"])
    assert saved["planned_epochs"] == saved["trained_epochs"] == 1
    assert saved["stopped_epoch"] is None
    assert saved["train_examples"] == 2500 and saved["dataset"] == "embedded"
    assert saved["data_source"].startswith("embedded:")
    assert saved["params"] > saved["trainable_params"] == 1560  # the paper's Table 1 count
    assert saved["macs"] > 0
    assert saved["training_macs_estimate"] == 3 * saved["macs"] * 2500
    assert saved["wall_time_s"] >= saved["train_time_s"] > 0
    assert len(saved["epoch_times_s"]) == 1
    assert set(saved["history"]) >= {"loss", "accuracy", "val_loss", "val_accuracy"}
    # A trained 10-class model beats chance on the test split.
    assert 0.1 < saved["test_accuracy"] <= 1.0
    for name in ("model.keras", "report.json", "training_curves.png", "filters_per_layer.png"):
        assert (out / name).stat().st_size > 0, name
    events = [f for _, _, fs in os.walk(out / "logs") for f in fs if "tfevents" in f]
    assert events  # TensorBoard logs for train and validation
    # Without --stability-stopping the rule only watches: the report says whether
    # (and when) training became stable, and the μ curves are plotted.
    stability = saved["stability"]
    assert stability["monitor_only"] is True and stability["stopped"] is False
    assert stability["epochs_run"] == 1 and stability["stable_epoch"] is None
    assert stability["preset"] == "paper"  # the paper's rule unless asked otherwise
    assert len(saved["stability_history"]) == 1
    assert (out / "stability.png").stat().st_size > 0


def test_reloaded_model_evaluates_to_reported_accuracy(one_epoch_run):
    report, out = one_epoch_run
    model = keras.saving.load_model(out / "model.keras")
    test = data.load("embedded", "test", batch_size=128, shuffle=False)
    result = model.evaluate(test, verbose=0, return_dict=True)
    assert abs(result["accuracy"] - report["test_accuracy"]) <= 1e-6
    assert abs(result["loss"] - report["test_loss"]) <= 1e-5


def test_extension_points(tmp_path):
    class Probe(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.stopped_epoch = 0
            self.epochs = 0

        def on_epoch_end(self, epoch, logs=None):
            self.epochs += 1
            if epoch == 1:  # stop after the second of three planned epochs
                self.stopped_epoch = epoch
                self.model.stop_training = True

        def report_fields(self):
            return {"epochs_seen": self.epochs}

    report = train(
        "compact_mnist_1k5_dw",
        epochs=3,
        batch_size=256,
        limit=512,
        output_dir=str(tmp_path),
        verbose=0,
        callbacks=[Probe()],
        plots=False,
    )
    assert report["planned_epochs"] == 3 and report["trained_epochs"] == 2
    assert report["stopped_epoch"] == 2
    assert report["probe"] == {"epochs_seen": 2}
    assert report["train_examples"] == 512
    assert report["time_saved_estimate_s"] > 0
    assert not (tmp_path / "training_curves.png").exists()


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"model": "resnet9000"}, "Unknown model"),
        ({"dataset": "imagenet21k"}, "Unknown dataset"),
        ({"epochs": -1}, "epochs must be an integer >= 1"),
        ({"batch_size": 0}, "batch_size"),
        ({"optimizer": "lion"}, "optimizer"),
        ({"learning_rate": -0.1}, "learning_rate"),
        ({"template": "triangle"}, "template"),
        ({"data_dir": "/nonexistent/dir"}, "data_dir does not exist"),
        ({"strategy": "tpu"}, "strategy"),
        ({"mixup": -1.0}, "mixup must be"),
        ({"label_smoothing": 1.0}, "label_smoothing must be"),
        ({"sam": -0.1}, "sam must be"),
        ({"cutout": 0}, "cutout must be"),
        ({"swa": 1.0}, "swa must be"),
        ({"kernel": "dw_xx"}, "kernel must be"),
        ({"organize": True, "theta": -1.0}, "theta must be"),
        ({"layer_dropping": True, "layer_freezing": True}, "cannot be combined"),
        ({"one_cycle": True, "epochs": 1, "limit": 64, "batch_size": 64}, "one_cycle needs"),
    ],
)
def test_bad_arguments_fail_fast(kwargs, match, tmp_path):
    with pytest.raises(ValueError, match=match):
        train(**{"output_dir": str(tmp_path / "out"), "verbose": 0, **kwargs})
    assert not (tmp_path / "out").exists()  # nothing written


@pytest.mark.parametrize(
    "argv, match",
    [
        (["--model", "resnet9000"], "Unknown model"),
        (["--dataset", "nope"], "Unknown dataset"),
        (["--epochs", "-3"], "epochs must be an integer >= 1"),
        (["--data-dir", "/nonexistent/dir"], "data_dir does not exist"),
        (["--dataset", "cifar100", "--data-dir", "{tmp}"], "not found"),
        (["--stages", "2,x"], "--stages"),
    ],
)
def test_cli_errors_are_one_line(argv, match, tmp_path, capsys):
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    code = cli.main(["train", *argv, "--output-dir", str(tmp_path / "out"), "--verbose", "0"])
    captured = capsys.readouterr()
    assert code == 2
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("kerascnn train: error:")
    assert match in lines[0]
    assert "Traceback" not in captured.err + captured.out


def test_cli_parser_defaults():
    import argparse

    parser = argparse.ArgumentParser()
    train_cli.add_train_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["train"])
    assert (args.model, args.dataset, args.epochs) == ("compact_mnist_25k", "embedded", 15)
    assert args.func is train_cli.run_train_command
    args = parser.parse_args(["train", "--stages", "1,1", "--width", "0.5", "--augment"])
    assert train_cli.train_kwargs(args)["stages"] == [1, 1] and args.augment


def test_deterministic_with_seed(tmp_path):
    kwargs = dict(
        model="compact_mnist_1k5_dw", epochs=1, batch_size=256, limit=512, verbose=0, plots=False
    )
    a = train(output_dir=str(tmp_path / "a"), seed=3, **kwargs)
    b = train(output_dir=str(tmp_path / "b"), seed=3, **kwargs)
    np.testing.assert_allclose(a["history"]["loss"], b["history"]["loss"], rtol=1e-5)


# ---------------------------------------------------------------------------
# Efficiency techniques.
# ---------------------------------------------------------------------------
def test_batch_techniques_cutout_and_mixup():
    import tensorflow as tf

    x = np.ones((8, 28, 28, 1), "float32")
    y = np.arange(8, dtype="int32") % 10
    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(8)
    images, labels = next(iter(train_module.batch_techniques(ds, 10, 10, None, True, seed=1)))
    masked = np.sum(np.asarray(images) == 0, axis=(1, 2, 3))
    # One square of at most 10x10 pixels per image (clipped at the borders).
    assert np.all((masked >= 1) & (masked <= 100)) and np.any(masked == 100)
    np.testing.assert_array_equal(np.asarray(labels), np.eye(10)[y])  # one-hot, no mixup
    ds2 = tf.data.Dataset.from_tensor_slices((np.random.rand(64, 28, 28, 1), y.repeat(8)))
    _, soft = next(iter(train_module.batch_techniques(ds2.batch(64), 10, None, 0.4, True, 1)))
    soft = np.asarray(soft)
    np.testing.assert_allclose(soft.sum(axis=1), 1.0, rtol=1e-5)
    assert np.any((soft > 1e-3) & (soft < 1 - 1e-3))  # mixed labels


def test_training_techniques_in_report(tmp_path):
    report = train(
        "compact_mnist_1k5_dw",
        epochs=2,
        batch_size=64,
        limit=256,
        output_dir=str(tmp_path),
        verbose=0,
        plots=False,
        blurpool=True,
        squeeze_excite=True,
        se_min_channels=8,
        se_latent_channels=4,
        cutout=True,
        mixup=0.2,
        label_smoothing=0.1,
        one_cycle=True,
        swa=0.5,
        sam=True,
        layer_metrics=True,
    )
    t = report["techniques"]
    assert report["training_loss"] == "categorical_crossentropy"
    assert report["lr_schedule"] == "one_cycle"
    assert t["one_cycle"]["total_steps"] == 8  # 2 epochs x ceil(256 / 64)
    assert t["cutout"] == {"size": 10} and t["mixup"] == {"alpha": 0.2}
    assert t["label_smoothing"] == 0.1 and t["sam"] == {"rho": 0.05}
    assert t["swa"] == {"start": 0.5, "epochs_averaged": 2}
    assert set(report["techniques_enabled"]) == {
        "blurpool", "squeeze_excite", "cutout", "mixup", "label_smoothing",
        "one_cycle", "swa", "sam", "layer_metrics",
    }  # fmt: skip
    model = keras.saving.load_model(tmp_path / "model.keras")
    kinds = [type(layer).__name__ for layer in model._flatten_layers(include_self=False)]
    assert t["squeeze_excite"]["blocks"] == kinds.count("SqueezeExcite") > 0
    blur = sum(k.startswith("Blur") for k in kinds)
    assert t["blurpool"]["layers"] == blur > 0
    # Per-layer metrics were written under logs/layers.
    assert any("tfevents" in f for _, _, fs in os.walk(tmp_path / "logs" / "layers") for f in fs)
    # The saved model is compiled with the sparse loss: it evaluates on the
    # integer-label test split to the reported figures.
    test = data.load("embedded", "test", batch_size=128, shuffle=False)
    result = model.evaluate(test, verbose=0, return_dict=True)
    assert abs(result["accuracy"] - report["test_accuracy"]) <= 1e-6
    assert abs(result["loss"] - report["test_loss"]) <= 1e-5


def test_architecture_flags(tmp_path):
    from kerascnn import zoo

    report = train(
        "compact_mnist_25k",
        epochs=1,
        batch_size=128,
        limit=128,
        width_multiplier=0.25,
        output_dir=str(tmp_path / "k"),
        verbose=0,
        plots=False,
        kernel="dw_rpw",
        gap_head=True,
    )
    expected = zoo.build(
        "compact_mnist_25k",
        input_shape=(28, 28, 1),
        width_multiplier=0.25,
        kernel="dw_rpw",
        head="gap",
    )
    assert report["params"] == expected.count_params()
    assert report["techniques"]["kernel"] == {"type": "dw_rpw", "groups": 2, "overlap": 0.5}
    assert report["techniques"]["gap_head"] is True
    assert report["training_loss"] == "sparse_categorical_crossentropy"
    model = keras.saving.load_model(tmp_path / "k" / "model.keras")
    kinds = {type(layer).__name__ for layer in model._flatten_layers(include_self=False)}
    assert "RollingPointwiseConv2D" in kinds

    # The organizer moves MobileNet's units (docs/rf3d.md: theta=0.1 gives 4,4,2,2,1).
    report = train(
        "mobilenet",
        epochs=1,
        batch_size=128,
        limit=128,
        width_multiplier=0.125,
        output_dir=str(tmp_path / "o"),
        verbose=0,
        plots=False,
        organize=True,
        theta=0.1,
    )
    organized = report["techniques"]["organize"]
    assert organized["depths_before"] == [1, 2, 2, 6, 2]
    assert organized["depths_after"] == report["stages"] == [4, 4, 2, 2, 1]


def test_cli_technique_flags(tmp_path, capsys):
    import argparse

    parser = argparse.ArgumentParser()
    train_cli.add_train_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(
        ["train", "--cutout", "--mixup", "--sam", "0.1", "--swa", "--kernel", "dw_gpw"]
    )
    assert (args.cutout, args.mixup, args.sam, args.swa) == (10, 0.2, 0.1, 0.75)
    assert args.kernel == "dw_gpw" and args.label_smoothing == 0.0 and not args.one_cycle
    code = cli.main(
        ["train", "--model", "compact_mnist_1k5_dw", "--epochs", "1", "--limit", "128"]
        + ["--label-smoothing", "0.1", "--cutout", "6", "--blurpool"]
        + ["--output-dir", str(tmp_path), "--verbose", "0"]
    )
    assert code == 0
    with open(tmp_path / "report.json") as f:
        saved = json.load(f)
    assert saved["techniques"]["cutout"] == {"size": 6}
    assert saved["techniques"]["label_smoothing"] == 0.1
    assert saved["techniques_enabled"] == ["blurpool", "cutout", "label_smoothing"]


def test_finished_run_is_recorded_and_cannot_be_resumed(one_epoch_run):
    report, out = one_epoch_run
    assert report["interrupted"] is False and report["resumed_from_epoch"] is None
    with open(out / "run_config.json") as f:
        assert json.load(f)["args"]["epochs"] == 1
    assert not (out / "checkpoint").exists()  # removed once the run finished
    with pytest.raises(ValueError, match=r"is finished \(1 of 1 planned epochs"):
        train(resume=str(out))


def _fake_run(tmp_path, **args):
    run = tmp_path / "run"
    run.mkdir()
    recorded = dict(model="compact_mnist_1k5_dw", epochs=3, optimizer="adam", limit=64) | args
    (run / "run_config.json").write_text(json.dumps({"version": 1, "args": recorded}))
    return run


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"epochs": 5}, r"epochs cannot be changed \(the run has epochs=3"),
        ({"model": "compact_mnist_5k"}, "model cannot be changed"),
        ({"layer_dropping": True}, "layer_dropping cannot be changed"),
        ({"output_dir": "/elsewhere"}, "output_dir must be the resumed run's"),
    ],
)
def test_resume_rejects_changed_options(tmp_path, kwargs, match):
    run = _fake_run(tmp_path)
    with pytest.raises(ValueError, match=match):
        train(resume=str(run), **kwargs)
    assert sorted(os.listdir(run)) == ["run_config.json"]  # nothing written


def test_resume_errors(tmp_path):
    with pytest.raises(ValueError, match="resume must be a run directory"):
        train(resume=str(tmp_path / "missing"))
    with pytest.raises(ValueError, match="no run_config.json: not a resumable run"):
        train(resume=str(tmp_path))
    run = _fake_run(tmp_path, optimizer="custom:SGD")
    with pytest.raises(ValueError, match="cannot be resumed"):
        train(resume=str(run))
    (run / "checkpoint").mkdir()
    (run / "checkpoint" / "state.json").write_text('{"epoch": 1, "weights": "gone.weights.h5"}')
    (run / "run_config.json").write_text('{"args": {"optimizer": "adam"}}')
    with pytest.raises(ValueError, match="checkpoint .* is incomplete"):
        train(resume=str(run))


def test_keyboard_interrupt_writes_last_epoch_and_resume_finishes(tmp_path, capsys):
    class InterruptAtEpoch(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            if self.epoch == 1 and batch == 1:  # half-way through the second epoch
                raise KeyboardInterrupt

        def on_epoch_begin(self, epoch, logs=None):
            self.epoch = epoch

    out = tmp_path / "run"
    common = dict(epochs=3, batch_size=64, limit=256, plots=False, verbose=0)
    with pytest.raises(KeyboardInterrupt):
        train("compact_mnist_1k5_dw", output_dir=str(out), callbacks=[InterruptAtEpoch()], **common)
    err = capsys.readouterr().err
    assert f"resume with: kerascnn train --resume {out}" in err.splitlines()
    report = json.loads((out / "report.json").read_text())
    assert report["interrupted"] is True and report["trained_epochs"] == 1
    model = keras.saving.load_model(out / "model.keras")
    test = data.load("embedded", "test", batch_size=256, shuffle=False)
    accuracy = model.evaluate(test, verbose=0, return_dict=True)["accuracy"]
    assert accuracy == pytest.approx(report["history"]["val_accuracy"][0], abs=1e-6)
    # The same values are allowed with resume; the schedule continues where it stopped.
    final = train("compact_mnist_1k5_dw", resume=str(out), **common)
    assert final["trained_epochs"] == 3 and final["resumed_from_epoch"] == 1
    assert len(final["history"]["loss"]) == len(final["epoch_times_s"]) == 3
    assert final["history"]["val_accuracy"][0] == report["history"]["val_accuracy"][0]
    assert final["wall_time_s"] >= final["train_time_s"] > 0
    note = "resumed after epoch 1 (stability_stopping restarted their state at that epoch)"
    assert note in final["notes"]
    assert not (out / "checkpoint").exists()
