"""The `kerascnn` console script: runs `kerascnn.cli.main` with a fast start.

`import kerascnn` imports TensorFlow (through `kerascnn._registration`, so that
saved models reload anywhere). The command line does not need it to parse its
arguments, print `--help` or `--version`: this launcher, which lives outside
the `kerascnn` package (a package's `__init__` runs before any of its
submodules), sets `KERASCNN_CLI_DEFER_REGISTRATION=1` before importing
`kerascnn`. `kerascnn/__init__.py` removes the variable (so child processes do
not inherit it) and skips the registration; `kerascnn.cli.main` registers
before it runs a command.
"""

import os
import sys

DEFER_ENV = "KERASCNN_CLI_DEFER_REGISTRATION"


def main(argv=None):
    """Runs the `kerascnn` command line; returns the exit status."""
    os.environ[DEFER_ENV] = "1"
    # Before TensorFlow is imported (by a command): no C++ info logs.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        from kerascnn import cli
    finally:
        # Normally popped by kerascnn/__init__; not if kerascnn was imported already.
        os.environ.pop(DEFER_ENV, None)
    return cli.main(argv)


if __name__ == "__main__":
    sys.exit(main())
