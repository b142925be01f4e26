"""Cost per epoch of each technique relative to plain training (the issue's last check).

Trains the paper's CIFAR-10 depthwise net (or the MNIST 1.5K net) for 2 epochs
per technique on the same data and reports the second epoch's time (the first
includes tracing) divided by the baseline's. SAM is about 2x by construction;
the others should cost under 5%. Full run:
`TF_ENABLE_ONEDNN_OPTS=1 python benchmarks/bench_techniques_cost.py --limit 10000`.
`--quick`: 256 images, MNIST net. Writes `benchmarks/results/techniques_cost*.json`.
"""

import argparse
import json
import os
import sys

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "examples"))

ROWS = ("baseline", "ocl", "co", "m", "ls", "swa", "bp", "se", "sam")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", choices=("mnist", "cifar10"), default="cifar10")
    parser.add_argument("--limit", type=int, default=10000)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    from compact_nets import train_and_evaluate

    dataset, limit = args.dataset, args.limit
    if args.quick:
        dataset, limit = "mnist", 256
    results, base = [], None
    for row in ROWS:
        techniques = () if row == "baseline" else (row,)
        r = train_and_evaluate(
            dataset,
            techniques,
            epochs=2,
            batch_size=args.batch_size,
            limit=limit,
            test_limit=256,
            verbose=0,
        )
        seconds = r["epoch_seconds"][-1]
        base = seconds if base is None else base
        results.append({"technique": row, "epoch_seconds": seconds, "relative": seconds / base})
        print(f"{row:>9}: {seconds:7.2f} s/epoch  x{seconds / base:.2f}", flush=True)
    out = os.path.join(ROOT, "benchmarks", "results")
    os.makedirs(out, exist_ok=True)
    name = "techniques_cost_quick.json" if args.quick else "techniques_cost.json"
    with open(os.path.join(out, name), "w") as f:
        json.dump({"dataset": dataset, "examples": limit, "rows": results}, f, indent=1)


if __name__ == "__main__":
    main()
