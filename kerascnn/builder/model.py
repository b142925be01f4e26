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

import math
import os

from kerascnn import _checks
from kerascnn._lazy import LazyModule
from kerascnn.arch.spec import ArchSpec

# Keras (and TensorFlow) load on first use inside a function, so that spec-only
# users of this module (`kerascnn list`, `rf3d`, `plot-filters`) start fast.
keras = LazyModule("keras")
layers = LazyModule("keras.layers")

_LABELS = {
    "conv": "conv",
    "separable": "sep",
    "basic": "block",
    "bottleneck": "block",
    "inception": "mixed",
}

CONV_INITIALIZER = "he_normal"


def unit_prefix(stage, index, unit):
    """Name prefix of the layers of `unit`, the `index`-th (0-based) of `stage`."""
    return f"{stage.name}_{_LABELS[unit.kind]}{index + 1}"


def unit_output_name(stage, index, unit):
    """Name of the last layer of a unit (its output tensor)."""
    prefix = unit_prefix(stage, index, unit)
    if unit.kind in ("basic", "bottleneck"):
        return f"{prefix}_out"
    if unit.kind == "inception":
        return f"{prefix}_concat"
    if unit.kind == "separable":
        prefix = f"{prefix}_pw"
    activation = unit.option("activation", "relu")
    if activation is not None:
        return f"{prefix}_{'relu' if activation == 'relu' else 'act'}"
    if unit.option("batch_norm", True):
        return f"{prefix}_bn"
    return f"{prefix}_conv"


def stage_output_names(spec):
    """Names of the layers whose outputs are the stage outputs of `spec`."""
    names = []
    for stage in spec.stages:
        if stage.pool is not None:
            names.append(f"{stage.name}_pool")
        else:
            index = len(stage.units) - 1
            names.append(unit_output_name(stage, index, stage.units[index]))
    return names


# --------------------------------------------------------------------------
# Spatial bookkeeping: used for validation and by the summary.
# --------------------------------------------------------------------------
def _conv_out(size, kernel, stride, padding):
    if size is None:
        return None
    if padding == "same":
        return math.ceil(size / stride)
    return (size - kernel) // stride + 1


def unit_spatial(unit, size):
    """Output spatial size (one dimension) of `unit` for input size `size`."""
    padding = unit.option("padding", "same")
    return _conv_out(size, unit.kernel_size, unit.strides, padding)


def stage_spatial(stage, size):
    """Output size after every unit and the pool of a stage."""
    for unit in stage.units:
        size = unit_spatial(unit, size)
        if size is not None and size < 1:
            return size
    if stage.pool is not None:
        size = _conv_out(
            size, stage.pool_size, stage.pool_strides or stage.pool_size, stage.pool_padding
        )
    return size


def spatial_trace(spec, size):
    """Returns the spatial size after each stage, for one input dimension."""
    trace = []
    for stage in spec.stages:
        size = stage_spatial(stage, size)
        trace.append(size)
        if size is not None and size < 1:
            break
    return trace


def minimum_input_size(spec):
    """Smallest input height/width for which no stage output is empty."""
    for size in range(1, 4097):
        trace = spatial_trace(spec, size)
        if len(trace) == len(spec.stages) and all(s >= 1 for s in trace):
            return size
    return None


# --------------------------------------------------------------------------
# Analytic cost of a spec (before building): parameters, activations, units.
# --------------------------------------------------------------------------
#: Default refusal limits; raise them with the arguments of `build_model` /
#: `kerascnn.zoo.build` or the environment variables below.
DEFAULT_MAX_PARAMS = 2_000_000_000
DEFAULT_MAX_UNITS = 2_000
DEFAULT_MAX_ACTIVATION_BYTES = 16 * 2**30
MAX_PARAMS_ENV = "KERASCNN_MAX_PARAMS"
MAX_UNITS_ENV = "KERASCNN_MAX_UNITS"
MAX_ACTIVATION_BYTES_ENV = "KERASCNN_MAX_ACTIVATION_BYTES"


