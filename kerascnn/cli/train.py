"""`kerascnn train`: the main job (`kerascnn.training.run.train`) on the command line.

Every option is generated from the fields of
`kerascnn.training.config.TrainConfig` (flag, aliases, help, type,
choices, default): the options of `train` are stated once, in the config.
API-only fields (`callbacks`, `jit_compile`, `plots`) have no flag.

Example:

    kerascnn train            # compact_mnist_25k on the embedded Fashion-MNIST subset
    kerascnn train --model compact_mnist_1k5_dw --epochs 3 --cutout --mixup 0.4
    kerascnn train --resume runs/20260101-120000
    TF_CONFIG=... kerascnn train --strategy multi_worker --output-dir runs/mw   # on every worker
"""

from __future__ import annotations

from kerascnn.cli._common import parse_int_list
from kerascnn.training.config import TECHNIQUES, TrainConfig

#: Converters of option strings that argparse's `type` does not cover (their
#: errors name the option): the field's `parse` metadata -> function(text) -> value.
_CONVERTERS = {"int_list": lambda text: parse_int_list(text, "--stages", example="2,2,2,2")}


def flag(field):
    """The option string of a `TrainConfig` field (`--batch-size` for `batch_size`)."""
    return field.metadata.get("flag") or "--" + field.name.replace("_", "-")


def dest(field):
    """The argparse attribute of a `TrainConfig` field's option."""
    return field.metadata.get("dest") or flag(field)[2:].replace("-", "_")


def _argument(field):
    """`(option strings, add_argument keyword arguments)` of a `TrainConfig` field."""
    meta = field.metadata
    kwargs = {"dest": dest(field), "help": meta.get("help")}
    if meta.get("action"):
        kwargs["action"] = meta["action"]
    else:
        kwargs["default"] = meta.get("cli_default", field.default)
        for key in ("type", "choices", "nargs", "const", "metavar"):
            if key in meta:
                kwargs[key] = meta[key]
    return (flag(field), *meta.get("aliases", ())), kwargs


def add_train_parser(subparsers):
    """Registers `kerascnn train` on an argparse `subparsers` object."""
    parser = subparsers.add_parser(
        "train",
        help="train a zoo model and write a report, logs, the model and plots",
        description=(
            "Train a zoo model on a dataset (default: the embedded Fashion-MNIST subset, "
            "no network needed) and write report.json, TensorBoard logs, model.keras "
            "and PNG plots to --output-dir."
        ),
    )
    groups = {
        TECHNIQUES: parser.add_argument_group(
            "efficiency techniques",
            "architecture flags, augmentation, schedules and training procedures",
        )
    }
    for field in TrainConfig.cli_fields():
        names, kwargs = _argument(field)
        groups.get(field.metadata.get("group"), parser).add_argument(*names, **kwargs)
    parser.set_defaults(func=run_train_command)
    return parser


def train_kwargs(args, fields=None):
    """The `kerascnn.training.run.train` keyword arguments of parsed `kerascnn train` options.

    Args:
        args: the parsed `argparse.Namespace`.
        fields: the `TrainConfig` fields to read. Defaults to `None` (every
            field `kerascnn train` has an option for).
    """
    kwargs = {}
    for field in TrainConfig.cli_fields() if fields is None else fields:
        value = getattr(args, dest(field))
        convert = _CONVERTERS.get(field.metadata.get("parse"))
        if convert is not None:
            value = convert(value) if value else None
        kwargs[field.name] = value
    return kwargs


def run_train_command(args):
    """Handler of `kerascnn train`: returns 0, or raises ValueError/TypeError.

    A multi-worker run whose peer died (`WorkerFailure`) prints one line,
    `kerascnn train: error: worker 1 of 2 stopped responding (...) ... resume
    with: <command>`, and returns `WORKER_FAILURE_EXIT_CODE` (3).
    """
    import sys

    from kerascnn.training.report import summary_line
    from kerascnn.training.run import train
    from kerascnn.training.workers import WORKER_FAILURE_EXIT_CODE, WorkerFailure

    try:
        report = train(**train_kwargs(args))
    except FileNotFoundError as error:
        raise ValueError(str(error)) from None
    except WorkerFailure as error:
        print(f"kerascnn train: error: {error}", file=sys.stderr, flush=True)
        return WORKER_FAILURE_EXIT_CODE
    if not isinstance(report, dict):
        return 0
    if report.get("is_chief") is False:
        if args.verbose == 0:
            print(
                f"kerascnn train: worker {report.get('worker_index')} done (the chief writes "
                f"{report.get('run_dir')})"
            )
    elif args.verbose == 0:
        print(summary_line(report))
    return 0
