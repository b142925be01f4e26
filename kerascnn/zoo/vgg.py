"""VGG-11/13/16/19 (Simonyan & Zisserman, 2014), with and without batch norm.

The CIFAR variant has the single dense layer head used by both the
filter-template and 3DRF papers (VGG-19-BN: 20.0M parameters at 32x32, 10
classes); the ImageNet variant has the two 4096-unit layers.
"""

import functools

from kerascnn.arch.spec import ArchSpec, Head, Stage, Unit
from kerascnn.zoo._registry import register_model

#: Convolutions per stage and their filters, from the VGG paper's Table 1.
VGG_CONFIGS = {
    "vgg11": ((1, 1, 2, 2, 2), (64, 128, 256, 512, 512)),
    "vgg13": ((2, 2, 2, 2, 2), (64, 128, 256, 512, 512)),
    "vgg16": ((2, 2, 3, 3, 3), (64, 128, 256, 512, 512)),
    "vgg19": ((2, 2, 4, 4, 4), (64, 128, 256, 512, 512)),
}


def vgg_spec(name, variant="cifar", batch_norm=True):
    """Returns the `ArchSpec` of a VGG.

    Args:
        name: `"vgg11"`, `"vgg13"`, `"vgg16"` or `"vgg19"` (a `_bn` suffix is
            accepted and sets `batch_norm=True`).
        variant: `"cifar"` (flatten + one dense layer) or `"imagenet"`
            (flatten + 4096 + 4096 + classifier). Defaults to `"cifar"`.
        batch_norm: BatchNormalization after every convolution.

    Example:

    >>> vgg_spec("vgg19").filters()[:4]
    [64, 64, 128, 128]
    """
    if name.endswith("_bn"):
        name, batch_norm = name[:-3], True
    depths, widths = VGG_CONFIGS[name]
    options = {} if batch_norm else {"batch_norm": False}
    stages = tuple(
        Stage(
            f"stage{i + 1}",
            tuple(Unit("conv", width, 3, options=options) for _ in range(depth)),
            pool="max",
        )
        for i, (depth, width) in enumerate(zip(depths, widths))
    )
    head = Head("vgg_imagenet" if variant == "imagenet" else "flatten_dense")
    return ArchSpec(
        name=name + ("_bn" if batch_norm else ""), family="vgg", stages=stages, head=head
    )


for _name in VGG_CONFIGS:
    for _bn in (False, True):
        register_model(
            _name + ("_bn" if _bn else ""),
            family="vgg",
            description=f"VGG-{_name[3:]}" + (" with batch norm" if _bn else ""),
        )(
            functools.partial(
                lambda variant, n, b: vgg_spec(n, variant, batch_norm=b), n=_name, b=_bn
            )
        )
