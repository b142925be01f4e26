"""`kerascnn compare` at the largest scale 2 shared CPU cores allow: templates and 3DRF variants.

Three comparisons, each one `kerascnn.compare(...)` (one recipe, one run
directory per variant under `--work-dir`, finished variants skipped on a
rerun):

* `vgg11_bn`: the five templates at widths `--widths` (default 0.25 and
  0.125) plus the base model at `--reference-width` (0.5): the reference
  of the dashed lines and of "matches the base accuracy";
* `mobilenet`: the five templates at `--mobilenet-widths` (0.125) and
  reference `--mobilenet-reference-width` (0.25): its reverse and quadratic
  templates put 512-1024 channels at 32x32 (the CIFAR variant's first
  stages keep full resolution), 15x the base's step time at equal width;
* `vgg16_bn` (the 3DRF paper's Tables 3 and 6): the original layout, the
  paper's organized layout {5,4,2,1,1}, and that layout with DW+GPW and
  DW+RPW kernels (g=2, o=50%), all at width `--width-3drf` (0.125).

Data: a class-balanced random subset (`--train` / `--test` images, seeded)
of the CIFAR-10 JPEGs in `$KERASCNN_DATA_DIR`, written once as an `.npz`
under `--work-dir` (outside the repository) and passed as `data_dir`. A
subset is needed because `train(limit=N)` keeps the *first* N images and the
JPEG source is ordered by class.

Stages (`--stage`):

* `train` (a long non-timing job: `/work/coord/cpu long`): trains every
  variant (`measure=False`);
* `measure` (timing: `/work/coord/cpu bench`, alone): for every comparison,
  `compare(..., remeasure=True, aa_control=True)`: parameters, MACs, peak
  memory per batch of 64 (TensorFlow's allocator statistics), inference
  latency at batch 1 and 64 (interleaved rounds, medians, an A/A row), then
  the combined rows, the paper's claims and the three Pareto plots
  (`--plots-dir`, default docs/: compare_pareto_{params,memory,latency}.png).

Results to `benchmarks/results/compare[_quick].json` with the exact command.

    /work/coord/cpu long python benchmarks/bench_compare.py --stage train
    /work/coord/cpu bench python benchmarks/bench_compare.py --stage measure
"""

import os
import shutil

from _common import ROOT, make_parser, results_path, write_results

TEMPLATES = ("base", "reverse", "uniform", "quadratic", "negative_quadratic")


def parse_args(argv=None):
    parser = make_parser(__doc__, quick_help="tiny smoke configuration (not figures)")
    parser.add_argument("--stage", choices=("train", "measure", "all"), default="all")
    parser.add_argument("--train", type=int, default=3000, help="training images")
    parser.add_argument("--test", type=int, default=1000, help="test images")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--widths", default="0.25,0.125")
    parser.add_argument("--reference-width", type=float, default=0.5)
    parser.add_argument("--mobilenet-widths", default="0.125")
    parser.add_argument("--mobilenet-reference-width", type=float, default=0.25)
    parser.add_argument("--width-3drf", type=float, default=0.125)
    parser.add_argument("--models", default="vgg11_bn,mobilenet,vgg16_bn")
    parser.add_argument("--latency-repeats", type=int, default=7)
    parser.add_argument("--work-dir", default=os.path.expanduser("~/.cache/kerascnn/bench_compare"))
    parser.add_argument("--plots-dir", default=os.path.join(ROOT, "docs"))
    parser.add_argument("--output", default=None)
    args = parser.parse_args(argv)
    if args.quick:
        args.train, args.test, args.epochs = 256, 256, 1
        args.widths, args.reference_width, args.width_3drf = "0.125", 0.25, 0.125
        args.mobilenet_widths, args.mobilenet_reference_width = "0.125", 0.25
        args.latency_repeats = 2
        args.work_dir = args.work_dir.rstrip("/") + "_quick"
        args.plots_dir = os.path.join(args.work_dir, "plots")
    return args


