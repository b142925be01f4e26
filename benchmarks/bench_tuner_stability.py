"""Same keras-tuner search with and without stability stopping in every trial.

Runs `kerascnn.tuning.search` twice on the embedded Fashion-MNIST subset with
the same seed, space and trials (>= 6): once with `StabilityStopping` added
to every trial, once training every trial for all its epochs. Reports the
total epochs trained, the search wall time and the best validation accuracy,
and writes them (with the exact command) to
`benchmarks/results/tuner_stability.json`.

Usage:

    python benchmarks/bench_tuner_stability.py            # full (quiet machine)
    python benchmarks/bench_tuner_stability.py --quick    # seconds-scale smoke run
    python benchmarks/bench_tuner_stability.py --trials 8 --epochs 15 --decimals 1  # shorter
"""

from __future__ import annotations

import sys
import tempfile

from _common import make_parser, results_path, write_results

FULL = dict(trials=10, epochs=30, limit=None, batch_size=64, patience=3, decimals=2)
QUICK = dict(trials=6, epochs=4, limit=128, batch_size=64, patience=1, decimals=1)


def run(stability, cfg, seed, directory):
    from kerascnn import data
    from kerascnn import tuning as tuner

    x, y = data.load("embedded", "train", as_numpy=True, limit=cfg["limit"])
    xv, yv = data.load("embedded", "test", as_numpy=True, limit=cfg["limit"])
    result = tuner.search(
        x,
        y,
        validation_data=(xv, yv),
        input_shape=tuple(x.shape[1:]),
        classes=10,
        families=["compact", "mobilenet"],
        width_multipliers=(0.125, 0.25, 0.5),
        optimizers=("adam",),
        learning_rate_range=(1e-3, 1e-2),
        stability_stopping=stability,
        stability_kwargs={"patience": cfg["patience"], "decimals": cfg["decimals"]},
        max_trials=cfg["trials"],
        epochs=cfg["epochs"],
        batch_size=cfg["batch_size"],
        directory=directory,
        project_name="stability" if stability else "baseline",
        seed=seed,
        num_best=1,
    )
    best = result.best_trials[0] if result.best_trials else {}
    return {
        "stability_stopping": stability,
        "total_epochs": result.total_epochs,
        "planned_epochs": cfg["epochs"] * len(result.trials),
        "wall_time_s": round(result.wall_time, 2),
        "best_score": best.get("score"),
        "best_trial": best,
        "trials": [
            {k: t[k] for k in ("trial_id", "status", "score", "params", "macs", "epochs_trained")}
            for t in result.trials
        ],
    }


def main(argv=None):
    parser = make_parser(__doc__, quick_help="tiny smoke configuration")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--trials", type=int, help="override max_trials (at least 6)")
    parser.add_argument("--epochs", type=int, help="override the epochs per trial")
    parser.add_argument("--patience", type=int, help="override StabilityStopping patience")
    parser.add_argument("--decimals", type=int, help="override StabilityStopping decimals (r)")
    parser.add_argument("--output", default=results_path("tuner_stability"))
    args = parser.parse_args(argv)

    cfg = dict(QUICK if args.quick else FULL)
    for key in ("trials", "epochs", "patience", "decimals"):
        value = getattr(args, key)
        if value is not None:
            if value < 1 or (key == "trials" and value < 6):
                raise SystemExit(f"bench_tuner_stability: --{key} is too small. Received: {value}")
            cfg[key] = value
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        for stability in (True, False):
            runs.append(run(stability, cfg, args.seed, tmp))
    out = {
        "mode": "quick" if args.quick else "full",
        "config": dict(cfg, seed=args.seed, dataset="embedded"),
        "runs": runs,
        "epochs_saved": runs[1]["total_epochs"] - runs[0]["total_epochs"],
    }
    write_results(args.output, out, argv, default=str)
    for r in runs:
        print(
            f"stability_stopping={r['stability_stopping']!s:5}: {r['total_epochs']}/"
            f"{r['planned_epochs']} epochs, {r['wall_time_s']:.1f} s, best val_accuracy "
            f"{r['best_score']}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
