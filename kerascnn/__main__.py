"""`python -m kerascnn ...`: the `kerascnn` command line."""

import sys

from kerascnn.cli import main

if __name__ == "__main__":
    sys.exit(main())
