"""Builds a Keras functional model from an `ArchSpec` (the last step).

Layer names are deterministic and derived from the spec: every layer of unit
`i` (1-based) of stage `s` is named `"{s}_{label}{i}_{part}"`, for example
`stage2_block1_1_conv`, `stage2_block1_out`, `stage1_conv2_bn`, `stage3_sep1_dw`;
a stage's pooling layer is `"{s}_pool"`; the classifier is `predictions`.
The last layer of every stage is its *stage output* (see `stage_output_names`),
which is what per-layer callbacks monitor by default.

Example:

>>> from kerascnn.zoo import vgg
>>> from kerascnn.builder import build_model
>>> model = build_model(vgg.vgg_spec("vgg11"), input_shape=(32, 32, 3), classes=10)
>>> model.get_layer("stage1_conv1_conv").filters
64
"""

from __future__ import annotations

import dataclasses
import os

import keras
from keras import layers

from kerascnn import _checks
from kerascnn.arch.geometry import (  # noqa: F401 (re-exported)
    check_budget,
    check_depth,
    estimate_cost,
    minimum_input_size,
    spatial_trace,
)
from kerascnn.arch.naming import stage_output_names, unit_output_name, unit_prefix  # noqa: F401
from kerascnn.arch.spec import ArchSpec, Head
from kerascnn.builder.blocks import BuildContext, build_head, build_stage
from kerascnn.builder.no_effect import warn_if_no_effect


# --------------------------------------------------------------------------
# Argument validation (keras.applications-compatible arguments).
# --------------------------------------------------------------------------
def check_input_shape(input_shape, spec):
    """Validates `input_shape` against the spec's downsampling."""
    if not isinstance(input_shape, (tuple, list)) or len(input_shape) != 3:
        raise ValueError(
            "input_shape must be a tuple (height, width, channels). "
            f"Received: input_shape={input_shape!r}"
        )
    for dim in input_shape:
        if dim is not None and (isinstance(dim, bool) or not isinstance(dim, int) or dim < 1):
            raise ValueError(
                "input_shape entries must be positive integers (or None for "
                f"height/width). Received: input_shape={input_shape!r}"
            )
    if input_shape[2] is None:
        raise ValueError(
            "The channel dimension of input_shape must be known. "
            f"Received: input_shape={input_shape!r}"
        )
    smallest = minimum_input_size(spec)
    for dim in input_shape[:2]:
        if dim is not None and smallest is not None and dim < smallest:
            raise ValueError(
                f"Input too small for {spec.name!r}: its downsampling needs height "
                f"and width of at least {smallest}. Received: "
                f"input_shape={tuple(input_shape)!r}. Use a larger input, fewer "
                "stages, or a variant with less downsampling."
            )


def check_classes(classes):
    """Checks `classes` (a positive integer)."""
    if isinstance(classes, bool) or not isinstance(classes, int) or classes < 1:
        raise ValueError(f"classes must be a positive integer. Received: classes={classes!r}")


def check_weights(weights):
    """Checks `weights`: None or the path of an existing weights file."""
    if weights is None:
        return
    if not isinstance(weights, (str, os.PathLike)) or not os.path.isfile(weights):
        raise ValueError(
            "weights must be None (random initialization) or the path to a "
            "weights file saved with `model.save_weights(...)`; kerascnn ships no "
            f"pretrained weights. Received: weights={weights!r}"
        )


def check_pooling(pooling):
    """Checks `pooling`: None, `"avg"` or `"max"`."""
    if pooling not in (None, "avg", "max"):
        raise ValueError(f"pooling must be None, 'avg' or 'max'. Received: pooling={pooling!r}")


def check_technique_args(
    blurpool,
    squeeze_excite,
    blurpool_min_channels,
    se_min_channels,
    blur_first=True,
    se_latent_channels=64,
):
    """Checks the BlurPool and squeeze-excite arguments of `build_model`."""
    _checks.check_bool(blurpool, "blurpool")
    _checks.check_bool(squeeze_excite, "squeeze_excite")
    _checks.check_bool(blur_first, "blur_first")
    _checks.check_non_negative_int(blurpool_min_channels, "blurpool_min_channels")
    _checks.check_non_negative_int(se_min_channels, "se_min_channels")
    latent = se_latent_channels
    if not (
        (_checks._is_int(latent) and latent >= 1) or (_checks._is_real(latent) and 0 < latent < 1)
    ):
        raise ValueError(
            "se_latent_channels must be an integer >= 1 or a fraction in (0, 1). "
            + _checks.received("se_latent_channels", latent)
        )


def check_classifier_activation(classifier_activation):
    """Checks `classifier_activation` (None, a Keras activation name or a callable)."""
    if classifier_activation is None or callable(classifier_activation):
        return
    message = (
        "classifier_activation must be None (logits), the name of a Keras activation "
        "(such as 'softmax') or a callable. "
        + _checks.received("classifier_activation", classifier_activation)
    )
    if not isinstance(classifier_activation, str):
        raise TypeError(message)
    try:
        keras.activations.get(classifier_activation)
    except (ValueError, TypeError, AttributeError):
        raise ValueError(message) from None


def check_build_args(include_top, name, input_tensor, classifier_activation):
    """Checks the keras.applications-style arguments of `build_model`."""
    _checks.check_bool(include_top, "include_top")
    _checks.check_string(name, "name", allow_none=True)
    if input_tensor is not None and not keras.backend.is_keras_tensor(input_tensor):
        raise TypeError(
            "input_tensor must be None or a Keras tensor (the output of `keras.Input` or "
            f"of a layer). Received: input_tensor of type {type(input_tensor).__name__}"
        )
    if include_top:
        check_classifier_activation(classifier_activation)


