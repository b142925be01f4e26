"""Paper Tables 4-5 (CIFAR-10): the 143,396-parameter depthwise net with the techniques.

The paper: 79.9% baseline, 86.76% with BP+CO+M+LS+SWA+SAM. Full run (the lead's):
`TF_ENABLE_ONEDNN_OPTS=1 python benchmarks/bench_compact_cifar.py --epochs 30`.
`--quick` trains 512 images for 1 epoch per row, to prove the script works.
Results go to `benchmarks/results/compact_cifar.json` (quick: `..._quick.json`).
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
    "bp+co+m+se": ("bp", "co", "m", "se"),
    "bp+co+m": ("bp", "co", "m"),
    "bp+co+m+sam": ("bp", "co", "m", "sam"),
    "bp+co+m+swa": ("bp", "co", "m", "swa"),
    "bp+co+m+ls": ("bp", "co", "m", "ls"),
    "bp+co+m+ls+swa+sam": ("bp", "co", "m", "ls", "swa", "sam"),
}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument(
        "--rows", default="baseline,bp+co+m+ls+swa+sam", help=f"comma list of {list(ROWS)}"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--learning-rate", type=float, default=0.05)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    from compact_nets import train_and_evaluate

    results = []
    for row in args.rows.split(","):
        kwargs = dict(
            epochs=args.epochs,
            seed=args.seed,
            learning_rate=args.learning_rate,
            weight_decay=5e-4,
        )
        if args.quick:
            kwargs.update(epochs=1, limit=512, test_limit=500)
        result = train_and_evaluate("cifar10", ROWS[row], verbose=0, **kwargs)
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
    name = "compact_cifar_quick.json" if args.quick else "compact_cifar.json"
    with open(os.path.join(out, name), "w") as f:
        json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
