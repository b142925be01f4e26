"""`python -m kerascnn ...`: the `kerascnn` command line.

`kerascnn/__init__.py` recognises `python -m kerascnn` and, as for the
`kerascnn` console script (`kerascnn_cli.py`), defers the TensorFlow import
until a command runs, so `python -m kerascnn --help` starts fast.
"""

import sys

from kerascnn.cli import main

if __name__ == "__main__":
    sys.exit(main())
