"""`kerascnn plot-filters`, `plot-stability` and `plot-savings`: the papers' figures.

`plot-filters` draws filters per layer of a zoo model under every filter
template (`kerascnn.observe.plots`, the filter-template paper's Figure 2);
`plot-stability` draws per-layer stability μ over epochs from training logs
(`kerascnn.observe.stability_logs`, the stability paper's Figure 5);
`plot-savings` draws accuracy against training time and MACs trained for
`kerascnn train` runs (`kerascnn.observe.savings`). None of them builds or
loads a model: no TensorFlow import.

Example:

    kerascnn plot-filters vgg19 -o vgg19_templates.png
    kerascnn plot-stability runs/20250101-120000 -o stability.png
    kerascnn plot-savings runs/baseline runs/dropping -o savings.png
"""

from __future__ import annotations

import argparse

from kerascnn.cli._common import add_model_command, model_kwargs


def _run_plot_filters(args):
    from kerascnn.observe.plots import plot_filter_distributions

    kwargs = model_kwargs(args)
    templates = None
    if args.templates is not None:
        templates = [t for t in args.templates.split(",") if t.strip()]
    path = plot_filter_distributions(
        args.model,
        args.output,
        templates=templates,
        input_shape=kwargs["input_shape"],
        variant=kwargs["variant"],
        width_multiplier=kwargs["width_multiplier"],
        stages=kwargs.get("stages"),
        filters=kwargs.get("filters"),
    )
    print(f"Saved {path}")
    return 0


def add_plot_filters_parser(subparsers):
    """Adds `kerascnn plot-filters`: filters per layer for every template."""
    parser = add_model_command(
        subparsers,
        "plot-filters",
        help="plot filters per layer for the base distribution and every template",
        description=(
            "Draws filters per layer (per block for ResNet/Inception) of a zoo "
            "model for the base distribution and every filter template "
            "(the filter-template paper's Figure 2)."
        ),
        classes=False,
        template=False,
    )
    parser.add_argument("-o", "--output", required=True, help="output image, e.g. filters.png")
    parser.add_argument(
        "--templates",
        default=None,
        metavar="T,T,...",
        help="comma-separated templates to draw (default: all)",
    )
    # Specs only: no model is built or loaded, so no TensorFlow import.
    parser.set_defaults(func=_run_plot_filters, registration=False)
    return parser


def _run_plot_stability(args):
    from kerascnn.observe.stability_logs import plot_stability, read_stability, resolve_rule

    series = read_stability(args.logdir)
    rule, source = resolve_rule(args.logdir, args.decimals, args.patience, args.start_from_epoch)
    stop = plot_stability(series, args.output, source=source, **rule)
    where = f"stop at epoch {stop + 1}" if stop is not None else "no stop"
    rule_text = f"r={rule['decimals']}, patience={rule['patience']}"
    if rule["start_from_epoch"]:
        rule_text += f", from epoch {rule['start_from_epoch'] + 1}"
    origin = f"recorded in {source}" if source else "paper's defaults / options"
    print(f"Wrote {args.output} ({len(series)} layers, {where}; rule {rule_text}, {origin}).")
    return 0


def _int_at_least(minimum):
    """An argparse `type`: an integer >= `minimum` (argparse reports the option)."""

    def parse(text):
        try:
            value = int(text)
        except ValueError:
            value = minimum - 1
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be an integer >= {minimum}. Received: {text!r}")
        return value

    return parse


def add_plot_stability_parser(subparsers):
    """Registers `plot-stability LOGDIR -o x.png` on an argparse subparsers object."""
    parser = subparsers.add_parser(
        "plot-stability",
        help="plot per-layer stability μ over epochs (the paper's Figure 5)",
        description="`kerascnn plot-stability`: the paper's Figure 5 from training logs.",
    )
    parser.add_argument(
        "logdir", help="a kerascnn train run directory, TensorBoard log directory or CSVLogger file"
    )
    parser.add_argument("-o", "--output", default="stability.png", help="output image")
    recorded = "default: the run's recorded rule, else"
    parser.add_argument(
        "--decimals", type=_int_at_least(0), default=None, help=f"rounding r ({recorded} 2)"
    )
    parser.add_argument(
        "--patience", type=_int_at_least(1), default=None, help=f"patience ({recorded} 3)"
    )
    parser.add_argument(
        "--start-from-epoch",
        type=_int_at_least(0),
        default=None,
        help=f"first 0-based epoch the rule considers ({recorded} 0)",
    )
    parser.set_defaults(func=_run_plot_stability, registration=False)
    return parser


def _run_plot_savings(args):
    from kerascnn.observe.savings import plot_savings, savings_lines

    runs = plot_savings(args.run_dirs, args.output, labels=args.label)
    print(f"Wrote {args.output} ({len(runs)} runs: accuracy against training time and MACs).")
    print("\n".join(savings_lines(runs)))
    return 0


def add_plot_savings_parser(subparsers):
    """Registers `plot-savings RUN_DIR [RUN_DIR ...] -o savings.png`."""
    parser = subparsers.add_parser(
        "plot-savings",
        help="plot accuracy against training time and MACs trained for `kerascnn train` runs",
        description=(
            "Draws accuracy against training time and against MACs trained (two panels) for "
            "the given `kerascnn train` output directories, one curve per run labelled with "
            "its method, stop and Learn&Drop drop epochs marked, and prints the time, MACs "
            "and accuracy of every run against the first one."
        ),
    )
    parser.add_argument(
        "run_dirs", nargs="+", metavar="RUN_DIR", help="`kerascnn train` output directories"
    )
    parser.add_argument(
        "-o", "--output", default="savings.png", help="output image (default: savings.png)"
    )
    parser.add_argument(
        "--label",
        action="append",
        default=None,
        metavar="NAME",
        help="a curve's label, once per RUN_DIR in order (default: the run's method)",
    )
    parser.set_defaults(func=_run_plot_savings, registration=False)
    return parser
