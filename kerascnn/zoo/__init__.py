"""The model zoo: one builder per model, plus `build(name, ...)` and `list_models()`.

Every builder takes keras.applications' arguments (`include_top`, `weights`,
`input_tensor`, `input_shape`, `pooling`, `classes`,
`classifier_activation`, `name`) and kerascnn's: `template` (a
filter-distribution template, see `kerascnn.transforms.templates`), `width_multiplier`,
`filters` (an explicit per-layer or per-block list), `stages` (units per
stage, e.g. `stages=(5, 5, 4, 2)` for a ResNet) and `variant` (`"cifar"`,
`"imagenet"` or `"auto"`: ImageNet stem and head when the input is at least
112 pixels on its smaller side).

Models are registered as data by their family files
(`kerascnn.zoo._registry.register_model`). The order of operations is: base
spec of the variant -> `kerascnn.transforms.pipeline.transform` (`stages` ->
`filters` -> `template` -> `width_multiplier` -> `kernel`) -> Keras model
(`kerascnn.builder.build_model`, imported on first build so that listing the
zoo does not import TensorFlow).

Every argument is checked before any work (a `ValueError`/`TypeError` naming
it and the received value). Sizes are estimated from the spec before any
layer exists (`kerascnn.arch.geometry.estimate_cost`): a model above `max_params`
(default 2e9 parameters, or the `KERASCNN_MAX_PARAMS` environment variable),
above `max_units` layers/blocks (default 2,000, or `KERASCNN_MAX_UNITS`;
checked before `stages` is even expanded) or above 16 GiB of activations per
example (`KERASCNN_MAX_ACTIVATION_BYTES`) is refused, naming the argument to
blame; pass a larger limit to build it anyway. A `width_multiplier` that
would round a layer to 0 filters is refused too (the rounding rule's clip to
one filter is for rounding residue, not for erasing layers).

Example:

>>> import kerascnn
>>> model = kerascnn.zoo.build("resnet18", input_shape=(32, 32, 3), classes=10,
...                            template="uniform", width_multiplier=0.5)
>>> "resnet50" in kerascnn.zoo.list_models()
True
"""

from __future__ import annotations

import inspect

from kerascnn.transforms import templates as _templates
from kerascnn.transforms.pipeline import check_kernel_args, transform
from kerascnn.zoo import compact, inception_v1, mobilenet_v1, resnet, vgg  # noqa: F401 (registration)
from kerascnn.zoo._registry import (
    ModelInfo,
    get_info,
    list_models,
    register_model,
    registered_names,
)


def resolve_variant(info, variant, input_shape):
    """Picks "cifar" or "imagenet" from `variant` and the input size."""
    if variant not in ("auto", "cifar", "imagenet", *info.variants):
        raise ValueError(
            f"variant must be 'auto', 'cifar' or 'imagenet' ({info.name!r} has the variants "
            f"{info.variants}). Received: variant={variant!r}"
        )
    if variant == "auto":
        spatial = [d for d in (input_shape or (None, None))[:2] if d is not None]
        variant = "imagenet" if spatial and min(spatial) >= 112 else "cifar"
    if variant not in info.variants:
        raise ValueError(
            f"{info.name!r} has no {variant!r} variant; it has {info.variants}. "
            f"Received: variant={variant!r}"
        )
    return variant


def _budget_culprit(width_multiplier, filters, stages, input_shape, classes):
    """The argument a size refusal names: the one most likely to blame."""
    if width_multiplier > 1:
        return ("width_multiplier", width_multiplier)
    if filters is not None:
        return ("filters", filters)
    if stages is not None:
        return ("stages", stages)
    if isinstance(classes, int) and classes > 100_000:
        return ("classes", classes)
    return ("input_shape", input_shape)


