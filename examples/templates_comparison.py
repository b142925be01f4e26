"""Filter-distribution templates compared on one zoo model (the templates paper's workflow).

Trains the same zoo model under its base filter distribution and under each
template of `kerascnn.transforms.templates` (reverse, uniform, quadratic, negative
quadratic), with the same recipe, through `kerascnn.training.run.train`, and prints
a table: template, parameters, forward MACs per image, test accuracy and
training time. Results (and every run's report, logs and model) are written
under `--output-dir`.

The default scale runs on the embedded Fashion-MNIST subset shipped with the
package (no network): ResNet-18 at width 1/8, 1000 training images, 3 epochs.
At such a small scale the accuracy differences between templates are mostly
noise; the parameter and MAC columns are exact. For the paper's setting use
CIFAR-10 (`KERASCNN_DATA_DIR` pointing at the data, see `kerascnn.data`):

    python examples/templates_comparison.py                  # default small scale
    python examples/templates_comparison.py --quick          # smoke test: 1 epoch, 256 images
    KERASCNN_DATA_DIR=../shared/data python examples/templates_comparison.py \\
        --dataset cifar10 --model vgg11_bn --width 0.25 --epochs 20 --limit 0 --augment

(VGG needs 32x32 inputs: it does not fit the 28x28 embedded images.)
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from kerascnn.training.run import train  # noqa: E402
from kerascnn.transforms.templates import TEMPLATES  # noqa: E402


def compare(
    model="resnet18",
    dataset="embedded",
    templates=TEMPLATES,
    width=0.125,
    epochs=3,
    batch_size=64,
    limit=1000,
    optimizer="adam",
    learning_rate=None,
    augment=False,
    seed=0,
    output_dir="runs/templates_comparison",
    verbose=0,
):
    """Trains `model` under every template; returns one result dict per template."""
    rows = []
    for template in templates:
        start = time.perf_counter()
        report = train(
            model=model,
            dataset=dataset,
            epochs=epochs,
            batch_size=batch_size,
            template=template,
            width_multiplier=width,
            optimizer=optimizer,
            learning_rate=learning_rate,
            augment=augment,
            limit=limit,
            seed=seed,
            output_dir=os.path.join(output_dir, template),
            verbose=verbose,
            plots=False,
        )
        rows.append(
            {
                "template": template,
                "params": report["params"],
                "macs": report["macs"],
                "test_accuracy": report["test_accuracy"],
                "train_time_s": report["train_time_s"],
                "wall_time_s": time.perf_counter() - start,
            }
        )
        print(
            f"  {template:<18} done: accuracy {report['test_accuracy']:.4f}, "
            f"{report['train_time_s']:.1f} s training",
            flush=True,
        )
    return rows


def format_table(rows):
    """The results as a fixed-width text table."""
    header = f"{'template':<20}{'params':>12}{'MACs':>14}{'test acc':>10}{'train s':>10}"
    lines = [header, "-" * len(header)]
    for row in rows:
        macs = f"{row['macs']:,}" if row["macs"] is not None else "n/a"
        lines.append(
            f"{row['template']:<20}{row['params']:>12,}{macs:>14}"
            f"{row['test_accuracy']:>10.4f}{row['train_time_s']:>10.1f}"
        )
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resnet18")
    parser.add_argument("--dataset", default="embedded")
    parser.add_argument("--templates", default=",".join(TEMPLATES), help="comma-separated")
    parser.add_argument("--width", type=float, default=0.125, help="width multiplier")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--limit", type=int, default=1000, help="training images (0: all)")
    parser.add_argument("--optimizer", default="adam")
    parser.add_argument("--lr", type=float, default=None)
    parser.add_argument("--augment", action="store_true")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output-dir", default="runs/templates_comparison")
    parser.add_argument("--verbose", type=int, default=0, choices=[0, 1, 2])
    parser.add_argument("--quick", action="store_true", help="1 epoch on 256 images")
    args = parser.parse_args(argv)
    if args.quick:
        args.epochs, args.limit = 1, 256
    templates = [t.strip() for t in args.templates.split(",") if t.strip()]
    print(
        f"{args.model} x{args.width} on {args.dataset}: {args.epochs} epoch(s), "
        f"{args.limit or 'all'} training images, templates {templates}",
        flush=True,
    )
    start = time.perf_counter()
    try:
        rows = compare(
            model=args.model,
            dataset=args.dataset,
            templates=templates,
            width=args.width,
            epochs=args.epochs,
            batch_size=args.batch_size,
            limit=args.limit or None,
            optimizer=args.optimizer,
            learning_rate=args.lr,
            augment=args.augment,
            seed=args.seed,
            output_dir=args.output_dir,
            verbose=args.verbose,
        )
    except (ValueError, TypeError) as error:
        print(f"templates_comparison: error: {' '.join(str(error).split())}", file=sys.stderr)
        return 2
    print()
    print(format_table(rows))
    total = time.perf_counter() - start
    print(f"\ntotal wall time {total:.0f} s; results in {args.output_dir}/summary.json")
    with open(os.path.join(args.output_dir, "summary.json"), "w") as f:
        json.dump({"args": vars(args), "results": rows, "wall_time_s": total}, f, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
