"""Spatial sizes and analytic cost of a spec, before any layer exists (no Keras).

`spatial_trace` and `minimum_input_size` follow the output-size rule of a
convolution (`ceil(size / stride)` with `"same"` padding,
`(size - kernel) // stride + 1` with `"valid"`); `estimate_cost` counts
parameters and activation memory as the built Keras model would, and
`check_depth` / `check_budget` refuse a spec above the size limits.

Example:

>>> from kerascnn.zoo import vgg
>>> spatial_trace(vgg.vgg_spec("vgg11"), 32)
[16, 8, 4, 2, 1]
"""

from __future__ import annotations

import math

from kerascnn import _checks


def conv_output_size(size, kernel, stride, padding):
    """Output size (one dimension) of a convolution or pooling; None stays None."""
    if size is None:
        return None
    if padding == "same":
        return math.ceil(size / stride)
    return (size - kernel) // stride + 1


def unit_spatial(unit, size):
    """Output spatial size (one dimension) of `unit` for input size `size`."""
    padding = unit.option("padding", "same")
    return conv_output_size(size, unit.kernel_size, unit.strides, padding)


def stage_spatial(stage, size):
    """Output size after every unit and the pool of a stage."""
    for unit in stage.units:
        size = unit_spatial(unit, size)
        if size is not None and size < 1:
            return size
    if stage.pool is not None:
        size = conv_output_size(
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
    bias = unit.option("use_bias")
    if unit.kind == "basic":
        params = _conv_cost(cin, f, k, True, bias) + _conv_cost(f, f, k, True, bias)
        channels = [f, f, f]
        if unit.strides != 1 or cin != f:
            params += _conv_cost(cin, f, 1, True, bias)
            channels.append(f)
        return params, channels
    if unit.kind == "bottleneck":
        out = unit.output_channels
        params = _conv_cost(cin, f, 1, True, bias) + _conv_cost(f, f, k, True, bias)
        params += _conv_cost(f, out, 1, True, bias)
        channels = [f, f, out, out]
        if unit.strides != 1 or cin != out:
            params += _conv_cost(cin, out, 1, True, bias)
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
                conv_output_size(
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