def _conv_cost(cin, cout, kernel, batch_norm=True, use_bias=None, groups=1):
    """Parameters of a (grouped) convolution, + BatchNorm's 4 per channel."""
    if use_bias is None:
        use_bias = not batch_norm
    return (
        kernel * kernel * (cin // max(1, groups)) * cout + cout * use_bias + 4 * cout * batch_norm
    )


def _separable_params(unit, cin):
    batch_norm = unit.option("batch_norm", True)
    dw_bn = unit.option("dw_batch_norm", batch_norm)
    dw_bias = unit.option("dw_use_bias", not dw_bn)
    params = unit.kernel_size**2 * cin + cin * dw_bias + 4 * cin * dw_bn
    kind = unit.option("pointwise", "pw")
    groups = int(unit.option("groups", 2)) if kind != "pw" else 1
    # RPW windows have the width of a GPW group: same parameters.
    return params + _conv_cost(cin, unit.filters, 1, batch_norm, unit.option("use_bias"), groups)


def _unit_params_and_channels(unit, cin):
    """Returns `(parameters, channel counts of the unit's conv outputs)`."""
    f, k = unit.filters, unit.kernel_size
    if unit.kind == "conv":
        bn = unit.option("batch_norm", True)
        return _conv_cost(cin, f, k, bn, unit.option("use_bias")), [f]
    if unit.kind == "separable":
        return _separable_params(unit, cin), [cin, f]
    if unit.kind == "basic":
        params = _conv_cost(cin, f, k) + _conv_cost(f, f, k)
        channels = [f, f, f]
        if unit.strides != 1 or cin != f:
            params += _conv_cost(cin, f, 1)
            channels.append(f)
        return params, channels
    if unit.kind == "bottleneck":
        out = unit.output_channels
        params = _conv_cost(cin, f, 1) + _conv_cost(f, f, k) + _conv_cost(f, out, 1)
        channels = [f, f, out, out]
        if unit.strides != 1 or cin != out:
            params += _conv_cost(cin, out, 1)
            channels.append(out)
        return params, channels
    n1, r3, n3, r5, n5, pool_proj = unit.filters
    params = _conv_cost(cin, n1, 1) + _conv_cost(cin, r3, 1) + _conv_cost(r3, n3, 3)
    params += _conv_cost(cin, r5, 1) + _conv_cost(cin, pool_proj, 1)
    if unit.option("double3x3", False):
        params += _conv_cost(r5, n5, 3) + _conv_cost(n5, n5, 3)
    else:
        params += _conv_cost(r5, n5, 5)
    return params, [n1, r3, n3, r5, n5, n5, cin, pool_proj, unit.width]


def _head_params(head, channels, spatial, classes):
    flat = channels
    if head.kind in ("flatten_dense", "vgg_imagenet"):
        flat = channels * math.prod(s if s is not None else 1 for s in spatial)
    if head.kind == "vgg_imagenet":
        return flat * 4096 + 4096 + 4096 * 4096 + 4096 + 4096 * classes + classes
    return flat * classes + (classes if head.kind != "gap_conv1x1" else 0)


def estimate_cost(spec, input_shape=(32, 32, 3), *, include_top=True, classes=1000):
    """Estimates a spec's size from the spec alone, without building it.

    Parameters are counted as `model.count_params()` counts them (BatchNorm
    statistics included) for standard convolutions; kernel decompositions and
    the squeeze-excite/BlurPool techniques are approximate. Activation memory
    is the float32 size of every convolution, BatchNorm and activation output
    (batch of one): an estimate of the forward pass, a third or so of what
    training keeps alive.

    Args:
        spec: a `kerascnn.arch.spec.ArchSpec`.
        input_shape: `(height, width, channels)`; `None` height/width leave
            the activations unknown. Defaults to `(32, 32, 3)`.
        include_top: count the classifier head. Defaults to True.
        classes: classes of the head. Defaults to 1000.

    Returns:
        A dict with `"params"` (int), `"units"` (int) and `"activation_bytes"`
        (int per example, or None when the spatial size is unknown).

    Example:

    >>> from kerascnn.zoo import compact
    >>> estimate_cost(compact.compact_spec("compact_mnist_5k"), (28, 28, 1), classes=10)["units"]
    7
    """
    height, width, cin = input_shape
    params, units, elements = 0, 0, height * width * cin if height and width else None
    for stage in spec.stages:
        for unit in stage.units:
            unit_params, channels = _unit_params_and_channels(unit, cin)
            params += unit_params
            units += 1
            height, width = unit_spatial(unit, height), unit_spatial(unit, width)
            if elements is not None and height and width:
                # conv, BatchNorm and activation outputs of every convolution.
                elements += 3 * height * width * sum(channels)
            cin = unit.output_channels
        if stage.pool is not None:
            height, width = (
                _conv_out(
                    d, stage.pool_size, stage.pool_strides or stage.pool_size, stage.pool_padding
                )
                for d in (height, width)
            )
            if elements is not None and height and width:
                elements += height * width * cin
    if include_top:
        params += _head_params(spec.head, cin, (height, width), classes)
    activation_bytes = 4 * elements if elements is not None and height and width else None
    return {"params": int(params), "units": units, "activation_bytes": activation_bytes}


def resolve_limit(value, name, env_var, default):
    """`value` if given (checked), else the environment variable, else `default`."""
    if value is not None:
        return _checks.check_positive_int(value, name)
    return _checks.env_limit(env_var, default)


def check_depth(total_units, max_units=None, *, argument="stages", value=None):
    """Refuses a spec of more than `max_units` units before it is expanded."""
    limit = resolve_limit(max_units, "max_units", MAX_UNITS_ENV, DEFAULT_MAX_UNITS)
    if total_units > limit:
        raise ValueError(
            f"{argument} asks for {total_units:,} layers/blocks, more than the limit of "
            f"{limit:,} (building would take very long). Pass max_units=... or set "
            f"{MAX_UNITS_ENV} to raise the limit. "
            + _checks.received(argument, value if value is not None else total_units)
        )


def check_budget(
    spec,
    input_shape,
    *,
    include_top=True,
    classes=1000,
    max_params=None,
    max_units=None,
    culprit=None,
):
    """Refuses a spec whose estimated size exceeds the limits, before building.

    Args:
        spec: a `kerascnn.arch.spec.ArchSpec`.
        input_shape: `(height, width, channels)`.
        include_top: count the classifier. Defaults to True.
        classes: classes of the classifier. Defaults to 1000.
        max_params: parameter limit; None reads `KERASCNN_MAX_PARAMS`, else
            `DEFAULT_MAX_PARAMS` (2e9).
        max_units: layer/block limit; None reads `KERASCNN_MAX_UNITS`, else
            `DEFAULT_MAX_UNITS` (2,000).
        culprit: optional `(argument, value)` named by the error (for example
            `("width_multiplier", 1e9)`).

    Returns:
        The estimate of `estimate_cost`.
    """
    check_depth(sum(len(s.units) for s in spec.stages), max_units, argument="spec")
    cost = estimate_cost(spec, input_shape, include_top=include_top, classes=classes)
    limit = resolve_limit(max_params, "max_params", MAX_PARAMS_ENV, DEFAULT_MAX_PARAMS)
    tail = _checks.received(*culprit) if culprit else f"Received: input_shape={input_shape!r}"
    if cost["params"] > limit:
        raise ValueError(
            f"{spec.name!r} would have about {cost['params']:,} parameters, more than the "
            f"limit of {limit:,} ({4 * cost['params'] / 2**30:,.1f} GiB of float32 weights). "
            f"Pass max_params=... or set {MAX_PARAMS_ENV} to raise the limit. {tail}"
        )
    act_limit = _checks.env_limit(MAX_ACTIVATION_BYTES_ENV, DEFAULT_MAX_ACTIVATION_BYTES)
    if cost["activation_bytes"] is not None and cost["activation_bytes"] > act_limit:
        raise ValueError(
            f"{spec.name!r} would need about {cost['activation_bytes'] / 2**30:,.1f} GiB of "
            f"activations per example, more than the limit of {act_limit / 2**30:,.1f} GiB. "
            f"Set {MAX_ACTIVATION_BYTES_ENV} (bytes) to raise the limit. {tail}"
        )
    return cost


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
    if isinstance(classes, bool) or not isinstance(classes, int) or classes < 1:
        raise ValueError(f"classes must be a positive integer. Received: classes={classes!r}")


def check_weights(weights):
    if weights is None:
        return
    if not isinstance(weights, (str, os.PathLike)) or not os.path.isfile(weights):
        raise ValueError(
            "weights must be None (random initialization) or the path to a "
            "weights file saved with `model.save_weights(...)`; kerascnn ships no "
            f"pretrained weights. Received: weights={weights!r}"
        )


def check_pooling(pooling):
    if pooling not in (None, "avg", "max"):
        raise ValueError(f"pooling must be None, 'avg' or 'max'. Received: pooling={pooling!r}")


# --------------------------------------------------------------------------
# Layer helpers.
# --------------------------------------------------------------------------
class _Ctx:
    """Settings shared by every block while building one model."""

    # Efficient-CNN techniques (see `build_model` and `_technique_conv`).
    blurpool = False
    blurpool_min_channels = 16
    blur_first = True
    squeeze_excite = False
    se_min_channels = 128
    se_latent_channels = 64

    def __init__(self, spec):
        self.momentum = spec.batch_norm_momentum
        self.epsilon = spec.batch_norm_epsilon

    def bn(self, name):
        return layers.BatchNormalization(momentum=self.momentum, epsilon=self.epsilon, name=name)


def _activation(x, activation, prefix):
    if activation is None:
        return x
    suffix = "relu" if activation == "relu" else "act"
    return layers.Activation(activation, name=f"{prefix}_{suffix}")(x)


def _conv_bn_act(
    x,
    ctx,
    prefix,
    filters,
    kernel_size,
    strides=1,
    padding="same",
    batch_norm=True,
    activation="relu",
    use_bias=None,
):
    if use_bias is None:
        use_bias = not batch_norm
    x = _technique_conv(
        x,
        ctx,
        prefix,
        filters=filters,
        kernel_size=kernel_size,
        strides=strides,
        padding=padding,
        use_bias=use_bias,
        kernel_initializer=CONV_INITIALIZER,
        name=f"{prefix}_conv",
    )
    if batch_norm:
        x = ctx.bn(f"{prefix}_bn")(x)
    return _activation(x, activation, prefix)


def _conv_unit(x, unit, prefix, ctx):
    return _conv_bn_act(
        x,
        ctx,
        prefix,
        unit.filters,
        unit.kernel_size,
        strides=unit.strides,
        padding=unit.option("padding", "same"),
        batch_norm=unit.option("batch_norm", True),
        activation=unit.option("activation", "relu"),
        use_bias=unit.option("use_bias"),
    )


def _separable_unit(x, unit, prefix, ctx):
    # Options: batch_norm (after the pointwise conv, default True),
    # dw_batch_norm (after the depthwise conv, default batch_norm),
    # dw_activation (default "relu" when dw_batch_norm, else None),
    # use_bias (pointwise, default not batch_norm) and dw_use_bias
    # (default not dw_batch_norm).
    batch_norm = unit.option("batch_norm", True)
    dw_batch_norm = unit.option("dw_batch_norm", batch_norm)
    dw_activation = unit.option("dw_activation", "relu" if dw_batch_norm else None)
    dw_use_bias = unit.option("dw_use_bias", not dw_batch_norm)
    x = layers.DepthwiseConv2D(
        unit.kernel_size,
        strides=unit.strides,
        padding=unit.option("padding", "same"),
        use_bias=dw_use_bias,
        depthwise_initializer=CONV_INITIALIZER,
        name=f"{prefix}_dw_conv",
    )(x)
    if dw_batch_norm:
        x = ctx.bn(f"{prefix}_dw_bn")(x)
    x = _activation(x, dw_activation, f"{prefix}_dw")
    # Option pointwise: "pw" (Conv2D 1x1, default), "gpw" (group pointwise,
    # options groups and shuffle) or "rpw" (rolling pointwise, options groups
    # and overlap); see `kerascnn.transforms.decomposer`.
    if unit.option("pointwise", "pw") != "pw":
        return _factorized_pointwise(x, unit, f"{prefix}_pw", ctx, batch_norm)
    return _conv_bn_act(
        x,
        ctx,
        f"{prefix}_pw",
        unit.filters,
        1,
        batch_norm=batch_norm,
        activation=unit.option("activation", "relu"),
        use_bias=unit.option("use_bias"),
    )


def _factorized_pointwise(x, unit, prefix, ctx, batch_norm):
    """GPW or RPW pointwise convolution of a separable unit (+BN+activation)."""
    from kerascnn.layers.group_pointwise import GroupPointwiseConv2D
    from kerascnn.layers.rolling_pointwise import RollingPointwiseConv2D

    kind = unit.option("pointwise", "pw")
    use_bias = unit.option("use_bias")
    if use_bias is None:
        use_bias = not batch_norm
    groups = int(unit.option("groups", 2))
    if kind == "gpw":
        layer = GroupPointwiseConv2D(
            unit.filters,
            groups=groups,
            shuffle=bool(unit.option("shuffle", False)),
            use_bias=use_bias,
            kernel_initializer=CONV_INITIALIZER,
            name=f"{prefix}_conv",
        )
    elif kind == "rpw":
        layer = RollingPointwiseConv2D(
            unit.filters,
            groups=groups,
            overlap=float(unit.option("overlap", 0.5)),
            use_bias=use_bias,
            kernel_initializer=CONV_INITIALIZER,
            name=f"{prefix}_conv",
        )
    else:
        raise ValueError(
            "A separable unit's pointwise option must be 'pw', 'gpw' or 'rpw'. "
            f"Received: pointwise={kind!r}"
        )
    x = layer(x)
    if batch_norm:
        x = ctx.bn(f"{prefix}_bn")(x)
    return _activation(x, unit.option("activation", "relu"), prefix)


def _residual_unit(x, unit, prefix, ctx):
    in_channels = x.shape[-1]
    out_channels = unit.output_channels
    f = unit.filters
    if unit.kind == "basic":
        y = _conv_bn_act(x, ctx, f"{prefix}_1", f, unit.kernel_size, unit.strides)
        y = _conv_bn_act(y, ctx, f"{prefix}_2", f, unit.kernel_size, activation=None)
    else:
        # ResNet v1.5 (torchvision, and the CIFAR ResNets): the stride is on
        # the 3x3 convolution.
        y = _conv_bn_act(x, ctx, f"{prefix}_1", f, 1)
        y = _conv_bn_act(y, ctx, f"{prefix}_2", f, unit.kernel_size, unit.strides)
        y = _conv_bn_act(y, ctx, f"{prefix}_3", out_channels, 1, activation=None)
    if unit.strides != 1 or in_channels != out_channels:
        shortcut = _conv_bn_act(
            x, ctx, f"{prefix}_0", out_channels, 1, unit.strides, activation=None
        )
    else:
        shortcut = x
    x = layers.Add(name=f"{prefix}_add")([shortcut, y])
    return layers.Activation("relu", name=f"{prefix}_out")(x)


def _inception_unit(x, unit, prefix, ctx):
    n1, r3, n3, r5, n5, pool_proj = unit.filters
    b1 = _conv_bn_act(x, ctx, f"{prefix}_b1", n1, 1)
    b2 = _conv_bn_act(x, ctx, f"{prefix}_b2a", r3, 1)
    b2 = _conv_bn_act(b2, ctx, f"{prefix}_b2b", n3, 3)
    b3 = _conv_bn_act(x, ctx, f"{prefix}_b3a", r5, 1)
    if unit.option("double3x3", False):
        b3 = _conv_bn_act(b3, ctx, f"{prefix}_b3b", n5, 3)
        b3 = _conv_bn_act(b3, ctx, f"{prefix}_b3c", n5, 3)
    else:
        b3 = _conv_bn_act(b3, ctx, f"{prefix}_b3b", n5, 5)
    b4 = layers.MaxPooling2D(3, strides=1, padding="same", name=f"{prefix}_b4_pool")(x)
    b4 = _conv_bn_act(b4, ctx, f"{prefix}_b4", pool_proj, 1)
    return layers.Concatenate(name=f"{prefix}_concat")([b1, b2, b3, b4])


def _blur_max_pool_cls():
    from kerascnn.layers.blurpool import BlurMaxPool2D

    return BlurMaxPool2D


def _is_strided(strides):
    if isinstance(strides, (tuple, list)):
        return max(strides) > 1
    return strides > 1


def _technique_conv(x, ctx, prefix, **conv_kwargs):
    """A `Conv2D` on `x`, blurred and/or followed by squeeze-excite per `ctx`.

    Composer's rules (`composer/algorithms/blurpool/blurpool.py`,
    `composer/algorithms/squeeze_excite/squeeze_excite.py`): a strided
    convolution becomes a `BlurConv2D` when its input has at least
    `ctx.blurpool_min_channels` (16) channels; a `SqueezeExcite` block follows
    a convolution (before its BatchNorm, as Composer wraps the conv itself)
    when `min(in_channels, out_channels) >= ctx.se_min_channels` (128).
    """
    in_channels = x.shape[-1]
    if (
        ctx.blurpool
        and _is_strided(conv_kwargs["strides"])
        and in_channels is not None
        and in_channels >= ctx.blurpool_min_channels
    ):
        from kerascnn.layers.blurpool import BlurConv2D

        x = BlurConv2D(blur_first=ctx.blur_first, **conv_kwargs)(x)
    else:
        x = layers.Conv2D(**conv_kwargs)(x)
    if (
        ctx.squeeze_excite
        and in_channels is not None
        and min(in_channels, conv_kwargs["filters"]) >= ctx.se_min_channels
    ):
        from kerascnn.layers.squeeze_excite import SqueezeExcite

        x = SqueezeExcite(ctx.se_latent_channels, name=f"{prefix}_se")(x)
    return x


def _check_technique_args(
    blurpool,
    squeeze_excite,
    blurpool_min_channels,
    se_min_channels,
    blur_first=True,
    se_latent_channels=64,
):
    _checks.check_bool(blurpool, "blurpool")
    _checks.check_bool(squeeze_excite, "squeeze_excite")
    _checks.check_bool(blur_first, "blur_first")
    for arg, value in (
        ("blurpool_min_channels", blurpool_min_channels),
        ("se_min_channels", se_min_channels),
    ):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"{arg} must be a non-negative integer. Received: {arg}={value!r}")
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


