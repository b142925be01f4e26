"""`kerascnn train`'s options are generated from `TrainConfig` and keep every old flag."""

import argparse
import inspect

import pytest

from kerascnn import cli
from kerascnn.cli import train as train_cli
from kerascnn.training.config import TrainConfig
from kerascnn.training.run import train

#: Every option string `kerascnn train --help` listed before the restructure
#: (the hand-written parser of `kerascnn/train.py`), with its default.
OLD_FLAGS = {
    "--model": "compact_mnist_25k",
    "--dataset": "embedded",
    "--epochs": 15,
    "--batch-size": 64,
    "--template": "base",
    "--width": 1.0,
    "--width-multiplier": 1.0,
    "--stages": None,
    "--optimizer": "adam",
    "--lr": None,
    "--lr-schedule": "cosine",
    "--augment": False,
    "--mixed-precision": False,
    "--strategy": None,
    "--collective-timeout": None,  # added with issue #16 (multi-worker)
    "--stability-stopping": False,
    "--blurpool": False,
    "--squeeze-excite": False,
    "--se-min-channels": None,
    "--se-latent-channels": None,
    "--gap-head": False,
    "--kernel": None,
    "--kernel-groups": 2,
    "--kernel-overlap": 0.5,
    "--organize": False,
    "--theta": None,  # #14: None = the model's default (organizer.default_settings)
    "--cutout": None,
    "--mixup": None,
    "--label-smoothing": 0.0,
    "--one-cycle": False,
    "--swa": None,
    # Added with issue #14 (the SWA paper's learning-rate phase).
    "--swa-lr": None,
    "--swa-anneal-epochs": 0,
    "--swa-cycle-epochs": None,
    "--sam": None,
    "--layer-metrics": False,
    "--layer-dropping": False,
    "--layer-freezing": False,
    "--force-drop": None,  # added with issue #16 (a forced LayerDropping drop)
    "--recipe": None,  # added with issue #17 (named recipes)
    "--validation-split": None,  # added with issue #17 (a held-out validation split)
    "--output-dir": None,
    "--resume": None,
    "--data-dir": None,
    "--data-source": "auto",
    "--limit": None,
    "--seed": 0,
    "--verbose": 1,
}
#: `train` arguments without a flag (Python API only).
API_ONLY = {"callbacks", "jit_compile", "plots"}


def _train_parser():
    parser = argparse.ArgumentParser()
    return train_cli.add_train_parser(parser.add_subparsers(dest="command"))


def _actions():
    return [a for a in _train_parser()._actions if a.option_strings and a.dest != "help"]


def test_every_config_field_has_a_flag_and_every_flag_a_field():
    flagged = {f.name for f in TrainConfig.cli_fields()}
    assert flagged | API_ONLY == {f.name for f in TrainConfig.fields()}
    assert not flagged & API_ONLY
    dests = {a.dest for a in _actions()}
    assert dests == {train_cli.dest(f) for f in TrainConfig.cli_fields()}
    assert len(dests) == len(flagged)  # one option per field


def test_config_fields_are_the_arguments_of_train():
    parameters = inspect.signature(train).parameters
    assert set(parameters) == {f.name for f in TrainConfig.fields()}
    for field in TrainConfig.fields():
        assert parameters[field.name].default == field.default, field.name


def test_every_old_flag_is_listed_with_its_default():
    parser = _train_parser()
    options = {s: a for a in _actions() for s in a.option_strings}
    assert set(options) == set(OLD_FLAGS)
    help_text = parser.format_help()
    for flag, default in OLD_FLAGS.items():
        assert flag in help_text, flag
        assert options[flag].default == default, flag
    args = parser.parse_args(["--cutout", "--mixup", "--sam", "--swa"])
    assert (args.cutout, args.mixup, args.sam, args.swa) == (10, 0.2, 0.05, 0.75)


def test_train_kwargs_map_every_option_to_train():
    args = _train_parser().parse_args(
        ["--width-multiplier", "0.5", "--lr", "0.1", "--data-source", "npz", "--stages", "1,2"]
    )
    kwargs = train_cli.train_kwargs(args)
    assert set(kwargs) == {f.name for f in TrainConfig.cli_fields()}
    assert kwargs["width_multiplier"] == 0.5 and kwargs["learning_rate"] == 0.1
    assert kwargs["source"] == "npz" and kwargs["stages"] == [1, 2]
    with pytest.raises(ValueError, match="--stages must be comma-separated positive integers"):
        train_cli.train_kwargs(_train_parser().parse_args(["--stages", "2,x"]))


def test_registry_names_follow_the_convention():
    assert list(cli.SUBCOMMANDS)[:2] == ["list", "summary"]
    for name, add_parser in cli.SUBCOMMANDS.items():
        assert cli.command_name(add_parser.__name__) == name
