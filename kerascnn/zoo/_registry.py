"""The zoo's model registry: name -> spec factory and metadata (no Keras).

Like timm's `timm/models/_registry.py`: every family file registers its models
as data with `register_model`, and `kerascnn.zoo` looks them up by name.

Example:

>>> @register_model(family="demo", description="a demo net", variants=("cifar",))
... def demo_net(variant="cifar"):
...     ...
>>> get_info("demo_net").family
'demo'
>>> _unregister("demo_net")
"""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class ModelInfo:
    """Registry entry of a zoo model.

    Attributes:
        name: the model's name (`kerascnn.zoo.<name>` builds it).
        family: its family (`"vgg"`, `"resnet"`, ...).
        spec_fn: `(variant) -> ArchSpec`, the base spec of a variant.
        description: one line for `kerascnn list`.
        variants: the variants it has. Defaults to `("cifar", "imagenet")`.
        default_input_shape: input shape of the CIFAR variant. Defaults to
            `(32, 32, 3)`.
    """

    name: str
    family: str
    spec_fn: object
    description: str
    variants: tuple = ("cifar", "imagenet")
    default_input_shape: tuple = (32, 32, 3)


_REGISTRY: dict[str, ModelInfo] = {}
_ALIASES = {"googlenet": "inception", "mobilenet_v1": "mobilenet", "inception_v1": "inception"}


def register_model(
    name=None,
    *,
    family,
    description,
    variants=("cifar", "imagenet"),
    default_input_shape=(32, 32, 3),
):
    """Registers a spec factory `(variant) -> ArchSpec` as a zoo model.

    Used as a decorator (the model takes the function's name unless `name`
    is given) or called with `name` and then the factory.

    Args:
        name: the model's name. Defaults to None (the factory's `__name__`).
        family: the model family (keyword-only).
        description: one line describing the model (keyword-only).
        variants: the variants the factory accepts. Defaults to
            `("cifar", "imagenet")`.
        default_input_shape: input shape of the CIFAR variant. Defaults to
            `(32, 32, 3)`.

    Returns:
        A decorator that registers the factory and returns it unchanged.

    Example:

    >>> from kerascnn.zoo import resnet
    >>> register_model("resnet18", family="resnet", description="ResNet-18")(
    ...     lambda variant: resnet.resnet_spec("resnet18", variant)
    ... )  # doctest: +SKIP
    """

    def decorator(spec_fn):
        key = name or spec_fn.__name__
        if key in _REGISTRY:
            raise ValueError(f"A zoo model named {key!r} is already registered.")
        _REGISTRY[key] = ModelInfo(
            name=key,
            family=family,
            spec_fn=spec_fn,
            description=description,
            variants=tuple(variants),
            default_input_shape=tuple(default_input_shape),
        )
        return spec_fn

    return decorator


def _unregister(name):
    """Removes a model (for tests)."""
    _REGISTRY.pop(name, None)


def registered_names():
    """The names of every registered model, in registration order."""
    return list(_REGISTRY)


def list_models(family=None):
    """Returns the sorted names of the zoo models (optionally of one family).

    Args:
        family: only the models of this family. Defaults to None (all).

    Example:

    >>> from kerascnn import zoo
    >>> "resnet50" in zoo.list_models("resnet")
    True
    """
    return sorted(n for n, info in _REGISTRY.items() if family in (None, info.family))


def get_info(name):
    """Returns the `ModelInfo` of `name`, or raises a ValueError listing the models.

    Names are case-insensitive, `-` reads as `_`, and `googlenet`,
    `inception_v1` and `mobilenet_v1` are aliases.

    Args:
        name: a model name.
    """
    if not isinstance(name, str):
        raise TypeError(f"Model name must be a string. Received: {name!r}")
    key = name.strip().lower().replace("-", "_")
    key = _ALIASES.get(key, key)
    if key not in _REGISTRY:
        raise ValueError(f"Unknown model. Expected one of {list_models()}. Received: name={name!r}")
    return _REGISTRY[key]
