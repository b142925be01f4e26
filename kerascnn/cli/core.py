"""The `kerascnn` command line: `kerascnn <command> [options]`.

Commands are registered in `SUBCOMMANDS` as `(module_path, function_name)`
pairs. Each function is named `add_<command>_parser(subparsers)` (the command
is the part between `add_` and `_parser`, underscores as dashes: function
`add_plot_filters_parser` adds `plot-filters`); it adds one subparser and sets
`func=handler`, a function `(args) -> int`. Only the module of the command
being run is imported (every module for `kerascnn --help`).

The parser is built without importing TensorFlow or Keras (command modules
import heavy modules inside their handlers), so `kerascnn --help` and
`kerascnn --version` start fast; `kerascnn_cli.main` (the console script)
defers the registration of kerascnn's serializable objects that
`import kerascnn` does, and `main` imports `kerascnn._registration` before it
runs a command (see `register_serializables`).

Errors are one line on stderr and exit status 2, never a traceback: a handler
raises `ValueError`, `TypeError` or `OSError` (incl. `FileNotFoundError`) with a
clear message and `main` prints `kerascnn <command>: error: <message>`.

Example:

    kerascnn list
    kerascnn summary resnet18 --input-shape 32,32,3 --classes 10 --template uniform
    kerascnn summary mobilenet --input-shape 224,224,3 --classes 1000 --json
    kerascnn plot-filters vgg19 -o vgg19_templates.png
"""

from __future__ import annotations

import os

# Before TensorFlow is imported (by the command modules): no C++ info logs.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import argparse  # noqa: E402
import contextlib  # noqa: E402
import importlib  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402

PROG = "kerascnn"

#: The registry: `(module_path, function_name)` of every subcommand, in the
#: order of `kerascnn --help`.
SUBCOMMANDS = [
    ("kerascnn.cli.core", "add_list_parser"),
    ("kerascnn.cli.core", "add_summary_parser"),
    ("kerascnn.observe.plots", "add_plot_filters_parser"),
    ("kerascnn.observe.stability_logs", "add_plot_stability_parser"),
    ("kerascnn.training.run", "add_train_parser"),
    ("kerascnn.cli.tune", "add_tune_parser"),
    ("kerascnn.cli.rf3d", "add_rf3d_parser"),
    ("kerascnn.cli.rf3d", "add_optimize_parser"),
]

_HANDLED_ERRORS = (ValueError, TypeError, FileNotFoundError, OSError)


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


# --------------------------------------------------------------------------
# Argument parsing helpers shared by the subcommands.
# --------------------------------------------------------------------------
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
        choices=("auto", "cifar", "imagenet"),
        help="stem/head variant (default: auto, from the input size)",
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


# --------------------------------------------------------------------------
# list
# --------------------------------------------------------------------------
def _run_list(args):
    from kerascnn import zoo

    rows = [("name", "family", "description")]
    for name in zoo.list_models(args.family):
        info = zoo.get_info(name)
        rows.append((name, info.family, info.description))
    widths = [max(len(row[i]) for row in rows) for i in range(2)]
    for row in rows:
        print(f"{row[0]:<{widths[0]}}  {row[1]:<{widths[1]}}  {row[2]}")
    return 0


def add_list_parser(subparsers):
    """Adds `kerascnn list` (alias `models`): the zoo table."""
    parser = subparsers.add_parser(
        "list",
        aliases=["models"],
        help="list the zoo models",
        description="Lists the zoo models: name, family and description.",
    )
    parser.add_argument("--family", default=None, help="only this family (e.g. resnet)")
    # Lists names only: no model is built or loaded, no registration needed.
    parser.set_defaults(func=_run_list, registration=False)
    return parser


# --------------------------------------------------------------------------
# summary
# --------------------------------------------------------------------------
def _run_summary(args):
    from kerascnn import zoo
    from kerascnn.observe import summary

    kwargs = model_kwargs(args)
    model = zoo.build(args.model, classes=args.classes, **kwargs)
    result = summary.summarize(model)
    if args.json:
        print(json.dumps(summary.to_dict(result), indent=2))
    else:
        print(summary.format_table(result))
    return 0


