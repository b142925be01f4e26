"""Paper Table 3/4 (MNIST): the 1,560-parameter net, baseline vs BlurPool (and more).

The paper: 98.35% baseline, 99.21% with BlurPool. Full run (the lead's):
`TF_ENABLE_ONEDNN_OPTS=1 python benchmarks/bench_compact_mnist.py --epochs 20`.
`--quick` trains 1024 images for 1 epoch per row, to prove the script works.
Results go to `benchmarks/results/compact_mnist.json` (quick: `..._quick.json`).
"""

import argparse
import json
import os
import sys

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "examples"))

ROWS = {
    "baseline": (),
    "ocl": ("ocl",),
    "co": ("co",),
    "bp": ("bp",),
    "se": ("se",),
    "m": ("m",),
    "ls": ("ls",),
    "sam": ("sam",),
    "swa": ("swa",),
    "bp+se+swa": ("bp", "se", "swa"),
}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--rows", default="baseline,bp", help=f"comma list of {list(ROWS)}")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--learning-rate", type=float, default=0.05)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    from compact_nets import train_and_evaluate

    results = []
    for row in args.rows.split(","):
        kwargs = dict(epochs=args.epochs, seed=args.seed, learning_rate=args.learning_rate)
        if args.quick:
            kwargs.update(epochs=1, limit=1024, test_limit=1000)
        result = train_and_evaluate("mnist", ROWS[row], verbose=0, **kwargs)
        result["row"] = row
        results.append(result)
        print(
            f"{row:>12}: acc={result['test_accuracy']:.4f} params={result['params']} "
            f"epochs={result['epochs']} time={result['train_seconds']:.1f}s "
            f"epoch={min(result['epoch_seconds']):.1f}s",
            flush=True,
        )
    out = os.path.join(ROOT, "benchmarks", "results")
    os.makedirs(out, exist_ok=True)
    name = "compact_mnist_quick.json" if args.quick else "compact_mnist.json"
    with open(os.path.join(out, name), "w") as f:
        json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
