"""Tests of the main job `kerascnn.train` on the embedded dataset (offline)."""

import json
import os

import keras
import numpy as np
import pytest

from kerascnn import data
from kerascnn import train as train_module
from kerascnn.train import train


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
        ({"epochs": -1}, "epochs must be a positive integer"),
        ({"batch_size": 0}, "batch_size"),
        ({"optimizer": "lion"}, "optimizer"),
        ({"learning_rate": -0.1}, "learning_rate"),
        ({"template": "triangle"}, "template"),
        ({"data_dir": "/nonexistent/dir"}, "data_dir does not exist"),
        ({"strategy": "tpu"}, "strategy"),
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
        (["--epochs", "-3"], "epochs must be a positive integer"),
        (["--data-dir", "/nonexistent/dir"], "data_dir does not exist"),
        (["--dataset", "cifar100", "--data-dir", "{tmp}"], "not found"),
        (["--stages", "2,x"], "--stages"),
    ],
)
def test_cli_errors_are_one_line(argv, match, tmp_path, capsys):
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    code = train_module.main(argv + ["--output-dir", str(tmp_path / "out"), "--verbose", "0"])
    captured = capsys.readouterr()
    assert code == 2
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("kerascnn train: error:")
    assert match in lines[0]
    assert "Traceback" not in captured.err + captured.out


def test_cli_parser_defaults():
    import argparse

    parser = argparse.ArgumentParser()
    train_module.add_train_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["train"])
    assert (args.model, args.dataset, args.epochs) == ("compact_mnist_25k", "embedded", 15)
    assert args.func is train_module.run_train_command
    args = parser.parse_args(["train", "--stages", "1,1", "--width", "0.5", "--augment"])
    assert train_module._parse_stages(args.stages) == [1, 1] and args.augment


def test_deterministic_with_seed(tmp_path):
    kwargs = dict(
        model="compact_mnist_1k5_dw", epochs=1, batch_size=256, limit=512, verbose=0, plots=False
    )
    a = train(output_dir=str(tmp_path / "a"), seed=3, **kwargs)
    b = train(output_dir=str(tmp_path / "b"), seed=3, **kwargs)
    np.testing.assert_allclose(a["history"]["loss"], b["history"]["loss"], rtol=1e-5)
