"""Keras blocks of the spec's units: conv, separable (DW + PW/GPW/RPW), residual, inception.

`build_stage` applies the units of one stage; every layer is named with
`kerascnn.arch.naming.unit_prefix`. The efficient-CNN techniques (BlurPool,
squeeze-excite) follow Composer's rules (`_technique_conv`).

Example:

>>> import keras
>>> from kerascnn.zoo import vgg
>>> spec = vgg.vgg_spec("vgg11")
>>> x = build_stage(keras.Input((32, 32, 3)), spec.stages[0], BuildContext(spec))
>>> tuple(x.shape)
(None, 16, 16, 64)
"""

from __future__ import annotations

import keras
from keras import layers

from kerascnn.arch.naming import unit_prefix
from kerascnn.layers.blurpool import BlurConv2D, BlurMaxPool2D
from kerascnn.layers.group_pointwise import GroupPointwiseConv2D
from kerascnn.layers.rolling_pointwise import RollingPointwiseConv2D
from kerascnn.layers.squeeze_excite import SqueezeExcite

CONV_INITIALIZER = "he_normal"


class BuildContext:
    """Settings shared by every block while building one model.

    Args:
        spec: the `ArchSpec` being built (its BatchNorm momentum and epsilon).
        blurpool: BlurPool on max-pools and strided convolutions. Defaults to False.
        blurpool_min_channels: see `_technique_conv`. Defaults to 16.
        blur_first: `BlurConv2D`'s `blur_first`. Defaults to True.
        squeeze_excite: squeeze-excite after wide convolutions. Defaults to False.
        se_min_channels: see `_technique_conv`. Defaults to 128.
        se_latent_channels: hidden width of the SE blocks. Defaults to 64.
    """

    def __init__(
        self,
        spec,
        *,
        blurpool=False,
        blurpool_min_channels=16,
        blur_first=True,
        squeeze_excite=False,
        se_min_channels=128,
        se_latent_channels=64,
    ):
        self.momentum = spec.batch_norm_momentum
        self.epsilon = spec.batch_norm_epsilon
        self.blurpool = blurpool
        self.blurpool_min_channels = blurpool_min_channels
        self.blur_first = blur_first
        self.squeeze_excite = squeeze_excite
        self.se_min_channels = se_min_channels
        self.se_latent_channels = se_latent_channels

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
    # Option use_bias: biases on every convolution of the block (keras.applications).
    bias = unit.option("use_bias")
    if unit.kind == "basic":
        y = _conv_bn_act(x, ctx, f"{prefix}_1", f, unit.kernel_size, unit.strides, use_bias=bias)
        y = _conv_bn_act(y, ctx, f"{prefix}_2", f, unit.kernel_size, activation=None, use_bias=bias)
    else:
        # Option stride_on: "middle" (default) puts the stride on the kxk
        # convolution (ResNet v1.5: torchvision, the CIFAR ResNets); "first"
        # on the first 1x1 (ResNet v1: keras.applications, Caffe).
        first = unit.option("stride_on", "middle") == "first"
        s1, s2 = (unit.strides, 1) if first else (1, unit.strides)
        y = _conv_bn_act(x, ctx, f"{prefix}_1", f, 1, s1, use_bias=bias)
        y = _conv_bn_act(y, ctx, f"{prefix}_2", f, unit.kernel_size, s2, use_bias=bias)
        y = _conv_bn_act(y, ctx, f"{prefix}_3", out_channels, 1, activation=None, use_bias=bias)
    if unit.strides != 1 or in_channels != out_channels:
        shortcut = _conv_bn_act(
            x, ctx, f"{prefix}_0", out_channels, 1, unit.strides, activation=None, use_bias=bias
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
        x = BlurConv2D(blur_first=ctx.blur_first, **conv_kwargs)(x)
    else:
        x = layers.Conv2D(**conv_kwargs)(x)
    if (
        ctx.squeeze_excite
        and in_channels is not None
        and min(in_channels, conv_kwargs["filters"]) >= ctx.se_min_channels
    ):
        x = SqueezeExcite(ctx.se_latent_channels, name=f"{prefix}_se")(x)
    return x


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
            pool_cls = BlurMaxPool2D
        x = pool_cls(
            stage.pool_size,
            strides=stage.pool_strides or stage.pool_size,
            padding=stage.pool_padding,
            name=f"{stage.name}_pool",
        )(x)
    return x


def build_head(x, spec, classes, classifier_activation):
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
