"""`kerascnn compare`: train a grid of architecture variants and compare them.

The recipe options (`--dataset`, `--epochs`, `--limit`, `--stability-stopping`,
`--batch-size`, `--lr`, ...) are `kerascnn train`'s, generated from
`kerascnn.training.config.TrainConfig` (less the options a comparison sets
per variant: model, template, width, stages, organize, kernel; and resume).

Example:

    kerascnn compare vgg11_bn --templates base,uniform --widths 0.5,0.25 \\
        --dataset cifar10 --epochs 5 --limit 2000 --output-dir runs/cmp
    kerascnn compare vgg16_bn --templates base --layouts original paper \\
        --kernels none,dw_gpw,dw_rpw --dataset cifar10 --output-dir runs/3drf
    kerascnn compare --plot runs/cmp       # redraw the three Pareto plots
"""

from __future__ import annotations

import os
import shlex
import sys

from kerascnn.cli._common import parse_positive_float
from kerascnn.cli.train import _argument, train_kwargs

#: `TrainConfig` fields a comparison sets per variant, or that make no sense here.
_EXCLUDED = ("model", "template", "width_multiplier", "stages", "organize", "kernel", "resume")
_TEMPLATES = "base,reverse,uniform,quadratic,negative_quadratic"


def _train_fields():
    from kerascnn.training.config import TrainConfig

    return [f for f in TrainConfig.cli_fields() if f.name not in _EXCLUDED]


def add_compare_parser(subparsers):
    """Registers `kerascnn compare` on an argparse `subparsers` object."""
    parser = subparsers.add_parser(
        "compare",
        help="train templates/widths/layouts/kernels of a model and compare accuracy vs resources",
        description=(
            "Train every variant (template x width x layout x kernel) of a zoo model with one "
            "recipe (one `kerascnn train` run directory per variant, finished ones skipped on a "
            "rerun), measure params, MACs, peak memory and latency, and write compare.json and "
            "pareto_{params,memory,latency}.png to --output-dir."
        ),
    )
    parser.add_argument("model", nargs="?", help="a zoo model name (see `kerascnn list`)")
    grid = parser.add_argument_group("the variant grid")
    grid.add_argument("--templates", default=_TEMPLATES, help=f"(default: {_TEMPLATES})")
    grid.add_argument("--widths", default="1.0", help="width multipliers, e.g. 1,0.5,0.25")
    grid.add_argument(
        "--layouts",
        nargs="+",
        default=["original"],
        metavar="LAYOUT",
        help="original, organized (3DRF organizer), paper (the 3DRF paper's layout) or N,N,...",
    )
    grid.add_argument(
        "--kernels", default="none", help="none, dw_pw, dw_gpw, dw_rpw (comma-separated)"
    )
    run = parser.add_argument_group("measurement and output")
    run.add_argument("--remeasure", action="store_true", help="only measure again")
    run.add_argument("--no-measure", action="store_true", help="skip memory and latency")
    run.add_argument("--latency-repeats", type=int, default=7, help="interleaved rounds")
    run.add_argument("--memory-batch", type=int, default=64, help="batch of the memory figure")
    run.add_argument("--aa-control", action="store_true", help="time the reference twice")
    run.add_argument("--plot", metavar="DIR", default=None, help="redraw DIR's plots and exit")
    recipe = parser.add_argument_group("training recipe (as `kerascnn train`)")
    for field in _train_fields():
        names, kwargs = _argument(field)
        recipe.add_argument(*names, **kwargs)
    parser.set_defaults(func=run_compare_command)
    return parser


def _split(text):
    return [part.strip() for part in str(text).split(",") if part.strip()]


def _command(args):
    """The command line as typed (`sys.argv` when it is this command's)."""
    if sys.argv[1:2] == ["compare"]:
        return " ".join(shlex.quote(a) for a in ["kerascnn", *sys.argv[1:]])
    return None  # called through `kerascnn.cli.main([...])`: compare records the call


def run_compare_command(args):
    """Handler of `kerascnn compare`: returns 0, or raises ValueError/TypeError."""
    if args.plot is not None:
        from kerascnn.observe import pareto

        path = os.path.join(args.plot, "compare.json")
        if not os.path.exists(path):
            raise FileNotFoundError(
                f"no compare.json in {args.plot!r}. Received: --plot {args.plot}"
            )
        for written in pareto.plot_all(path, args.plot).values():
            print(written)
        return 0
    if args.model is None:
        raise ValueError("a MODEL is required (or --plot DIR). Received: no model")
    kwargs = train_kwargs(args, _train_fields())
    if kwargs.get("output_dir") is None:
        raise ValueError("--output-dir is required (a rerun resumes there). Received: none")
    from kerascnn.compare import compare

    compare(
        args.model,
        templates=_split(args.templates),
        widths=[parse_positive_float(w, "--widths") for w in _split(args.widths)],
        layouts=args.layouts,
        kernels=_split(args.kernels),
        measure=not args.no_measure,
        remeasure=args.remeasure,
        memory_batch=args.memory_batch,
        latency_repeats=args.latency_repeats,
        aa_control=args.aa_control,
        verbose=1,
        command=_command(args),
        **{k: v for k, v in kwargs.items() if k != "verbose"},  # runs are silent
    )
    return 0
