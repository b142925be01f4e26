"""`kerascnn rf3d` and `kerascnn optimize`: the 3DRF table and the 3DRF optimizer.

Example:

    kerascnn rf3d vgg11 --input-shape 32,32,3
    kerascnn optimize mobilenet --theta 0.1
    kerascnn optimize resnet50 --input-shape 224,224,3 --theta 0.25 --json
    kerascnn optimize vgg16 --theta 0 --rule paper --kernel dw_rpw --groups 2 --overlap 0.5
"""

from __future__ import annotations

import json

from kerascnn.cli._common import add_model_command, model_kwargs, parse_positive_float


def _spec_and_shape(args, *, transforms=True):
    """The zoo spec of the options and its input shape.

    With `transforms=False` only `--stages` and `--filters` are applied (the
    spec `kerascnn.transforms.pipeline.transform` starts from).
    """
    from kerascnn import zoo

    kwargs = model_kwargs(args)
    info = zoo.get_info(args.model)
    input_shape = kwargs.pop("input_shape")
    variant = zoo.resolve_variant(info, kwargs.pop("variant"), input_shape)
    if input_shape is None:
        input_shape = (224, 224, 3) if variant == "imagenet" else info.default_input_shape
    if not transforms:
        kwargs.pop("template")
        kwargs.pop("width_multiplier")
    spec = zoo.get_spec(info.name, input_shape=input_shape, variant=variant, **kwargs)
    return spec, tuple(input_shape)


def _float(text, option):
    try:
        return float(text)
    except (TypeError, ValueError):
        raise ValueError(f"{option} must be a number. Received: {text!r}") from None


def _run_rf3d(args):
    from kerascnn.transforms import rf3d

    spec, input_shape = _spec_and_shape(args)
    stages = rf3d.analyze(spec, input_shape, _float(args.alpha, "--alpha"))
    if args.json:
        print(
            json.dumps(
                {
                    "model": spec.name,
                    "input_shape": list(input_shape),
                    "stages": [s.to_dict() for s in stages],
                    "total_gain": rf3d.total_gain(stages),
                },
                indent=2,
            )
        )
    else:
        print(f"{spec.name} at {'x'.join(map(str, input_shape))}")
        print(rf3d.format_table(stages))
        print(f"total gain: {rf3d.total_gain(stages):.4f}")
    return 0


def add_rf3d_parser(subparsers):
    """Adds `kerascnn rf3d`: the per-stage 3DRF table of a zoo model."""
    parser = add_model_command(
        subparsers,
        "rf3d",
        help="per-stage 3D receptive field (3DRF) and gains of a zoo model",
        description="Prints, for every stage, 3DRF^w, 3DRF^c, 3DRF and the gain of each unit.",
        classes=False,
    )
    parser.add_argument("--alpha", default="3", help="decay of the gain (default: 3)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    # Specs only: no model is built or loaded, so no TensorFlow import.
    parser.set_defaults(func=_run_rf3d, registration=False)
    return parser


def model_totals(spec, input_shape, classes=10):
    """`{"params", "macs"}` of the Keras model built from `spec`."""
    import keras

    from kerascnn.builder.model import build_model
    from kerascnn.observe.summary import summarize

    model = build_model(spec, input_shape=input_shape, classes=classes)
    totals = summarize(model).totals
    del model
    keras.backend.clear_session()
    return {"params": totals["params"], "macs": totals["macs"]}


def _optimized(args):
    """`(spec before, final spec, OrganizerResult, decomposer report, input shape)`.

    The transforms run in the one pipeline order
    (`kerascnn.transforms.pipeline.transform`): stages, organizer, template,
    width, kernel; "before" is the model with the same template and width,
    not organized nor decomposed.
    """
    from kerascnn.transforms.pipeline import transform

    base, input_shape = _spec_and_shape(args, transforms=False)
    template, width = args.template, parse_positive_float(args.width, "--width")
    final, report = transform(
        base,
        organize=True,
        theta=_float(args.theta, "--theta"),
        alpha=_float(args.alpha, "--alpha"),
        rule=args.rule,
        template=template,
        width_multiplier=width,
        kernel=args.kernel,
        kernel_groups=args.groups,
        kernel_overlap=_float(args.overlap, "--overlap"),
        input_shape=input_shape,
        return_report=True,
    )
    spec = transform(base, template=template, width_multiplier=width, input_shape=input_shape)
    return spec, final, report.organizer, report.decomposer, input_shape


def _run_optimize(args):
    from kerascnn.transforms import organizer, rf3d

    spec, final, result, report, input_shape = _optimized(args)
    before = model_totals(spec, input_shape, args.classes)
    after = model_totals(final, input_shape, args.classes)
    data = result.to_dict()
    data.pop("spec")
    data.update(
        model=spec.name,
        before_totals=before,
        after_totals=after,
        decomposer=report,
        final_spec=final.to_dict(),
    )
    if args.json:
        print(json.dumps(data, indent=2))
        return 0
    print(
        f"{spec.name} at {'x'.join(map(str, input_shape))}, theta={result.theta}, "
        f"alpha={result.alpha}, rule={args.rule}"
    )
    print(f"stages before: {list(organizer.body_depths(spec))}")
    print(f"stages after:  {list(organizer.body_depths(result.spec))}")
    print("steps:")
    for step in result.steps:
        print("  " + step.describe())
    print(
        f"total gain: {rf3d.total_gain(result.before):.4f} -> {rf3d.total_gain(result.after):.4f}"
    )
    if report is not None:
        fallbacks = [s["fallback"] for s in report["stages"] if s["fallback"]]
        print(
            f"kernels: {args.kernel} (groups={args.groups}, overlap={args.overlap}); "
            f"{len(report['replaced'])} convolutions replaced"
            + (f"; DW+PW fallback: {', '.join(fallbacks)}" if fallbacks else "")
        )
    print(f"params: {before['params']:,} -> {after['params']:,}")
    print(f"MACs:   {before['macs']:,} -> {after['macs']:,}")
    return 0


def add_optimize_parser(subparsers):
    """Adds `kerascnn optimize`: the 3DRF stage organizer and kernel decomposer."""
    parser = add_model_command(
        subparsers,
        "optimize",
        help="reorganize stages (and decompose kernels) with the 3DRF optimizer",
        description=(
            "Runs the 3DRF stage organizer (and, with --kernel, the kernel "
            "decomposer) and prints the stages before and after, the step log, "
            "and parameters and MACs before and after."
        ),
    )
    parser.add_argument("--theta", default="0.1", help="organizer threshold (default: 0.1)")
    parser.add_argument("--alpha", default="3", help="decay of the gain (default: 3)")
    parser.add_argument(
        "--rule",
        default="saturated",
        choices=("saturated", "paper"),
        help="move/remove/stop rule (default: saturated)",
    )
    parser.add_argument(
        "--kernel",
        default=None,
        choices=("dw_pw", "dw_gpw", "dw_rpw"),
        help="also replace standard convolutions with this block",
    )
    parser.add_argument("--groups", type=int, default=2, help="GPW/RPW groups (default: 2)")
    parser.add_argument("--overlap", default="0.5", help="RPW overlap in [0, 1) (default: 0.5)")
    parser.add_argument("--json", action="store_true", help="print JSON")
    parser.set_defaults(func=_run_optimize)
    return parser