def with_gap_head(spec):
    """Returns `spec` with a global-average-pooling head (`"gap_dense"`).

    Heads that already pool globally (`"gap_dense"`, `"gap_conv1x1"`) are kept;
    flattening heads are replaced (their dropout is kept).
    """
    if spec.head.kind in ("gap_dense", "gap_conv1x1"):
        return spec
    return dataclasses.replace(spec, head=Head("gap_dense", dropout=spec.head.dropout))


def build_model(
    spec,
    *,
    include_top=True,
    weights=None,
    input_tensor=None,
    input_shape=None,
    pooling=None,
    classes=1000,
    classifier_activation="softmax",
    name=None,
    blurpool=False,
    squeeze_excite=False,
    blurpool_min_channels=16,
    blur_first=True,
    se_min_channels=128,
    se_latent_channels=64,
    max_params=None,
    max_units=None,
    budget_culprit=None,
):
    """Builds a Keras functional model from an `ArchSpec`.

    Args:
        spec: a `kerascnn.arch.spec.ArchSpec`.
        include_top: whether to add the spec's classifier head. Defaults to True.
        weights: None (random initialization) or the path to a weights file.
        input_tensor: optional Keras tensor to use as the model input.
        input_shape: `(height, width, channels)`; ignored when `input_tensor`
            is given. Defaults to `(32, 32, 3)`.
        pooling: with `include_top=False`: None (4D output), `"avg"` or `"max"`.
        classes: number of classes. Defaults to 1000.
        classifier_activation: activation of the last layer (None for logits).
            Defaults to `"softmax"`.
        name: model name. Defaults to `spec.name`.
        blurpool: anti-aliased downsampling (Composer's rules): every max-pool
            stage becomes a `BlurMaxPool2D` (whatever its channels) and every
            strided convolution with at least `blurpool_min_channels` input
            channels a `BlurConv2D`. Layer names are unchanged. Defaults to False.
        squeeze_excite: add a `SqueezeExcite` block after every convolution with
            `min(in, out) >= se_min_channels` channels. Defaults to False.
        blurpool_min_channels: see `blurpool`. Defaults to 16 (Composer).
        blur_first: `BlurConv2D`'s `blur_first`. Defaults to True (Composer).
        se_min_channels: see `squeeze_excite`. Defaults to 128 (Composer). A
            requested BlurPool or squeeze-excite that adds no layer is a
            `kerascnn.NoEffectWarning` saying how to get it.
        se_latent_channels: hidden width of the SE blocks (int, or a fraction
            of the channels when < 1). Defaults to 64 (Composer).
        max_params: refuse (`ValueError`, before building anything) a model
            whose estimated parameter count (`estimate_cost`) is above this.
            None (default) reads the `KERASCNN_MAX_PARAMS` environment
            variable, else 2e9. Activation memory per example is limited the
            same way by `KERASCNN_MAX_ACTIVATION_BYTES` (default 16 GiB).
        max_units: refuse a spec of more layers/blocks than this. None
            (default) reads `KERASCNN_MAX_UNITS`, else 2,000.
        budget_culprit: optional `(argument, value)` that a refusal names
            (used by `kerascnn.zoo.build`).

    Returns:
        A `keras.Model`.
    """
    if not isinstance(spec, ArchSpec):
        raise TypeError(
            f"spec must be a kerascnn.arch.spec.ArchSpec. Received: {type(spec).__name__}"
        )
    check_build_args(include_top, name, input_tensor, classifier_activation)
    check_weights(weights)
    check_pooling(pooling)
    if include_top:
        check_classes(classes)
    check_technique_args(
        blurpool,
        squeeze_excite,
        blurpool_min_channels,
        se_min_channels,
        blur_first,
        se_latent_channels,
    )
    if input_tensor is not None:
        shape = tuple(input_tensor.shape[1:])
    else:
        if input_shape is None:
            input_shape = (32, 32, 3)
        if not isinstance(input_shape, (tuple, list)):
            check_input_shape(input_shape, spec)  # raises the standard message
        shape = input_shape = tuple(input_shape)
    check_input_shape(shape, spec)
    # Before any layer exists: refuse what would exhaust memory or take forever.
    check_budget(
        spec,
        shape,
        include_top=include_top,
        classes=classes,
        max_params=max_params,
        max_units=max_units,
        culprit=budget_culprit,
    )
    inputs = input_tensor if input_tensor is not None else keras.Input(shape=shape, name="input")
    ctx = BuildContext(
        spec,
        blurpool=blurpool,
        blurpool_min_channels=blurpool_min_channels,
        blur_first=blur_first,
        squeeze_excite=squeeze_excite,
        se_min_channels=se_min_channels,
        se_latent_channels=se_latent_channels,
    )
    x = inputs
    for stage in spec.stages:
        x = build_stage(x, stage, ctx)
    if include_top:
        x = build_head(x, spec, classes, classifier_activation)
    elif pooling == "avg":
        x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
    elif pooling == "max":
        x = layers.GlobalMaxPooling2D(name="max_pool")(x)
    if input_tensor is not None:
        model_inputs = keras.utils.get_source_inputs(input_tensor)
        if len(model_inputs) == 1:
            # A single input, not a list of one: calling the model with a
            # bare tensor then matches its input structure (no warning).
            model_inputs = model_inputs[0]
    else:
        model_inputs = inputs
    model = keras.Model(model_inputs, x, name=name or spec.name)
    warn_if_no_effect(  # kerascnn.NoEffectWarning: a technique that added nothing
        model,
        blurpool=blurpool,
        squeeze_excite=squeeze_excite,
        blurpool_min_channels=blurpool_min_channels,
        se_min_channels=se_min_channels,
    )
    if weights is not None:
        model.load_weights(weights)
    return model