def get_spec(
    name,
    *,
    input_shape=None,
    variant="auto",
    template="base",
    width_multiplier=1.0,
    filters=None,
    stages=None,
    kernel=None,
    kernel_groups=2,
    kernel_overlap=0.5,
    max_units=None,
    organize=False,
    theta=None,
    alpha=3.0,
    rule=None,
):
    """Returns the final `ArchSpec` of a zoo model (what `build` would build).

    The options go through the one transform pipeline,
    `kerascnn.transforms.pipeline.transform` (stages -> filters -> organize
    -> template -> width multiplier -> kernel), as in `kerascnn train`, the
    tuner and `kerascnn optimize`.

    Args:
        name: a name from `list_models()`.
        input_shape: used to pick the variant when `variant="auto"`.
        variant: `"auto"`, `"cifar"` or `"imagenet"`.
        template: a filter-distribution template. Defaults to `"base"`.
        width_multiplier: positive float, applied after the template.
        filters: optional explicit per-layer (per-block) filters.
        stages: optional units per (non-stem) stage.
        kernel: None (standard convolutions) or a kernel decomposition of
            `kerascnn.transforms.decomposer`: `"dw_pw"`, `"dw_gpw"` or `"dw_rpw"`
            (applied last, after the template and width multiplier).
        kernel_groups: groups `g` of GPW/RPW. Defaults to 2.
        kernel_overlap: overlap `o` of RPW. Defaults to 0.5.
        max_units: refuse `stages` asking for more layers/blocks than this
            (checked before the spec is expanded). None (default) reads the
            `KERASCNN_MAX_UNITS` environment variable, else 2,000.
        organize: reorganize the stages with the 3DRF stage organizer at
            `input_shape`. Defaults to False.
        theta: the organizer's threshold. Defaults to None (the model's:
            0 for VGG as in the paper, else 0.1; `organizer.default_settings`).
        alpha: the organizer's alpha. Defaults to 3.0.
        rule: the organizer's rule, `"saturated"` or `"paper"`. Defaults to
            None (`"paper"` for VGG, else `"saturated"`).

    Example:

    >>> spec = get_spec("mobilenet", input_shape=(32, 32, 3), organize=True, theta=0.1)
    >>> [len(stage.units) for stage in spec.stages]
    [1, 4, 4, 2, 2, 1]
    """
    info = get_info(name)
    variant = resolve_variant(info, variant, input_shape)
    return transform(
        info.spec_fn(variant),
        stages=stages,
        filters=filters,
        template=template,
        width_multiplier=width_multiplier,
        kernel=kernel,
        kernel_groups=kernel_groups,
        kernel_overlap=kernel_overlap,
        input_shape=input_shape or info.default_input_shape,
        max_units=max_units,
        organize=organize,
        theta=theta,
        alpha=alpha,
        rule=rule,
    )


_TECHNIQUE_KWARGS = (
    "blurpool_min_channels",
    "blur_first",
    "se_min_channels",
    "se_latent_channels",
    "max_params",
)


def _pop_extra_kwargs(info, head, kwargs):
    """Takes `build`'s extra keyword arguments: `(alpha, technique kwargs, max_units)`."""
    alpha = kwargs.pop("alpha", None)
    technique_kwargs = {key: kwargs.pop(key) for key in _TECHNIQUE_KWARGS if key in kwargs}
    max_units = kwargs.pop("max_units", None)
    if head not in (None, "gap"):
        raise ValueError(f"head must be None or 'gap'. Received: head={head!r}")
    if kwargs:
        raise TypeError(f"Unexpected keyword arguments for {info.name!r}: {sorted(kwargs)}")
    return alpha, technique_kwargs, max_units


def _resolve_input(info, variant, input_tensor, input_shape):
    """The variant and the input shape (the variant's default when none is given)."""
    if input_tensor is not None:
        shape_hint = tuple(input_tensor.shape[1:])
    else:
        if input_shape is not None and not isinstance(input_shape, (tuple, list)):
            raise ValueError(
                "input_shape must be a tuple (height, width, channels). "
                f"Received: input_shape={input_shape!r}"
            )
        shape_hint = input_shape
    variant = resolve_variant(info, variant, shape_hint)
    if input_tensor is None and input_shape is None:
        input_shape = (224, 224, 3) if variant != "cifar" else info.default_input_shape
    return variant, input_shape