def add_summary_parser(subparsers):
    """Adds `kerascnn summary`: per-layer parameters, MACs and memory."""
    parser = subparsers.add_parser(
        "summary",
        help="per-layer parameters, MACs and activation memory of a zoo model",
        description=(
            "Builds a zoo model and prints, per layer, the output shape, "
            "filters, parameters, multiply-accumulates (batch 1) and activation "
            "memory, with totals."
        ),
    )
    add_model_arguments(parser)
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.set_defaults(func=_run_summary)
    return parser


# --------------------------------------------------------------------------
# main
# --------------------------------------------------------------------------
def _requested_command(argv, names):
    """The command named in `argv` if it is a registered one, else None."""
    for token in argv:
        if token == "--":
            return None
        if not token.startswith("-"):
            return token if token in names else None
    return None


def build_parser(argv=()):
    """Builds the parser; with `argv`, adds only the subcommand it names."""
    parser = ArgumentParser(
        prog=PROG,
        description="kerascnn: cheaper-to-train, better-designed CNNs for Keras 3.",
    )
    from kerascnn import __version__

    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    names = [command_name(function) for _, function in SUBCOMMANDS]
    wanted = _requested_command(list(argv), names)
    for (module_path, function), name in zip(SUBCOMMANDS, names):
        if wanted is not None and name != wanted:
            continue
        getattr(importlib.import_module(module_path), function)(subparsers)
    return parser


def register_serializables():
    """Imports `kerascnn._registration` (Keras, TensorFlow and every kerascnn
    serializable object), which the console script defers while it parses.

    Called before a command runs, unless the command set `registration=False`
    on its parser (`parser.set_defaults(registration=False)`: commands that
    never build nor load a model).
    """
    with _tensorflow_start_up_notices_hidden():
        importlib.import_module("kerascnn._registration")


#: TensorFlow's start-up notices, printed by its C++ runtime whatever
#: `TF_CPP_MIN_LOG_LEVEL` says (absl's "before InitializeLog" line, oneDNN's
#: information line): the command line hides them so that an error stays one line.
_START_UP_NOTICES = (
    "WARNING: All log messages before absl::InitializeLog() is called",
    "port.cc:153] oneDNN custom operations are on",
    "cpu_feature_guard.cc",
    "To enable the following instructions:",
)


@contextlib.contextmanager
def _tensorflow_start_up_notices_hidden():
    """Captures file descriptor 2 while TensorFlow starts; replays all but its notices.

    Only when `TF_CPP_MIN_LOG_LEVEL` >= 1 (the command line's default is 2):
    with 0 the user asked for TensorFlow's information lines.
    """
    if os.environ.get("TF_CPP_MIN_LOG_LEVEL", "0") in ("", "0") or "tensorflow" in sys.modules:
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            text = capture.read().decode("utf-8", "replace")
            kept = [
                line
                for line in text.splitlines(keepends=True)
                if not any(notice in line for notice in _START_UP_NOTICES)
            ]
            sys.stderr.write("".join(kept))


def main(argv=None):
    """Runs the `kerascnn` command line; returns the exit status.

    Args:
        argv: the arguments (without the program name). Defaults to
            `sys.argv[1:]`.
    """
    argv = sys.argv[1:] if argv is None else [str(a) for a in argv]
    try:
        parser = build_parser(argv)
        args = parser.parse_args(argv)
    except UsageError as error:
        print(error, file=sys.stderr)
        return 2
    except SystemExit as exit_:  # --help, --version
        return exit_.code if isinstance(exit_.code, int) else 0
    func = getattr(args, "func", None)
    if func is None:
        print(f"{PROG}: error: a command is required (see `{PROG} --help`)", file=sys.stderr)
        return 2
    try:
        if getattr(args, "registration", True):
            register_serializables()
        return int(func(args) or 0)
    except _HANDLED_ERRORS as error:
        print(f"{PROG} {args.command}: error: {one_line(error)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{PROG} {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
