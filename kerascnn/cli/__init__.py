"""The `kerascnn` command line: `kerascnn <command> [options]`.

This package holds the only argparse code of kerascnn, one module per
command group: `models` (list, summary), `plots` (plot-filters,
plot-stability, plot-savings), `train` (its options generated from
`kerascnn.training.config.TrainConfig`), `tune`, `compare`, `rf3d` (rf3d, optimize);
`_common` has the parsing helpers they share.

Commands are registered in `SUBCOMMANDS`, a dict `command -> add_parser`,
in the order of `kerascnn --help`. Each function is named
`add_<command>_parser(subparsers)` (the command is the part between `add_`
and `_parser`, underscores as dashes: `add_plot_filters_parser` adds
`plot-filters`); it adds one subparser and sets `func=handler`, a function
`(args) -> int`. Only the subparser of the command being run is built
(every one for `kerascnn --help`).

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

import contextlib  # noqa: E402
import importlib  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402

from kerascnn.cli import compare, launch, models, plots, rf3d, train, tune  # noqa: E402
from kerascnn.cli._common import (  # noqa: E402, F401  (public helpers)
    ArgumentParser,
    UsageError,
    add_model_arguments,
    command_name,
    model_kwargs,
    one_line,
    parse_input_shape,
    parse_int_list,
    parse_positive_float,
)

PROG = "kerascnn"

#: The registry: `command -> add_<command>_parser`, in the order of `kerascnn --help`.
SUBCOMMANDS = {
    command_name(add_parser.__name__): add_parser
    for add_parser in (
        models.add_list_parser,
        models.add_summary_parser,
        plots.add_plot_filters_parser,
        plots.add_plot_stability_parser,
        plots.add_plot_savings_parser,
        train.add_train_parser,
        launch.add_launch_parser,
        tune.add_tune_parser,
        compare.add_compare_parser,
        rf3d.add_rf3d_parser,
        rf3d.add_optimize_parser,
    )
}

_HANDLED_ERRORS = (ValueError, TypeError, FileNotFoundError, OSError)


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
    wanted = _requested_command(list(argv), list(SUBCOMMANDS))
    for name, add_parser in SUBCOMMANDS.items():
        if wanted is None or name == wanted:
            add_parser(subparsers)
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
