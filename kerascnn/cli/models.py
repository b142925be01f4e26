"""`kerascnn list` and `kerascnn summary`: the zoo table and a model's per-layer costs.

Example:

    kerascnn list --family resnet
    kerascnn summary resnet18 --input-shape 32,32,3 --classes 10 --template uniform
    kerascnn summary mobilenet --input-shape 224,224,3 --classes 1000 --json
"""

from __future__ import annotations

import json

from kerascnn.cli._common import add_model_command, model_kwargs


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
    parser = add_model_command(
        subparsers,
        "summary",
        help="per-layer parameters, MACs and activation memory of a zoo model",
        description=(
            "Builds a zoo model and prints, per layer, the output shape, "
            "filters, parameters, multiply-accumulates (batch 1) and activation "
            "memory, with totals."
        ),
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.set_defaults(func=_run_summary)
    return parser
