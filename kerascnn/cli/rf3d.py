"""`kerascnn rf3d` and `kerascnn optimize`: the 3DRF table and the 3DRF optimizer.

Example:

    kerascnn rf3d vgg11 --input-shape 32,32,3
    kerascnn optimize mobilenet --theta 0.1
    kerascnn optimize resnet50 --input-shape 224,224,3 --theta 0.25 --json
    kerascnn optimize vgg16 --theta 0 --rule paper --kernel dw_rpw --groups 2 --overlap 0.5
    kerascnn optimize vgg16 --kernel dw_gpw --groups 4 --no-fallback --measure
    kerascnn optimize resnet50 --theta-scan
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
        theta=None if args.theta is None else _float(args.theta, "--theta"),
        alpha=_float(args.alpha, "--alpha"),
        rule=args.rule,
        template=template,
        width_multiplier=width,
        kernel=args.kernel,
        kernel_groups=args.groups,
        kernel_overlap=_float(args.overlap, "--overlap"),
        kernel_fallback=not args.no_fallback,
        input_shape=input_shape,
        return_report=True,
    )
    spec = transform(base, template=template, width_multiplier=width, input_shape=input_shape)
    return spec, final, report.organizer, report.decomposer, input_shape


def _print_theta_scan(args):
    """`kerascnn optimize MODEL --theta-scan`: layouts reached over theta, per rule."""
    from kerascnn.transforms import organizer

    base, input_shape = _spec_and_shape(args, transforms=False)
    scan = organizer.theta_scan(base, input_shape, alpha=_float(args.alpha, "--alpha"))
    paper = organizer.PAPER_LAYOUTS.get(args.model)
    if args.json:
        data = {
            "model": base.name,
            "input_shape": list(input_shape),
            "paper_layout": list(paper) if paper else None,
            "scan": {r: [i.to_dict() for i in ivs] for r, ivs in scan.items()},
        }
        print(json.dumps(data, indent=2))
        return 0
    print(
        f"{base.name} at {'x'.join(map(str, input_shape))}, alpha={args.alpha}: organizer "
        "layouts over theta >= 0 (exact intervals: the organizer is rerun between and at "
        "the gains it compares with theta)"
    )
    print(
        f"layout before: {list(organizer.body_depths(base))}; paper's layout: "
        f"{list(paper) if paper else '-'}"
    )
    for rule in organizer.RULES:
        print(f"rule={rule}:")
        for interval in scan[rule]:
            mark = "  <- paper" if paper and tuple(interval.depths) == tuple(paper) else ""
            print(f"  theta in {interval.describe():<20} -> {list(interval.depths)}{mark}")
    return 0


def _measure(spec, final, input_shape, args, macs):
    """Times a training step before and after; prints the speed-up and the MAC ratio."""
    import keras

    from kerascnn.builder.model import build_model
    from kerascnn.observe.step_time import measure_train_step

    keras.utils.set_random_seed(0)
    before = build_model(spec, input_shape=input_shape, classes=args.classes)
    after = build_model(final, input_shape=input_shape, classes=args.classes)
    models = {"before": before, "before (A/A)": before, "after": after}
    result = measure_train_step(
        models, batch_size=args.batch_size, steps=args.steps, repeats=args.repeats
    )
    ms = {k: 1000 * v for k, v in result["median"].items()}
    print(
        f"train step (batch {args.batch_size}, {args.steps} steps x {args.repeats} rounds, "
        f"interleaved, after {result['warmup']} warm-up steps; medians):"
    )
    print(f"  before: {ms['before']:.1f} ms   after: {ms['after']:.1f} ms")
    speedup = 1 / result["median_ratio"]["after"]
    print(
        f"  measured speed-up: {speedup:.2f}x (paired median)   "
        f"MAC ratio: {macs[0] / macs[1]:.2f}x   "
        f"A/A control: {1 / result['median_ratio']['before (A/A)']:.2f}x"
    )
    return {
        "median_ms": ms,
        "speedup": speedup,
        "mac_ratio": macs[0] / macs[1],
        "aa_control": 1 / result["median_ratio"]["before (A/A)"],
        "ratios": result["ratios"],
    }


def _print_optimized(args, spec, result, report, before, after):
    from kerascnn.transforms import organizer, rf3d

    print(
        f"{spec.name} at {'x'.join(map(str, result.input_shape))}, theta={result.theta}, "
        f"alpha={result.alpha}, rule={result.rule}"
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
        shrunk = [str(s["stage"]) for s in report["stages"] if not s["quality_final"]]
        print(
            f"kernels: {args.kernel} (groups={args.groups}, overlap={args.overlap}); "
            f"{len(report['replaced'])} convolutions replaced"
            + (f"; DW+PW fallback: {', '.join(fallbacks)}" if fallbacks else "")
            + (f"; 3DRF shrinks in stage(s) {', '.join(shrunk)}" if shrunk else "")
        )
    print(f"params: {before['params']:,} -> {after['params']:,}")
    print(f"MACs:   {before['macs']:,} -> {after['macs']:,}")


def _run_optimize(args):
    if args.theta_scan:
        return _print_theta_scan(args)
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
    if not args.json:
        _print_optimized(args, spec, result, report, before, after)
    if args.measure:
        macs = (before["macs"], after["macs"])
        if args.json:
            import contextlib
            import io

            with contextlib.redirect_stdout(io.StringIO()):
                data["measure"] = _measure(spec, final, input_shape, args, macs)
        else:
            _measure(spec, final, input_shape, args, macs)
    if args.json:
        print(json.dumps(data, indent=2))
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
    parser.add_argument(
        "--theta",
        default=None,
        help="organizer threshold (default: the model's: 0 for VGG as in the paper, else 0.1)",
    )
    parser.add_argument("--alpha", default="3", help="decay of the gain (default: 3)")
    parser.add_argument(
        "--rule",
        default=None,
        choices=("saturated", "paper"),
        help="move/remove/stop rule (default: the model's: paper for VGG, else saturated)",
    )
    parser.add_argument(
        "--theta-scan",
        action="store_true",
        help="print the layouts reached over theta, for both rules, and exit",
    )
    parser.add_argument(
        "--kernel",
        default=None,
        choices=("dw_pw", "dw_gpw", "dw_rpw"),
        help="also replace standard convolutions with this block",
    )
    parser.add_argument("--groups", type=int, default=2, help="GPW/RPW groups (default: 2)")
    parser.add_argument("--overlap", default="0.5", help="RPW overlap in [0, 1) (default: 0.5)")
    parser.add_argument(
        "--no-fallback",
        action="store_true",
        help="replace every convolution with the block, even where a stage's 3DRF shrinks "
        "(the paper's Table 6 counts); default: full PW there",
    )
    parser.add_argument(
        "--measure",
        action="store_true",
        help="time a training step before and after (interleaved, paired median)",
    )
    parser.add_argument("--batch-size", type=int, default=32, help="--measure batch (default: 32)")
    parser.add_argument(
        "--steps", type=int, default=5, help="--measure steps per round (default: 5)"
    )
    parser.add_argument("--repeats", type=int, default=5, help="--measure rounds (default: 5)")
    parser.add_argument("--json", action="store_true", help="print JSON")
    parser.set_defaults(func=_run_optimize)
    return parser
