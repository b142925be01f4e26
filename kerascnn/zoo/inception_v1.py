"""Inception v1 (GoogLeNet, Szegedy et al., 2015), with batch normalization.

Each module has four branches: 1x1; 1x1 -> 3x3; 1x1 -> 5x5; 3x3 max-pool ->
1x1. The CIFAR variant (the CIFAR GoogLeNet used by the filter-template
paper: 6.2M parameters) has a single 3x3, 192-filter stem, replaces the 5x5
branch with two 3x3 convolutions, and drops the first two max-pools. A module
counts as one "layer" for the templates; its width is its output channels and
its branches scale proportionally.
"""

from kerascnn.arch.spec import ArchSpec, Head, Stage, Unit
from kerascnn.zoo._registry import register_model

#: Module filters: (1x1, 3x3 reduce, 3x3, 5x5 reduce, 5x5, pool projection).
MODULES = (
    (
        ("3a", (64, 96, 128, 16, 32, 32)),
        ("3b", (128, 128, 192, 32, 96, 64)),
    ),
    (
        ("4a", (192, 96, 208, 16, 48, 64)),
        ("4b", (160, 112, 224, 24, 64, 64)),
        ("4c", (128, 128, 256, 24, 64, 64)),
        ("4d", (112, 144, 288, 32, 64, 64)),
        ("4e", (256, 160, 320, 32, 128, 128)),
    ),
    (
        ("5a", (256, 160, 320, 32, 128, 128)),
        ("5b", (384, 192, 384, 48, 128, 128)),
    ),
)


def inception_spec(name="inception", variant="cifar"):
    """Returns the `ArchSpec` of Inception v1 (GoogLeNet).

    Args:
        name: model name. Defaults to `"inception"`.
        variant: `"cifar"` or `"imagenet"`.

    Example:

    >>> inception_spec().stage_depths()
    (1, 2, 5, 2)
    """
    fixed = {"templated": False}
    pool = dict(pool="max", pool_size=3, pool_strides=2, pool_padding="same")
    if variant == "imagenet":
        stems = [
            Stage("stem", (Unit("conv", 64, 7, strides=2, options=fixed),), **pool),
            Stage(
                "stem2",
                (Unit("conv", 64, 1, options=fixed), Unit("conv", 192, 3, options=fixed)),
                **pool,
            ),
        ]
        module_options = {}
    else:
        stems = [Stage("stem", (Unit("conv", 192, 3, options=fixed),))]
        module_options = {"double3x3": True}
    stages = list(stems)
    for i, modules in enumerate(MODULES):
        units = tuple(Unit("inception", f, 3, options=module_options) for _, f in modules)
        stage_pool = pool if i < len(MODULES) - 1 else {}
        stages.append(Stage(f"stage{i + 1}", units, **stage_pool))
    head = Head("gap_dense", dropout=0.4 if variant == "imagenet" else 0.0)
    return ArchSpec(name=name, family="inception", stages=tuple(stages), head=head)


@register_model(family="inception", description="Inception v1 (GoogLeNet) with batch norm")
def inception(variant="cifar"):
    """Base spec of Inception v1 (GoogLeNet)."""
    return inception_spec("inception", variant)
