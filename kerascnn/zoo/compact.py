"""The compact GAP / depthwise nets of the efficient-CNN paper.

"Efficient CNN: nuts and bolts" (`../shared/papers/efficient-cnn-techniques_nuts-and-bolts.txt`),
Tables 1 (MNIST) and 2 (CIFAR-10). The paper lists the layers; its parameter
counts pin the rest down exactly (checked in `tests/zoo/test_zoo.py`):

- every 3x3 convolution is followed by BatchNorm and ReLU; the 1x1
  transition blocks ("TB") have neither BatchNorm nor bias;
- a "DW (cin, cout)" convolution is a depthwise 3x3 followed by a 1x1
  pointwise convolution, with BatchNorm/ReLU only after the pointwise one;
- the MNIST nets have no biases; the CIFAR-10 nets keep the convolution
  biases (PyTorch's default) in front of BatchNorm, depthwise ones included;
- the classifier is global average pooling then a bias-free 1x1 convolution
  (a bias-free Dense layer here, the same arithmetic).

Counted that way (trainable parameters, as PyTorch counts them) the nets have
exactly the paper's 25,144 / 7,767 / 7,611 / 5,712 / 5,616 / 1,560 and
143,208 / 143,396 parameters. Padding is not given by the paper; we use
"same" everywhere so that the 28x28 MNIST nets never run out of pixels.
"""

import functools

from kerascnn.arch.spec import ArchSpec, Head, Stage, Unit
from kerascnn.zoo._registry import register_model

#: Published trainable-parameter counts (Tables 1 and 2 of the paper).
PAPER_PARAMS = {
    "compact_mnist_25k": 25144,
    "compact_mnist_7k": 7767,
    "compact_mnist_7k_dw": 7611,
    "compact_mnist_5k": 5712,
    "compact_mnist_5k_dw": 5616,
    "compact_mnist_1k5_dw": 1560,
    "compact_cifar_143k": 143208,
    "compact_cifar_143k_dw": 143396,
}

# Layer tables: "c" 3x3 conv, "d" depthwise-separable 3x3, "t" 1x1 transition,
# "p" ends the stage (max-pool 2). Numbers are output channels.
_TABLES = {
    "compact_mnist_25k": "c8 c16 p c32 c64",
    "compact_mnist_7k": "c8 c12 t8 p c12 c16 t12 p c15 c15",
    "compact_mnist_7k_dw": "c10 d12 t10 p c13 c16 t12 p c15 c15",
    "compact_mnist_5k": "c8 c12 t8 p c12 c16 t12 p c15",
    "compact_mnist_5k_dw": "c8 d12 t8 p c13 c18 t12 p c16",
    "compact_mnist_1k5_dw": "c8 d12 t8 p d12 d16 t12 p d15",
    "compact_cifar_143k": "c16 c16 p c32 c32 p c64 c64 p c120",
    "compact_cifar_143k_dw": "c16 c16 p d32 c32 p d64 c64 p d128 d192 d260",
}


def compact_spec(name):
    """Returns the `ArchSpec` of one of the paper's compact nets.

    Args:
        name: one of `PAPER_PARAMS`.

    Example:

    >>> compact_spec("compact_mnist_1k5_dw").filters()
    [8, 12, 8, 12, 16, 12, 15]
    """
    bias = name.startswith("compact_cifar")
    conv = {"use_bias": bias}
    dw = {
        "use_bias": bias,
        "dw_use_bias": bias,
        "dw_batch_norm": False,
        "dw_activation": None,
    }
    transition = {"batch_norm": False, "use_bias": False, "role": "transition"}
    stages, units = [], []
    for token in _TABLES[name].split():
        if token == "p":
            stages.append(Stage(f"stage{len(stages) + 1}", tuple(units), pool="max"))
            units = []
            continue
        kind, width = token[0], int(token[1:])
        if kind == "c":
            units.append(Unit("conv", width, 3, options=conv))
        elif kind == "d":
            units.append(Unit("separable", width, 3, options=dw))
        else:
            units.append(Unit("conv", width, 1, options=transition))
    stages.append(Stage(f"stage{len(stages) + 1}", tuple(units)))
    return ArchSpec(name=name, family="compact", stages=tuple(stages), head=Head("gap_conv1x1"))


for _name, _params in PAPER_PARAMS.items():
    register_model(
        _name,
        family="compact",
        description=(
            f"efficient-CNN paper's {'MNIST' if 'mnist' in _name else 'CIFAR-10'} "
            f"GAP net, {_params:,} parameters"
        ),
        variants=("cifar",),
        default_input_shape=(28, 28, 1) if "mnist" in _name else (32, 32, 3),
    )(functools.partial(lambda variant, n: compact_spec(n), n=_name))