def subset_npz(args):
    """A class-balanced random CIFAR-10 subset as `<work-dir>/cifar10_<train>_<test>.npz`."""
    import numpy as np

    from kerascnn import data

    path = os.path.join(args.work_dir, f"cifar10_{args.train}_{args.test}_uint8.npz")
    if os.path.exists(path):
        return path
    rng = np.random.default_rng(0)
    arrays = {}
    for split, n in (("train", args.train), ("test", args.test)):
        x, y = data.load("cifar10", split, as_numpy=True, normalize=False)
        y = np.asarray(y).reshape(-1).astype("int64")
        per_class = n // 10
        keep = np.concatenate(
            [rng.permutation(np.flatnonzero(y == c))[:per_class] for c in range(10)]
        )
        keep = rng.permutation(keep)
        # `normalize=False` gives x / 255 in [0, 1]: back to the exact uint8 pixels.
        arrays[f"x_{split}"] = np.rint(np.asarray(x)[keep] * 255.0).astype("uint8")
        arrays[f"y_{split}"] = y[keep]
    os.makedirs(args.work_dir, exist_ok=True)
    tmp = path + ".tmp.npz"
    np.savez(tmp, **arrays)
    os.replace(tmp, path)
    return path


def comparisons(args):
    """`{model: compare keyword arguments}` of the three comparisons."""
    from kerascnn.compare import Variant

    out = {}
    for model in args.models.split(","):
        if model == "vgg16_bn":
            w = args.width_3drf
            out[model] = dict(
                templates=(),
                variants=[
                    Variant(model, "base", w),
                    Variant(model, "base", w, "paper", None, (5, 4, 2, 1, 1)),
                    Variant(model, "base", w, "paper", "dw_gpw", (5, 4, 2, 1, 1)),
                    Variant(model, "base", w, "paper", "dw_rpw", (5, 4, 2, 1, 1)),
                ],
            )
        else:
            mobile = model == "mobilenet"
            widths = args.mobilenet_widths if mobile else args.widths
            ref = args.mobilenet_reference_width if mobile else args.reference_width
            out[model] = dict(
                templates=TEMPLATES,
                widths=[float(w) for w in widths.split(",")],
                variants=[Variant(model, "base", ref)],
            )
    return out


def run(args, model, grid, measure):
    from kerascnn.compare import compare

    return compare(
        model,
        **grid,
        output_dir=os.path.join(args.work_dir, model),
        dataset="cifar10",
        data_dir=subset_npz(args),
        source="npz",
        epochs=args.epochs,
        batch_size=64,
        stability_stopping=True,
        seed=0,
        measure=measure,
        remeasure=measure,
        aa_control=measure,
        latency_repeats=args.latency_repeats,
        plots=measure,
        verbose=1,
        command=None,
    )


def _acc(row):
    return None if row is None or row.get("test_accuracy") is None else 100 * row["test_accuracy"]


def template_claims(payload):
    """Table 1 (template vs base at equal filters) and Figure 3-5 (matching the reference)."""
    rows = {(r["template"], r["width"]): r for r in payload["rows"] if r["layout"] == "original"}
    ref = next(r for r in payload["rows"] if r["name"] == payload["reference"])
    target = _acc(ref) - 0.5
    widths = sorted({w for _, w in rows}, reverse=True)
    equal_filters = {}
    for width in widths:
        base = rows.get(("base", width))
        if base is None:
            continue
        equal_filters[str(width)] = {
            t: round(_acc(rows[(t, width)]) - _acc(base), 2)
            for t in TEMPLATES
            if (t, width) in rows and t != "base"
        }
    matches = {}
    for template in TEMPLATES:
        ok = [
            rows[(template, w)]
            for w in widths
            if (template, w) in rows
            and rows[(template, w)]["name"] != ref["name"]
            and _acc(rows[(template, w)]) >= target
        ]
        best = min(ok, key=lambda r: r["width"]) if ok else None
        matches[template] = (
            None
            if best is None
            else {
                "width": best["width"],
                "accuracy": round(_acc(best), 2),
                "params_fraction": round(best["params"] / ref["params"], 3),
                "memory_fraction": _fraction(best, ref, "memory_train_bytes"),
                "latency_b64_fraction": _fraction(best, ref, "latency_b64_ms"),
            }
        )
    return {
        "reference": ref["name"],
        "reference_accuracy": round(_acc(ref), 2),
        "template_minus_base_at_equal_filters_points": equal_filters,
        "smallest_width_matching_reference": matches,
    }


