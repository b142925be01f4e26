"""Argument parsing and results writing shared by every benchmark script.

Each script builds its parser with `make_parser` (which adds `--quick`), adds
its own flags, and writes its results with `write_results`, which records the
exact command, the UTC date, the machine and the library versions next to the
figures, as JSON under `benchmarks/results/`.

Example:

```python
from _common import make_parser, results_path, write_results

parser = make_parser(__doc__, quick_help="tiny smoke configuration")
parser.add_argument("--epochs", type=int, default=4)
parser.add_argument("--output", default=None)
args = parser.parse_args(argv)
...
write_results(args.output or results_path("my_bench", args.quick), {"results": rows}, argv)
```
"""

import argparse
import datetime
import json
import os
import platform
import shlex
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join(ROOT, "benchmarks", "results")

# Benchmarks run from a checkout: the checkout's kerascnn comes first.
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)


def make_parser(doc, quick_help="a smoke run on tiny settings (its results are not figures)"):
    """An `ArgumentParser` described by the first line of `doc`, with `--quick`.

    Args:
        doc: the script's docstring (or a one-line description).
        quick_help: help text of `--quick`. Defaults to a generic text.
    """
    parser = argparse.ArgumentParser(description=doc.strip().splitlines()[0])
    parser.add_argument("--quick", action="store_true", help=quick_help)
    return parser


def results_path(name, quick=False):
    """`benchmarks/results/<name>[_quick].json` (absolute).

    Args:
        name: the results' base name.
        quick: add the `_quick` suffix. Defaults to `False`.
    """
    return os.path.join(RESULTS, f"{name}{'_quick' if quick else ''}.json")


def command(argv=None):
    """The exact command, as `python benchmarks/<script>.py <args>` (shell-quoted).

    Args:
        argv: the arguments; defaults to `sys.argv[1:]`.
    """
    argv = sys.argv[1:] if argv is None else list(argv)
    script = os.path.relpath(os.path.abspath(sys.argv[0]), ROOT)
    return " ".join(shlex.quote(a) for a in ["python", script, *argv])


def machine_info():
    """Platform, CPUs, GPUs, oneDNN setting and library versions, as a dict."""
    import keras
    import numpy as np
    import tensorflow as tf

    return {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "gpus": [d.name for d in tf.config.list_physical_devices("GPU")],
        "TF_ENABLE_ONEDNN_OPTS": os.environ.get("TF_ENABLE_ONEDNN_OPTS"),
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "numpy": np.__version__,
    }


def write_results(path, report, argv=None, indent=2, default=None):
    """Writes `report` as JSON with the command, date and machine first.

    Args:
        path: the JSON file (its folder is created).
        report: the script's results (a dict).
        argv: the arguments for `command`; defaults to `sys.argv[1:]`.
        indent: JSON indent. Defaults to `2`.
        default: `json.dump`'s `default` (e.g. `float`, `str`). Defaults to `None`.

    Returns:
        The full report written.
    """
    full = {
        "command": command(argv),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": machine_info(),
        **report,
    }
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as f:
        json.dump(full, f, indent=indent, default=default)
        f.write("\n")
    print("wrote", path)
    return full
