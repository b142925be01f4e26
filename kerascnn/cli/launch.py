"""`kerascnn launch`: N local `kerascnn train` workers under `MultiWorkerMirroredStrategy`.

Everything after `--` is a `kerascnn train` argument; it is checked with the
`train` command's own parser before any worker starts. The work is done by
`kerascnn.training.launch.launch` (see there: TF_CONFIG, logs, failures,
Ctrl-C).

Example:

    kerascnn launch --workers 2 -- --model compact_mnist_1k5_dw --epochs 3 \\
        --stability-stopping --output-dir runs/two_workers
    kerascnn launch --workers 2 -- --resume runs/two_workers   # after a failure or Ctrl-C
"""

from __future__ import annotations

import sys

from kerascnn.cli._common import ArgumentParser, UsageError, parse_positive_int
from kerascnn.cli.train import add_train_parser


def add_launch_parser(subparsers):
    """Registers `kerascnn launch` on an argparse `subparsers` object."""
    parser = subparsers.add_parser(
        "launch",
        help="train with N local worker processes (MultiWorkerMirroredStrategy)",
        description=(
            "Start N local `kerascnn train ... --strategy multi_worker` processes, each with "
            "its TF_CONFIG on free 127.0.0.1 ports (worker 0 is the chief and writes the "
            "outputs). Streams the chief's output, forwards Ctrl-C, and stops every worker "
            "with an error naming the one that failed. Resume a stopped run with "
            "`kerascnn launch --workers N -- --resume RUN_DIR`."
        ),
        usage="kerascnn launch [-h] --workers N [--log-dir DIR] -- [TRAIN ARGUMENTS ...]",
    )
    parser.add_argument(
        "--workers", required=True, metavar="N", help="number of worker processes (>= 1)"
    )
    parser.add_argument(
        "--log-dir",
        default=None,
        metavar="DIR",
        help="per-worker logs and reports (default: a temporary directory, removed on success)",
    )
    parser.add_argument(
        "train_args",
        nargs="*",
        metavar="TRAIN ARGUMENTS",
        help="`kerascnn train` arguments, after `--` (see `kerascnn train --help`)",
    )
    parser.set_defaults(func=run_launch_command, registration=False)
    return parser


def check_train_arguments(train_args):
    """Parses `train_args` with the `kerascnn train` parser; raises a one-line ValueError."""
    parser = ArgumentParser(prog="kerascnn")
    add_train_parser(parser.add_subparsers(dest="command"))
    try:
        parser.parse_args(["train", *train_args])
    except SystemExit:  # --help of train
        raise ValueError("`kerascnn launch -- --help` is `kerascnn train --help`") from None
    except UsageError as error:  # "kerascnn train: error: ..."
        message = str(error).split("error: ", 1)[-1]
        raise ValueError(f"invalid train arguments: {message}") from None


def run_launch_command(args):
    """Handler of `kerascnn launch`: returns 0, or 1 when a worker failed."""
    from kerascnn.training.launch import WorkerFailed, launch

    workers = parse_positive_int(args.workers, "--workers")
    check_train_arguments(args.train_args)
    try:
        launch(args.train_args, workers=workers, log_dir=args.log_dir)
    except WorkerFailed as error:
        print(f"kerascnn launch: error: {error}", file=sys.stderr, flush=True)
        return 1
    return 0
