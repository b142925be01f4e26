"""Paper Tables 3-4 (MNIST): the 1,560-parameter net, baseline vs BlurPool (and more rows).

The paper: 98.35% baseline, 99.21% with BlurPool. Full run:
`TF_ENABLE_ONEDNN_OPTS=1 python benchmarks/bench_compact_mnist.py --epochs 20`
(any rows of `compact_rows.ROWS` with `--rows`). `--quick` trains 1024 images
for 1 epoch per row, to prove the script works. Results go to
`benchmarks/results/compact_mnist.json` (quick: `..._quick.json`; `--output`).
"""

import sys

from compact_rows import main

if __name__ == "__main__":
    main("mnist", __doc__.splitlines()[0], 20, "baseline,bp", None, 1024, sys.argv[1:])
