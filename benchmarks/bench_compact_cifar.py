"""Paper Tables 4-5 (CIFAR-10): the 143,396-parameter depthwise net with the techniques.

The paper: 79.9% baseline, 86.76% with BP+CO+M+LS+SWA+SAM. Run:
`TF_ENABLE_ONEDNN_OPTS=1 python benchmarks/bench_compact_cifar.py --epochs 12`
(any rows of `compact_rows.ROWS` with `--rows`, a training subset with
`--limit`). Weight decay 5e-4. `--quick` trains 512 images for 1 epoch per
row, to prove the script works. Results go to
`benchmarks/results/compact_cifar10.json` (quick: `..._quick.json`; `--output`).
"""

import sys

from compact_rows import main

if __name__ == "__main__":
    rows = "baseline,bp+co+m+ls+swa+sam"
    main("cifar10", __doc__.splitlines()[0], 12, rows, 5e-4, 512, sys.argv[1:])
