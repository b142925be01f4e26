"""The shared runner of `bench_compact_mnist.py` and `bench_compact_cifar.py`.

Each row of the paper's Tables 4-5 is a set of techniques (see
`examples/compact_nets.py`); the rows train one after the other in one
process, same data, same seed, same recipe, and the results are written with
the exact command and the settings.
"""

import os
import sys

from _common import ROOT, make_parser, results_path, write_results

sys.path.insert(0, os.path.join(ROOT, "examples"))

#: Row name -> techniques (`examples/compact_nets.TECHNIQUES` codes).
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
    "bp+co+m+se": ("bp", "co", "m", "se"),
    "bp+co+m": ("bp", "co", "m"),
    "bp+co+m+sam": ("bp", "co", "m", "sam"),
    "bp+co+m+swa": ("bp", "co", "m", "swa"),
    "bp+co+m+ls": ("bp", "co", "m", "ls"),
    "bp+co+m+ls+swa+sam": ("bp", "co", "m", "ls", "swa", "sam"),
}


def main(dataset, description, default_epochs, default_rows, weight_decay, quick_limit, argv):
    parser = make_parser(description, quick_help="a few hundred images, 1 epoch")
    parser.add_argument("--epochs", type=int, default=default_epochs)
    parser.add_argument("--rows", default=default_rows, help=f"comma list of {list(ROWS)}")
    parser.add_argument("--limit", type=int, default=None, help="training images (default all)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--learning-rate", type=float, default=0.05)
    parser.add_argument(
        "--shift", type=int, default=0, help="random shifts of up to N pixels in training"
    )
    parser.add_argument("--output", default=None, help="JSON file (default in results/)")
    args = parser.parse_args(argv)
    rows = [r for r in args.rows.split(",") if r]
    unknown = [r for r in rows if r not in ROWS]
    if unknown:
        raise SystemExit(f"Unknown rows {unknown}; expected some of {list(ROWS)}")
    from compact_nets import train_and_evaluate

    kwargs = dict(
        epochs=args.epochs,
        seed=args.seed,
        learning_rate=args.learning_rate,
        weight_decay=weight_decay,
        limit=args.limit,
        shift=args.shift,
    )
    if args.quick:
        kwargs.update(epochs=1, limit=quick_limit, test_limit=1000)
    output = args.output or results_path(f"compact_{dataset}", args.quick)
    report = {
        "quick": args.quick,
        "settings": vars(args) | {"weight_decay": weight_decay},
        "rows_requested": rows,
        "complete": False,
        "rows": [],
    }
    for row in rows:
        result = train_and_evaluate(dataset, ROWS[row], verbose=2, **kwargs)
        result["row"] = row
        report["rows"].append(result)
        report["complete"] = len(report["rows"]) == len(rows)
        # Written after every row: a run cut short keeps the rows it finished.
        write_results(output, report, argv, indent=1)
        print(
            f"{row:>20}: acc={result['test_accuracy']:.4f} params={result['params']} "
            f"epochs={result['epochs']} time={result['train_seconds']:.1f}s "
            f"epoch={min(result['epoch_seconds']):.1f}s",
            flush=True,
        )
