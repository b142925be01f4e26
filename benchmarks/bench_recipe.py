"""The efficient recipe against the plain baseline: an ablation on a held-out validation split.

Every row is one `kerascnn train` run in its own subprocess (the exact
command is recorded), of the same model, data subset, schedule and seed,
with `--validation-split` (default 0.1) held out of the training subset:
`fit` validates on that split every epoch and the test split is evaluated
once, at the end. The recipe's defaults are chosen from the rows'
validation accuracies and costs, never from the test split:

* `plain`: the plain model (base template, stages as published);
* `organize`: + the 3DRF organizer's stage layout;
* `organize_bp`: + BlurPool;
* `recipe_no_org`: BlurPool + stability stopping + Learn&Drop (the recipe
  without the organizer);
* `recipe`: `--recipe efficient` (organizer + base template + BlurPool +
  stability stopping + Learn&Drop);
* `plain_aa`: the plain run again, the A/A control of the wall-clock figures.

The rows run one after another in rotated order over `--rounds` rounds; time
and MACs saved are against the `plain` run of the same round. The templates
are compared by their MACs at the run's width (`template_macs`, no training:
a template that multiplies the MACs cannot make training cheaper).
`plot-savings` draws `plain` against `recipe` (first round) into
`benchmarks/results/<name>_savings.png`.

    python benchmarks/bench_recipe.py --quick
    python benchmarks/bench_recipe.py   # VGG-11-BN 1/4 width, 4,000 CIFAR-10 JPEGs, 60 epochs
"""

import json
import os
import shlex
import subprocess
import sys
import time

from _common import ROOT, make_parser, results_path, write_results

ROWS = {
    "plain": [],
    "organize": ["--organize"],
    "organize_bp": ["--organize", "--blurpool"],
    "recipe_no_org": ["--blurpool", "--stability-stopping", "--layer-dropping"],
    "recipe": ["--recipe", "efficient"],
    "plain_aa": [],
}
TEMPLATES = ("base", "reverse", "uniform", "quadratic", "negative_quadratic")


def common_args(args):
    """The `kerascnn train` options every row shares."""
    return [
        *("--model", args.model, "--dataset", args.dataset, "--width", str(args.width)),
        *("--limit", str(args.limit), "--epochs", str(args.epochs)),
        *("--batch-size", str(args.batch_size), "--optimizer", "sgd", "--lr", str(args.lr)),
        *("--lr-schedule", "cosine", "--augment", "--seed", str(args.seed)),
        *("--validation-split", str(args.validation_split), "--verbose", "0"),
    ]


def run_row(name, args, work_dir):
    """Trains one row in a subprocess; returns its command and report."""
    out = os.path.join(work_dir, name)
    argv = ["train", *common_args(args), *ROWS[name], "--output-dir", out]
    if os.path.exists(out):
        subprocess.run(["rm", "-rf", out], check=True)
    command = f"kerascnn {shlex.join(argv)}"
    print(f"[{time.strftime('%H:%M:%S')}] {command}", flush=True)
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "kerascnn", *argv], cwd=ROOT, text=True)
    if proc.returncode:
        raise SystemExit(f"{name} failed with status {proc.returncode}")
    with open(os.path.join(out, "report.json")) as f:
        report = json.load(f)
    report["process_seconds"] = time.perf_counter() - start
    return command, report


def row_figures(name, report, plain):
    """One table row: costs and accuracies, savings against `plain`."""
    savings = report.get("savings") or {}
    row = {
        "row": name,
        "dir": report["output_dir"],
        "params": report["params"],
        "forward_macs": report["macs"],
        "epochs": f"{report['trained_epochs']}/{report['planned_epochs']}",
        "stopped_epoch": report.get("stopped_epoch"),
        "dropped_convs": (report.get("layer_dropping") or {}).get("dropped_convs"),
        "train_s": report["train_time_s"],
        "macs_trained": report["training_macs_estimate"],
        "validation_accuracy": report["validation_accuracy"],
        "test_accuracy": report["test_accuracy"],
        "breakdown": savings.get("fraction"),
    }
    if plain is not None:
        row["time_saved"] = 1 - report["train_time_s"] / plain["train_time_s"]
        row["macs_saved"] = 1 - report["training_macs_estimate"] / plain["training_macs_estimate"]
        row["validation_diff"] = report["validation_accuracy"] - plain["validation_accuracy"]
        row["test_diff"] = report["test_accuracy"] - plain["test_accuracy"]
    return row