def _check_build_args(include_top, name, input_tensor, classifier_activation):
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
    import dataclasses

    from kerascnn.arch.spec import Head

    if spec.head.kind in ("gap_dense", "gap_conv1x1"):
        return spec
    return dataclasses.replace(spec, head=Head("gap_dense", dropout=spec.head.dropout))


_UNIT_BUILDERS = {
    "conv": _conv_unit,
    "separable": _separable_unit,
    "basic": _residual_unit,
    "bottleneck": _residual_unit,
    "inception": _inception_unit,
}


def build_stage(x, stage, ctx):
    """Applies every unit of `stage` (then its pool) to tensor `x`."""
    for index, unit in enumerate(stage.units):
        x = _UNIT_BUILDERS[unit.kind](x, unit, unit_prefix(stage, index, unit), ctx)
    if stage.pool is not None:
        pool_cls = layers.MaxPooling2D if stage.pool == "max" else layers.AveragePooling2D
        if stage.pool == "max" and ctx.blurpool:
            pool_cls = _blur_max_pool_cls()
        x = pool_cls(
            stage.pool_size,
            strides=stage.pool_strides or stage.pool_size,
            padding=stage.pool_padding,
            name=f"{stage.name}_pool",
        )(x)
    return x


def _build_head(x, spec, classes, classifier_activation):
    head = spec.head
    kind = head.kind
    if kind in ("flatten_dense", "vgg_imagenet"):
        x = layers.Flatten(name="head_flatten")(x)
    else:
        x = layers.GlobalAveragePooling2D(name="head_gap")(x)
    if kind == "vgg_imagenet":
        x = layers.Dense(4096, activation="relu", name="head_fc1")(x)
        x = layers.Dense(4096, activation="relu", name="head_fc2")(x)
    if head.dropout > 0:
        x = layers.Dropout(head.dropout, name="head_dropout")(x)
    return layers.Dense(
        classes,
        activation=classifier_activation,
        use_bias=kind != "gap_conv1x1",
        # Keep the logits in float32 under a mixed-precision policy.
        dtype="float32" if keras.config.dtype_policy().name.startswith("mixed") else None,
        name="predictions",
    )(x)


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
        se_min_channels: see `squeeze_excite`. Defaults to 128 (Composer).
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
    _check_build_args(include_top, name, input_tensor, classifier_activation)
    check_weights(weights)
    check_pooling(pooling)
    if include_top:
        check_classes(classes)
    _check_technique_args(
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
    ctx = _Ctx(spec)
    ctx.blurpool = blurpool
    ctx.blurpool_min_channels = blurpool_min_channels
    ctx.blur_first = blur_first
    ctx.squeeze_excite = squeeze_excite
    ctx.se_min_channels = se_min_channels
    ctx.se_latent_channels = se_latent_channels
    x = inputs
    for stage in spec.stages:
        x = build_stage(x, stage, ctx)
    if include_top:
        x = _build_head(x, spec, classes, classifier_activation)
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
    if weights is not None:
        model.load_weights(weights)
    return model
