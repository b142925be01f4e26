"""Parsing helpers shared by the `kerascnn` subcommands (no TensorFlow, no Keras).

One-line usage errors (`ArgumentParser`, `UsageError`), the registry's naming
rule (`command_name`), parsers of option values (`parse_int_list`,
`parse_input_shape`, `parse_positive_int`, `parse_positive_float`) and the
zoo-model options shared by `summary`, `plot-filters`, `rf3d` and `optimize`
(`add_model_arguments`, `model_kwargs`).

Example:

```python
from kerascnn.cli._common import parse_int_list

parse_int_list("5,5,4,2", "--stages")  # -> [5, 5, 4, 2]
```
"""

from __future__ import annotations

import argparse
import math


class UsageError(Exception):
    """A command-line usage error (already formatted as one line)."""


class ArgumentParser(argparse.ArgumentParser):
    """An `argparse.ArgumentParser` whose errors are one line, not an exit."""

    def error(self, message):
        raise UsageError(f"{self.prog}: error: {one_line(message)}")


def one_line(message):
    """Collapses `message` (any object) to a single line."""
    return " ".join(str(message).split())


def command_name(function_name):
    """`"add_plot_filters_parser"` -> `"plot-filters"`."""
    if not (function_name.startswith("add_") and function_name.endswith("_parser")):
        raise ValueError(
            f"Subcommand functions must be named add_<command>_parser. Received: {function_name!r}"
        )
    return function_name[len("add_") : -len("_parser")].replace("_", "-")


def parse_int_list(text, option, *, length=None, example="5,5,4,2"):
    """Parses `"5,5,4,2"` into a list of positive ints, or raises a ValueError.

    Args:
        text: the option's string value.
        option: the option name used in the message, e.g. `"--stages"`.
        length: required number of values, or None for any (at least one).
        example: an example value for the message.
    """
    count = "three" if length == 3 else ("" if length is None else str(length))
    what = f"{count} comma-separated positive integers".strip()
    message = f"{option} must be {what}, e.g. {example}. Received: {text!r}"
    parts = [p.strip() for p in str(text).split(",")]
    try:
        values = [int(p) for p in parts]
    except ValueError:
        raise ValueError(message) from None
    if not values or any(v < 1 for v in values) or (length is not None and len(values) != length):
        raise ValueError(message)
    return values


def parse_positive_int(text, option):
    """Parses a positive int, or raises a ValueError naming `option`."""
    try:
        value = int(text)
    except (TypeError, ValueError):
        value = None
    if value is None or value < 1:
        raise ValueError(f"{option} must be a positive integer. Received: {text!r}")
    return value


def parse_input_shape(text):
    """Parses `"32,32,3"` into `(32, 32, 3)`; None stays None."""
    if text is None:
        return None
    return tuple(parse_int_list(text, "--input-shape", length=3, example="32,32,3"))


def parse_positive_float(text, option):
    """Parses a positive, finite float, or raises a ValueError naming `option`."""
    try:
        value = float(text)
    except (TypeError, ValueError):
        value = float("nan")
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{option} must be a positive number, e.g. 0.5. Received: {text!r}")
    return value


def add_model_command(subparsers, name, *, help, description, classes=True, template=True):
    """Adds subcommand `name` taking a zoo model and its options (`add_model_arguments`).

    Args:
        subparsers: an argparse subparsers object.
        name: the command.
        help: the one-line help of `kerascnn --help`.
        description: the command's description.
        classes: add `--classes`. Defaults to True.
        template: add `--template`. Defaults to True.

    Returns:
        The command's parser.
    """
    parser = subparsers.add_parser(name, help=help, description=description)
    add_model_arguments(parser, classes=classes, template=template)
    return parser


def add_model_arguments(parser, *, classes=True, template=True):
    """Adds the zoo-model options shared by `summary` and other commands.

    Args:
        parser: an `argparse` (sub)parser.
        classes: add `--classes`. Defaults to True.
        template: add `--template`. Defaults to True.
    """
    parser.add_argument("model", help="a zoo model name (see `kerascnn list`)")
    parser.add_argument(
        "--input-shape",
        default=None,
        metavar="H,W,C",
        help="input shape, e.g. 32,32,3 (default: the model's default)",
    )
    if classes:
        parser.add_argument(
            "--classes", type=int, default=10, help="number of classes (default: 10)"
        )
    if template:
        parser.add_argument(
            "--template",
            default="base",
            help="filter template: base, reverse, uniform, quadratic, negative_quadratic",
        )
    parser.add_argument(
        "--width",
        "--width-multiplier",
        dest="width",
        default="1.0",
        metavar="W",
        help="width multiplier (default: 1.0)",
    )
    parser.add_argument(
        "--stages", default=None, metavar="N,N,...", help="units per stage, e.g. 5,5,4,2"
    )
    parser.add_argument(
        "--filters",
        default=None,
        metavar="F,F,...",
        help="explicit filters per templated layer (block)",
    )
    parser.add_argument(
        "--variant",
        default="auto",
        choices=("auto", "cifar", "imagenet", "v1"),
        help=(
            "stem/head variant (default: auto, from the input size); v1: the "
            "keras.applications ResNet layout (resnet50/101/152 only)"
        ),
    )


def model_kwargs(args):
    """The `kerascnn.zoo.build` keyword arguments from `add_model_arguments` options."""
    kwargs = {
        "input_shape": parse_input_shape(args.input_shape),
        "template": getattr(args, "template", "base"),
        "width_multiplier": parse_positive_float(args.width, "--width"),
        "variant": args.variant,
    }
    if args.stages is not None:
        kwargs["stages"] = parse_int_list(args.stages, "--stages")
    if args.filters is not None:
        kwargs["filters"] = parse_int_list(args.filters, "--filters", example="64,128,256")
    return kwargs