def build(
    model_name,
    /,
    *,
    include_top=True,
    weights=None,
    input_tensor=None,
    input_shape=None,
    pooling=None,
    classes=10,
    classifier_activation="softmax",
    name=None,
    template="base",
    width_multiplier=1.0,
    filters=None,
    stages=None,
    variant="auto",
    blurpool=False,
    squeeze_excite=False,
    head=None,
    kernel=None,
    kernel_groups=2,
    kernel_overlap=0.5,
    **kwargs,
):
    """Builds the zoo model `model_name` (see the module docstring).

    Args:
        model_name: a name from `list_models()` (positional).
        include_top: add the classifier head. Defaults to True.
        weights: None or the path to a weights file.
        input_tensor: optional Keras tensor used as the input.
        input_shape: `(height, width, channels)`; defaults to `(32, 32, 3)`
            (`(28, 28, 1)` for the MNIST compact nets, `(224, 224, 3)` for
            `variant="imagenet"`).
        pooling: `None`, `"avg"` or `"max"` when `include_top=False`.
        classes: number of classes. Defaults to 10.
        classifier_activation: last activation, None for logits.
        name: the Keras model name. Defaults to the zoo name.
        template: filter-distribution template. Defaults to `"base"`.
        width_multiplier: multiplies every templated filter count.
        filters: explicit per-layer / per-block filters.
        stages: units per non-stem stage.
        variant: `"auto"`, `"cifar"`, `"imagenet"` or a model's own variant
            (ResNet-50/101/152: `"v1"`, keras.applications' layout).
        blurpool: anti-aliased downsampling (BlurPool) on max-pools and on
            strided convolutions with at least `blurpool_min_channels` (16)
            input channels, as Composer does. Defaults to False.
        squeeze_excite: squeeze-excite after convolutions whose input and
            output have at least `se_min_channels` (128) channels, with
            `se_latent_channels` (64), as Composer does. Defaults to False.
        head: None (the model's own head) or `"gap"` (global average pooling
            then one dense layer).
        kernel: None or a kernel decomposition (`"dw_pw"`, `"dw_gpw"`,
            `"dw_rpw"`, see `kerascnn.transforms.decomposer`).
        kernel_groups: groups of GPW/RPW. Defaults to 2.
        kernel_overlap: overlap of RPW. Defaults to 0.5.
        **kwargs: `alpha` for MobileNet (same as `width_multiplier`), and
            `blurpool_min_channels`, `blur_first`, `se_min_channels`,
            `se_latent_channels`, `max_params`, `max_units` (see
            `kerascnn.builder.build_model`). Every argument is checked before
            anything is built; a model estimated above `max_params` (2e9, or
            the `KERASCNN_MAX_PARAMS` environment variable) parameters or
            `max_units` (2,000, or `KERASCNN_MAX_UNITS`) layers/blocks is
            refused with a `ValueError` naming the argument to blame.

    Returns:
        A `keras.Model`.
    """
    from kerascnn.builder import model as _model  # Keras loads on the first build only

    info = get_info(model_name)
    alpha, technique_kwargs, max_units = _pop_extra_kwargs(info, head, kwargs)
    # Cheap checks of every argument first, before any spec work.
    _model.check_build_args(include_top, name, input_tensor, classifier_activation)
    _model.check_technique_args(
        blurpool,
        squeeze_excite,
        technique_kwargs.get("blurpool_min_channels", 16),
        technique_kwargs.get("se_min_channels", 128),
        technique_kwargs.get("blur_first", True),
        technique_kwargs.get("se_latent_channels", 64),
    )
    _model.check_pooling(pooling)
    if include_top:
        _model.check_classes(classes)
    check_kernel_args(kernel_groups, kernel_overlap)
    _templates.check_width_multiplier(width_multiplier)
    if alpha is not None:
        _templates.check_width_multiplier(alpha, "alpha")
        width_multiplier = width_multiplier * alpha
    variant, input_shape = _resolve_input(info, variant, input_tensor, input_shape)
    spec = get_spec(
        info.name,
        input_shape=input_shape,
        variant=variant,
        template=template,
        width_multiplier=width_multiplier,
        filters=filters,
        stages=stages,
        kernel=kernel,
        kernel_groups=kernel_groups,
        kernel_overlap=kernel_overlap,
        max_units=max_units,
    )
    if head == "gap":
        spec = _model.with_gap_head(spec)
    culprit = _budget_culprit(width_multiplier, filters, stages, input_shape, classes)
    return _model.build_model(
        spec,
        include_top=include_top,
        weights=weights,
        input_tensor=input_tensor,
        input_shape=input_shape,
        pooling=pooling,
        classes=classes,
        classifier_activation=classifier_activation,
        name=name,
        blurpool=blurpool,
        squeeze_excite=squeeze_excite,
        max_units=max_units,
        budget_culprit=culprit,
        **technique_kwargs,
    )


def _make_builder(model_name):
    info = get_info(model_name)

    def builder(**kwargs):
        return build(model_name, **kwargs)

    signature = inspect.signature(build)
    builder.__signature__ = signature.replace(parameters=list(signature.parameters.values())[1:])
    builder.__name__ = builder.__qualname__ = model_name
    builder.__doc__ = f"""Builds {info.description}.

    Args:
        include_top: add the classifier head. Defaults to True.
        weights: None or the path to a weights file.
        input_tensor: optional Keras tensor used as the input.
        input_shape: `(height, width, channels)`. Defaults to
            `{info.default_input_shape}` (`(224, 224, 3)` with `variant="imagenet"`).
        pooling: `None`, `"avg"` or `"max"` when `include_top=False`.
        classes: number of classes. Defaults to 10.
        classifier_activation: last activation, None for logits.
        name: the Keras model name. Defaults to `"{model_name}"`.
        template: filter-distribution template
            (`{", ".join(_templates.TEMPLATES)}`). Defaults to `"base"`.
        width_multiplier: multiplies every templated filter count.
        filters: explicit per-layer (per-block) filters.
        stages: units per non-stem stage.
        variant: `"auto"`, `"cifar"` or `"imagenet"` (available: {info.variants}).
        blurpool: anti-aliased downsampling (Composer's thresholds). Defaults to False.
        squeeze_excite: squeeze-excite blocks (Composer's thresholds). Defaults to False.
        head: None (the model's own head) or `"gap"`.
        kernel: None or `"dw_pw"`, `"dw_gpw"`, `"dw_rpw"` (kernel decomposer).
        kernel_groups: groups of GPW/RPW. Defaults to 2.
        kernel_overlap: overlap of RPW. Defaults to 0.5.
        **kwargs: see `kerascnn.zoo.build`.

    Example:

    >>> from kerascnn import zoo
    >>> model = zoo.{model_name}(input_shape={info.default_input_shape}, classes=10)
    """
    return builder


for _name in registered_names():
    globals()[_name] = _make_builder(_name)

__all__ = [
    "build",
    "get_spec",
    "get_info",
    "list_models",
    "register_model",
    "ModelInfo",
] + registered_names()
