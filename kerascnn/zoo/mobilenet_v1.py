"""MobileNet v1 (Howard et al., 2017): a full 3x3 convolution, then 13
depthwise-separable units (depthwise 3x3 + BN + ReLU, pointwise 1x1 + BN +
ReLU).

Stages follow the downsampling: {1, 2, 2, 6, 2} units. The CIFAR variant has
a stride-1 first convolution (the CIFAR MobileNet of the filter-template
paper: 3.2M parameters at 32x32 with 10 classes).
"""

from kerascnn.arch.spec import ArchSpec, Head, Stage, Unit
from kerascnn.zoo._registry import register_model

#: (pointwise filters, stride) of the 13 separable units, by stage.
MOBILENET_STAGES = (
    ((64, 1),),
    ((128, 2), (128, 1)),
    ((256, 2), (256, 1)),
    ((512, 2),) + ((512, 1),) * 5,
    ((1024, 2), (1024, 1)),
)


def mobilenet_spec(name="mobilenet", variant="cifar"):
    """Returns the `ArchSpec` of MobileNet v1.

    Args:
        name: model name. Defaults to `"mobilenet"`.
        variant: `"cifar"` (stride-1 first convolution) or `"imagenet"`
            (stride 2, with dropout before the classifier as in Keras).

    Example:

    >>> mobilenet_spec().stage_depths()
    (1, 1, 2, 2, 6, 2)
    """
    stem = Stage("stem", (Unit("conv", 32, 3, strides=2 if variant == "imagenet" else 1),))
    stages = [stem]
    for i, units in enumerate(MOBILENET_STAGES):
        stages.append(
            Stage(
                f"stage{i + 1}",
                tuple(Unit("separable", f, 3, strides=s) for f, s in units),
            )
        )
    head = Head("gap_dense", dropout=1e-3 if variant == "imagenet" else 0.0)
    return ArchSpec(name=name, family="mobilenet", stages=tuple(stages), head=head)


@register_model(family="mobilenet", description="MobileNet v1")
def mobilenet(variant="cifar"):
    """Base spec of MobileNet v1."""
    return mobilenet_spec("mobilenet", variant)
