"""ResNet-18/34/50/101/152 (He et al., 2016) with CIFAR and ImageNet stems.

Bottleneck blocks put the stride on the 3x3 convolution (ResNet v1.5, as
torchvision and the CIFAR ResNets do). A block is one "layer" for the
filter-distribution templates; its filters are the block's width (the
bottleneck width for ResNet-50 and deeper, whose blocks output 4x that).

ResNet-50/101/152 also have the variant `"v1"`: the layout of
`keras.applications.ResNet50/101/152` (ResNet v1 as in the original Caffe
models): ImageNet stem, the stride of a downsampling bottleneck on its first
1x1 convolution (unit option `stride_on="first"`), biases on every
convolution (`use_bias=True`) and keras.applications' BatchNormalization
(epsilon 1.001e-5, momentum 0.99). It has exactly the parameters and MACs of
the keras.applications model (`tests/zoo/test_resnet_variant.py`); only the
stem pads "same" (2 and 3 pixels) where keras.applications pads 3 and 3 and
convolves "valid", which gives the same shapes at even input sizes.
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

#: The variants of every ResNet; bottleneck ResNets add "v1" (keras.applications).
VARIANTS = ("cifar", "imagenet")
V1_VARIANTS = VARIANTS + ("v1",)

#: keras.applications' ResNet BatchNormalization (epsilon 1.001e-5, default momentum 0.99).
KERAS_APPLICATIONS_BN = {"batch_norm_epsilon": 1.001e-5, "batch_norm_momentum": 0.99}


def _stem(variant, options):
    if variant == "cifar":
        return Stage("stem", (Unit("conv", 64, 3, options=options),))
    return Stage(
        "stem",
        (Unit("conv", 64, 7, strides=2, options=options),),
        pool="max",
        pool_size=3,
        pool_strides=2,
        pool_padding="same",
    )


def resnet_spec(name, variant="cifar"):
    """Returns the `ArchSpec` of a ResNet.

    Args:
        name: `"resnet18"`, `"resnet34"`, `"resnet50"`, `"resnet101"` or
            `"resnet152"`.
        variant: `"cifar"` (3x3 stride-1 stem, no max-pool), `"imagenet"`
            (7x7 stride-2 stem and a 3x3 stride-2 max-pool) or, for
            ResNet-50/101/152, `"v1"` (keras.applications' layout: ImageNet
            stem, stride on the first 1x1 of a bottleneck, conv biases,
            BatchNorm epsilon 1.001e-5). Defaults to `"cifar"`.

    Example:

    >>> resnet_spec("resnet50").stage_depths()
    (1, 3, 4, 6, 3)
    >>> resnet_spec("resnet50", "v1").stages[2].units[0].option("stride_on")
    'first'
    """
    if name not in RESNET_CONFIGS:
        raise ValueError(
            f"Unknown ResNet. Expected one of {sorted(RESNET_CONFIGS)}. Received: name={name!r}"
        )
    kind, depths = RESNET_CONFIGS[name]
    allowed = V1_VARIANTS if kind == "bottleneck" else VARIANTS
    if variant not in allowed:
        raise ValueError(f"{name!r} has the variants {allowed}. Received: variant={variant!r}")
    v1 = variant == "v1"
    unit_options = {"stride_on": "first", "use_bias": True} if v1 else {}
    stages = [_stem(variant, {"templated": False, **({"use_bias": True} if v1 else {})})]
    for i, (depth, width) in enumerate(zip(depths, WIDTHS)):
        units = tuple(
            Unit(kind, width, 3, strides=2 if (j == 0 and i > 0) else 1, options=unit_options)
            for j in range(depth)
        )
        stages.append(Stage(f"stage{i + 1}", units))
    return ArchSpec(
        name=name,
        family="resnet",
        stages=tuple(stages),
        head=Head("gap_dense"),
        **(KERAS_APPLICATIONS_BN if v1 else {}),
    )


for _name, (_kind, _depths) in RESNET_CONFIGS.items():
    register_model(
        _name,
        family="resnet",
        description=f"ResNet-{_name[6:]} ({_kind} blocks)",
        variants=V1_VARIANTS if _kind == "bottleneck" else VARIANTS,
    )(functools.partial(lambda variant, n: resnet_spec(n, variant), n=_name))
