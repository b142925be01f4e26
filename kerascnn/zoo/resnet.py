"""ResNet-18/34/50/101/152 (He et al., 2016) with CIFAR and ImageNet stems.

Bottleneck blocks put the stride on the 3x3 convolution (ResNet v1.5, as
torchvision and the CIFAR ResNets do). A block is one "layer" for the
filter-distribution templates; its filters are the block's width (the
bottleneck width for ResNet-50 and deeper, whose blocks output 4x that).
"""

import functools

from kerascnn.arch.spec import ArchSpec, Head, Stage, Unit
from kerascnn.zoo._registry import register_model

RESNET_CONFIGS = {
    "resnet18": ("basic", (2, 2, 2, 2)),
    "resnet34": ("basic", (3, 4, 6, 3)),
    "resnet50": ("bottleneck", (3, 4, 6, 3)),
    "resnet101": ("bottleneck", (3, 4, 23, 3)),
    "resnet152": ("bottleneck", (3, 8, 36, 3)),
}

WIDTHS = (64, 128, 256, 512)


def resnet_spec(name, variant="cifar"):
    """Returns the `ArchSpec` of a ResNet.

    Args:
        name: `"resnet18"`, `"resnet34"`, `"resnet50"`, `"resnet101"` or
            `"resnet152"`.
        variant: `"cifar"` (3x3 stride-1 stem, no max-pool) or `"imagenet"`
            (7x7 stride-2 stem and a 3x3 stride-2 max-pool).

    Example:

    >>> resnet_spec("resnet50").stage_depths()
    (1, 3, 4, 6, 3)
    """
    kind, depths = RESNET_CONFIGS[name]
    fixed = {"templated": False}
    if variant == "imagenet":
        stem = Stage(
            "stem",
            (Unit("conv", 64, 7, strides=2, options=fixed),),
            pool="max",
            pool_size=3,
            pool_strides=2,
            pool_padding="same",
        )
    else:
        stem = Stage("stem", (Unit("conv", 64, 3, options=fixed),))
    stages = [stem]
    for i, (depth, width) in enumerate(zip(depths, WIDTHS)):
        units = tuple(
            Unit(kind, width, 3, strides=2 if (j == 0 and i > 0) else 1) for j in range(depth)
        )
        stages.append(Stage(f"stage{i + 1}", units))
    return ArchSpec(name=name, family="resnet", stages=tuple(stages), head=Head("gap_dense"))


for _name, (_kind, _depths) in RESNET_CONFIGS.items():
    register_model(_name, family="resnet", description=f"ResNet-{_name[6:]} ({_kind} blocks)")(
        functools.partial(lambda variant, n: resnet_spec(n, variant), n=_name)
    )