def template_macs(args):
    """Forward MACs per image of every template on the organized and plain model."""
    from kerascnn.builder.model import build_model
    from kerascnn.training.config import TrainConfig
    from kerascnn.training.report import model_macs
    from kerascnn.training.run import model_spec

    out = {}
    for organize in (False, True):
        for template in TEMPLATES:
            config = TrainConfig(
                model=args.model,
                dataset=args.dataset,
                template=template,
                width_multiplier=args.width,
                organize=organize,
            ).validate()
            spec, _, _ = model_spec(config, (32, 32, 3))
            macs = model_macs(build_model(spec, input_shape=(32, 32, 3), classes=10))[0]
            out[f"{'organized' if organize else 'plain'}/{template}"] = macs
    return out


def print_table(rows):
    print(
        "| round | row | epochs | drops | train s | time saved | MACs saved | "
        "val. acc. (diff) | test acc. (diff) |"
    )
    print("|---|---|---|---|---:|---:|---:|---:|---:|")
    for r in rows:
        pct = lambda v: "-" if v is None else f"{100 * v:+.1f}%"  # noqa: E731
        pts = lambda v: "" if v is None else f" ({100 * v:+.2f})"  # noqa: E731
        print(
            f"| {r['round']} | {r['row']} | {r['epochs']} | {r['dropped_convs'] or 0} | "
            f"{r['train_s']:.0f} | {pct(r.get('time_saved'))} | {pct(r.get('macs_saved'))} | "
            f"{100 * r['validation_accuracy']:.2f}%{pts(r.get('validation_diff'))} | "
            f"{100 * r['test_accuracy']:.2f}%{pts(r.get('test_diff'))} |"
        )


def main(argv=None):
    parser = make_parser(__doc__)
    parser.add_argument("--model", default="vgg11_bn")
    parser.add_argument("--dataset", default="cifar10")
    parser.add_argument("--width", type=float, default=0.25)
    parser.add_argument("--limit", type=int, default=4000)
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--validation-split", type=float, default=0.1)
    parser.add_argument("--rows", default=",".join(ROWS))
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--work-dir", default=os.path.expanduser("~/.cache/kerascnn/bench_recipe"))
    parser.add_argument("--output", default=None)
    args = parser.parse_args(argv)
    if args.quick:
        args.model, args.limit, args.epochs, args.width = "compact_mnist_25k", 400, 3, 1.0
        args.dataset, args.rows = "embedded", "plain,recipe"
    names = [n for n in ROWS if n in args.rows.split(",")]
    if "plain" not in names:
        parser.error(f"--rows must include plain. Received: --rows={args.rows}")
    output = args.output or results_path("recipe", args.quick)
    rows, commands, first_dirs = [], {}, {}
    for r in range(args.rounds):
        order = names[r % len(names) :] + names[: r % len(names)]
        reports = {}
        for row in order:
            commands[row], reports[row] = run_row(row, args, os.path.join(args.work_dir, f"r{r}"))
        for row in names:
            plain = reports["plain"] if row != "plain" else None
            rows.append(dict(row_figures(row, reports[row], plain), round=r))
            first_dirs.setdefault(row, reports[row]["output_dir"])
        print_table(rows)
    picture = os.path.splitext(output)[0] + "_savings.png"
    if "recipe" in first_dirs:
        from kerascnn.observe.savings import plot_savings

        plot_savings([first_dirs["plain"], first_dirs["recipe"]], picture)
    payload = {
        "quick": args.quick,
        "config": vars(args),
        "note": (
            "Each row a `kerascnn train` subprocess run alone, one after another in rotated "
            "order; savings against the plain run of the same round; choices made on the "
            "held-out validation split only."
        ),
        "commands": commands,
        "template_forward_macs": template_macs(args) if not args.quick else None,
        "rows": rows,
        "savings_picture": picture if "recipe" in first_dirs else None,
    }
    write_results(output, payload, argv)
    print_table(rows)


if __name__ == "__main__":
    main()
