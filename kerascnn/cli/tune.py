"""`kerascnn tune`: an architecture search with keras-tuner (see `kerascnn.tuning`).

Example:

    kerascnn tune --tuner random --trials 6 --epochs 2 --dataset embedded \\
        --families compact mobilenet --max-params 50000 --directory runs/tune

Distributed (keras-tuner's chief/worker mode, see docs/tuning.md): run the
same command in every process with `KERASTUNER_TUNER_ID` (`chief`, `tuner0`,
`tuner1`, ...), `KERASTUNER_ORACLE_IP` and `KERASTUNER_ORACLE_PORT` set.
"""

from __future__ import annotations

import json
import os

from kerascnn.cli._common import parse_positive_int as _positive_int


def _positive_number(text, option):
    try:
        value = float(text)
    except (TypeError, ValueError):
        value = None
    if value is None or not value > 0 or value == float("inf"):
        raise ValueError(f"{option} must be a positive number. Received: {text!r}")
    return int(value) if value == int(value) else value


def _run_tune(args):
    from kerascnn import tuning as tuner_lib

    if args.tuner not in tuner_lib.TUNERS:
        raise ValueError(f"--tuner must be one of {tuner_lib.TUNERS}. Received: {args.tuner!r}")
    trials = _positive_int(args.trials, "--trials")
    epochs = _positive_int(args.epochs, "--epochs")
    batch_size = _positive_int(args.batch_size, "--batch-size")
    max_params = (
        None if args.max_params is None else _positive_number(args.max_params, "--max-params")
    )
    max_macs = None if args.max_macs is None else _positive_number(args.max_macs, "--max-macs")
    if args.limit is not None:
        _positive_int(args.limit, "--limit")
    from kerascnn import data

    if args.dataset not in data.list_datasets():
        raise ValueError(
            f"Unknown dataset. Expected one of {data.list_datasets()}. "
            f"Received: --dataset {args.dataset!r}"
        )
    info = data.info(args.dataset)
    limit = None if args.limit is None else int(args.limit)
    load = dict(batch_size=batch_size, limit=limit, seed=args.seed)
    if args.data_dir is not None:
        load["data_dir"] = args.data_dir
    train = data.load(args.dataset, "train", **load)
    val = data.load(args.dataset, "test", **load)
    stability = False if args.no_stability_stopping else None
    result = tuner_lib.search(
        train,
        validation_data=val,
        input_shape=tuple(info["shape"]),
        classes=int(info["num_classes"]),
        tuner=args.tuner,
        max_trials=trials,
        epochs=epochs,
        directory=args.directory,
        project_name=args.project_name,
        overwrite=not args.resume,
        seed=args.seed,
        num_best=args.top,
        verbose=args.verbose,
        families=args.families,
        models=args.models,
        max_params=max_params,
        max_macs=max_macs,
        stability_stopping=stability,
    )
    if result.role == "worker":
        print(
            f"worker {os.environ.get('KERASTUNER_TUNER_ID')}: ran trials "
            f"{[t['trial_id'] for t in result.tuner.trials_run]}"
        )
        return 0
    tuner_lib.print_best(result.tuner, args.top)
    print(
        f"Total epochs trained: {result.total_epochs} over {len(result.trials)} trials; "
        f"search wall time {result.wall_time:.1f} s"
    )
    if args.json:
        path = os.path.join(args.directory, args.project_name, "best_trials.json")
        with open(path, "w") as f:
            json.dump(result.to_dict(), f, indent=2, default=str)
        print(f"Wrote {path}")
    return 0


def add_tune_parser(subparsers):
    """Adds `kerascnn tune` to an argparse subparsers object."""
    parser = subparsers.add_parser(
        "tune",
        help="search architectures with keras-tuner",
        description=(
            "Searches zoo family, template, width, stage layout, kernel type, efficiency flags "
            "and optimizer with keras-tuner, with stability stopping inside every trial, and "
            "prints the best trials with their parameters and MACs."
        ),
    )
    parser.add_argument("--tuner", default="random", help="random, hyperband or bayesian")
    parser.add_argument("--trials", default="6", help="number of trials (not hyperband)")
    parser.add_argument("--epochs", default="2", help="epochs per trial (hyperband: max)")
    parser.add_argument("--dataset", default="embedded", help="dataset name (default embedded)")
    parser.add_argument("--data-dir", default=None, help="where the dataset files are")
    parser.add_argument("--limit", default=None, help="use only the first N examples per split")
    parser.add_argument("--batch-size", default="64", help="batch size (default 64)")
    parser.add_argument("--families", nargs="+", default=None, help="zoo families to search")
    parser.add_argument("--models", nargs="+", default=None, help="zoo models to search")
    parser.add_argument("--max-params", default=None, help="reject models with more parameters")
    parser.add_argument("--max-macs", default=None, help="reject models with more MACs")
    parser.add_argument("--directory", default="kerascnn_tuner", help="trial storage folder")
    parser.add_argument("--project-name", default="kerascnn_tune", help="sub-folder name")
    parser.add_argument("--resume", action="store_true", help="continue a previous search")
    parser.add_argument(
        "--no-stability-stopping",
        action="store_true",
        help="train every trial for all its epochs",
    )
    parser.add_argument("--seed", type=int, default=None, help="oracle and data seed")
    parser.add_argument("--top", type=int, default=3, help="how many best trials to print")
    parser.add_argument("--json", action="store_true", help="also write best_trials.json")
    parser.add_argument("--verbose", type=int, default=0, help="fit verbosity (0, 1, 2)")
    parser.set_defaults(func=_run_tune)
    return parser