def _fraction(row, ref, key):
    if row.get(key) is None or not ref.get(key):
        return None
    return round(row[key] / ref[key], 3)


def rf3d_claims(payload):
    """Table 3/6: organized layout and decomposed kernels against the original VGG-16."""
    ref = next(r for r in payload["rows"] if r["name"] == payload["reference"])
    out = {}
    for row in payload["rows"]:
        out[row["name"]] = {
            "accuracy": round(_acc(row), 2),
            "accuracy_minus_original": round(_acc(row) - _acc(ref), 2),
            "params": row["params"],
            "params_fraction": round(row["params"] / ref["params"], 3),
            "macs_fraction": _fraction(row, ref, "macs"),
            "memory_train_fraction": _fraction(row, ref, "memory_train_bytes"),
            "latency_b64_fraction": _fraction(row, ref, "latency_b64_ms"),
        }
    return out


_KEEP = (
    "name",
    "curve",
    "model",
    "template",
    "width",
    "layout",
    "stages",
    "kernel",
    "test_accuracy",
    "params",
    "macs",
    "memory_train_bytes",
    "memory_inference_bytes",
    "latency_b1_ms",
    "latency_b64_ms",
    "latency_ratio_b1",
    "latency_ratio_b64",
    "train_time_s",
    "planned_epochs",
    "trained_epochs",
    "stability_stopped",
    "stability_epoch",
)


def main(argv=None):
    args = parse_args(argv)
    grids = comparisons(args)
    if args.stage in ("train", "all"):
        for model, grid in grids.items():
            run(args, model, grid, measure=False)
        if args.stage == "train":
            return
    from kerascnn.observe import pareto

    payloads = {model: run(args, model, grid, measure=True) for model, grid in grids.items()}
    combined = {
        "model": "+".join(payloads),
        "dataset": f"CIFAR-10 subset ({args.train} train / {args.test} test)",
        "references": {m: p["reference"] for m, p in payloads.items()},
        "rows": [r for p in payloads.values() for r in p["rows"]],
    }
    os.makedirs(args.plots_dir, exist_ok=True)
    plots = {}
    for stem, path in pareto.plot_all(combined, args.work_dir).items():
        plots[stem] = os.path.join(args.plots_dir, f"compare_{stem}.png")
        shutil.copyfile(path, plots[stem])
    claims = {
        m: rf3d_claims(p) if m == "vgg16_bn" else template_claims(p) for m, p in payloads.items()
    }
    report = {
        "settings": {k: v for k, v in vars(args).items()},
        "memory_method": next(iter(payloads.values()))["memory_method"],
        "latency_method": next(iter(payloads.values()))["latency_method"],
        "comparisons": {
            m: {
                "command": p["command"],
                "reference": p["reference"],
                "summary": p["summary"],
                "summary_line": p["summary_line"],
                "aa_control": p["aa_control"],
                "rows": [{k: r.get(k) for k in _KEEP} for r in p["rows"]],
            }
            for m, p in payloads.items()
        },
        "claims": claims,
        "plots": plots,
    }
    write_results(args.output or results_path("compare", args.quick), report, argv)
    for p in payloads.values():
        print(p["summary_line"])


if __name__ == "__main__":
    main()
