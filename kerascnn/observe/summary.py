"""Per-layer parameters, multiply-accumulates (MACs) and activation memory.

`summarize(model)` walks a built Keras model and returns a `ModelSummary`:
one `LayerRow` per layer (name, class, output shape, filters, parameters,
forward MACs, activation memory) and the totals. Everything is computed
analytically from the layers' configurations and the shapes of the built
graph (no profiling, no forward pass), for a batch of one.

Counting conventions (those of the published comparisons, e.g. torchvision's
ResNet-50 4.09 G and VGG-16 15.47 G, and the MobileNet paper's 569 M
"mult-adds"):

- Convolutions count one MAC per kernel weight per output position:
  `Conv` (incl. `groups > 1`): `H_out * W_out * C_out * kh * kw * C_in / groups`;
  `DepthwiseConv`: `H_out * W_out * C_in * depth_multiplier * kh * kw`;
  `SeparableConv`: its depthwise part plus `H_out * W_out * C_in * dm * C_out`;
  `ConvTranspose`: `H_in * W_in * C_in * kh * kw * C_out / groups`.
  `Dense`: `in_features * units` per input row. Bias additions are not counted.
- Pooling counts one op per window element per output:
  `MaxPooling`/`AveragePooling`: `output elements * prod(pool_size)`;
  `GlobalMax/GlobalAveragePooling`: the input elements. This adds well under
  0.1% on the models above.
- BatchNormalization (folded into the convolution at inference), activations,
  `Add`, `Concatenate`, `Flatten`, `Dropout`, reshapes and the like count 0.
- A layer with a method `compute_macs(input_shape, output_shape) -> int` is
  counted by that method (the protocol for custom kerascnn layers). Shapes
  include the batch dimension (set to 1); a layer with several inputs or
  outputs gets lists of shapes.
- A nested model counts the sum of its layers. Any other layer with
  sublayers counts the sum over its sublayers, each from the input shape it
  was built with. Remaining layers with weights count 0 and get a `note`.

Activation memory is the number of output elements (batch 1) times the
output dtype's size in bytes; the input layer is included.

Example:

>>> import keras
>>> from kerascnn.observe import summary
>>> inputs = keras.Input((8, 8, 3))
>>> outputs = keras.layers.Conv2D(4, 3, padding="same")(inputs)
>>> s = summary.summarize(keras.Model(inputs, outputs))
>>> s.macs == 8 * 8 * 4 * 3 * 3 * 3
True
>>> s.params
112
"""

from __future__ import annotations

import dataclasses
import math
import re

import keras
from keras import layers as L

# Layer classes that have weights but, by the conventions above, no MACs.
_ZERO_MAC_WEIGHTED = (
    L.BatchNormalization,
    L.LayerNormalization,
    L.GroupNormalization,
    L.UnitNormalization,
    L.Normalization,
    L.Embedding,
    L.PReLU,
)

_SEPARABLE = (L.SeparableConv1D, L.SeparableConv2D)
_DEPTHWISE = (L.DepthwiseConv1D, L.DepthwiseConv2D)
_TRANSPOSE = (L.Conv1DTranspose, L.Conv2DTranspose, L.Conv3DTranspose)
_CONV = (L.Conv1D, L.Conv2D, L.Conv3D)
_POOL = (
    L.MaxPooling1D,
    L.MaxPooling2D,
    L.MaxPooling3D,
    L.AveragePooling1D,
    L.AveragePooling2D,
    L.AveragePooling3D,
)
_GLOBAL_POOL = (
    L.GlobalMaxPooling1D,
    L.GlobalMaxPooling2D,
    L.GlobalMaxPooling3D,
    L.GlobalAveragePooling1D,
    L.GlobalAveragePooling2D,
    L.GlobalAveragePooling3D,
)


@dataclasses.dataclass
class LayerRow:
    """One layer of a `ModelSummary`.

    Args:
        name: the layer name.
        class_name: the layer class name (e.g. `"Conv2D"`).
        output_shape: the output shape with the batch dimension (`None`), or a
            list of shapes for a layer with several outputs.
        filters: the layer's `filters` (convolutions) or `units` (Dense), else None.
        params: trainable plus non-trainable parameters.
        trainable_params: trainable parameters.
        macs: forward multiply-accumulates for a batch of one.
        activation_bytes: output elements times dtype size, batch of one.
        note: why a count may be incomplete, else `""`.
    """

    name: str
    class_name: str
    output_shape: object
    filters: int | None
    params: int
    trainable_params: int
    macs: int
    activation_bytes: int
    note: str = ""


@dataclasses.dataclass
class ModelSummary:
    """Per-layer rows and totals of a model (see `summarize`).

    Args:
        name: the model name.
        layers: list of `LayerRow`, in the model's layer order.
        params: total parameters (shared weights counted once).
        trainable_params: total trainable parameters.
        macs: total forward MACs, batch of one.
        activation_bytes: total activation memory in bytes, batch of one.
    """

    name: str
    layers: list
    params: int
    trainable_params: int
    macs: int
    activation_bytes: int

    @property
    def non_trainable_params(self):
        return self.params - self.trainable_params

    @property
    def totals(self):
        """The totals as a dict (the `"totals"` entry of `to_dict`)."""
        return {
            "params": self.params,
            "trainable_params": self.trainable_params,
            "non_trainable_params": self.non_trainable_params,
            "macs": self.macs,
            "activation_bytes": self.activation_bytes,
        }


# --------------------------------------------------------------------------
# Shapes.
# --------------------------------------------------------------------------
def _is_shape(value):
    return isinstance(value, (tuple, list)) and all(d is None or isinstance(d, int) for d in value)


def _batch1(shape):
    """Replaces the batch dimension by 1; returns a tuple."""
    shape = tuple(shape)
    return (1,) + shape[1:] if shape else shape


def _defined(shape, layer, what):
    if any(d is None for d in shape[1:]):
        raise ValueError(
            f"Cannot count MACs or memory of layer {layer.name!r} "
            f"({type(layer).__name__}): its {what} shape {shape} is not fully "
            "defined. Build the model with a fixed input_shape, e.g. "
            "input_shape=(32, 32, 3)."
        )
    return _batch1(shape)


def _num_elements(shape):
    return math.prod(shape)


def _dtype_bytes(dtype):
    name = str(getattr(dtype, "name", dtype))
    if name == "bool":
        return 1
    match = re.search(r"(\d+)$", name)
    return int(match.group(1)) // 8 if match else 4


def _channels_axis(layer):
    return 1 if getattr(layer, "data_format", "channels_last") == "channels_first" else -1


def _spatial(shape, layer):
    """The spatial dimensions of a batched shape."""
    return shape[2:] if _channels_axis(layer) == 1 else shape[1:-1]


def _single(shapes):
    return shapes[0] if isinstance(shapes, list) else shapes


# --------------------------------------------------------------------------
# MACs.
# --------------------------------------------------------------------------
def _layer_macs(layer, input_shapes, output_shapes):
    """MACs of one call of `layer`; returns `(macs, note)`.

    `input_shapes`/`output_shapes` are lists of batched shapes (batch 1).
    """
    compute_macs = getattr(layer, "compute_macs", None)
    if callable(compute_macs):
        in_arg = input_shapes[0] if len(input_shapes) == 1 else list(input_shapes)
        out_arg = output_shapes[0] if len(output_shapes) == 1 else list(output_shapes)
        return int(compute_macs(in_arg, out_arg)), ""
    if isinstance(layer, keras.Model):
        return summarize(layer).macs, ""
    in_shape = _single(input_shapes) if input_shapes else None
    out_shape = _single(output_shapes)
    if isinstance(layer, _SEPARABLE):
        in_channels = in_shape[_channels_axis(layer)]
        positions = _num_elements(_spatial(out_shape, layer))
        mid = in_channels * layer.depth_multiplier
        depthwise = positions * mid * math.prod(layer.kernel_size)
        return depthwise + positions * mid * layer.filters, ""
    if isinstance(layer, _DEPTHWISE):
        in_channels = in_shape[_channels_axis(layer)]
        positions = _num_elements(_spatial(out_shape, layer))
        return positions * in_channels * layer.depth_multiplier * math.prod(layer.kernel_size), ""
    if isinstance(layer, _TRANSPOSE):
        in_channels = in_shape[_channels_axis(layer)]
        positions = _num_elements(_spatial(in_shape, layer))
        groups = getattr(layer, "groups", 1) or 1
        per_position = math.prod(layer.kernel_size) * in_channels * layer.filters
        return positions * per_position // groups, ""
    if isinstance(layer, _CONV):
        in_channels = in_shape[_channels_axis(layer)]
        positions = _num_elements(_spatial(out_shape, layer))
        per_output = math.prod(layer.kernel_size) * in_channels // layer.groups
        return positions * layer.filters * per_output, ""
    if isinstance(layer, L.Dense):
        rows = _num_elements(in_shape[:-1])
        return rows * in_shape[-1] * layer.units, ""
    if isinstance(layer, _POOL):
        return _num_elements(out_shape) * math.prod(layer.pool_size), ""
    if isinstance(layer, _GLOBAL_POOL):
        return _num_elements(in_shape), ""
    if isinstance(layer, _ZERO_MAC_WEIGHTED):
        return 0, ""
    sublayers = list(layer._flatten_layers(include_self=False, recursive=False))
    if sublayers:
        return _sublayers_macs(layer, sublayers)
    if layer.weights:
        return 0, f"MACs of {type(layer).__name__} not counted (no rule, no compute_macs)"
    return 0, ""


def _sublayers_macs(layer, sublayers):
    """Sums the MACs of sublayers, each from the shape it was built with."""
    total = 0
    missing = []
    for sub in sublayers:
        shapes_dict = getattr(sub, "_build_shapes_dict", None) or {}
        shape = next(iter(shapes_dict.values()), None)
        if shape is None or not _is_shape(shape) or any(d is None for d in shape[1:]):
            if sub.weights or sub._flatten_layers(include_self=False, recursive=False):
                missing.append(sub.name)
            continue
        shape = _batch1(shape)
        try:
            out = sub.compute_output_shape(shape)
        except Exception:  # noqa: BLE001 - layers without shape inference.
            missing.append(sub.name)
            continue
        outs = [_batch1(s) for s in out] if not _is_shape(out) else [_batch1(out)]
        macs, note = _layer_macs(sub, [shape], outs)
        total += macs
        if note:
            missing.append(sub.name)
    note = ""
    if missing:
        note = f"sum over known sublayers of {type(layer).__name__}; not counted: " + ", ".join(
            missing
        )
    return total, note


# --------------------------------------------------------------------------
# Walking the model.
# --------------------------------------------------------------------------
def _model_nodes(model):
    """Ids of the graph nodes that belong to `model` (None when unknown).

    A layer shared with another model (a sub-model made by splitting, a
    cloned graph) has calls outside `model`; only `model`'s own are counted.
    """
    graph = getattr(model, "_functional", None) or model
    by_depth = getattr(graph, "_nodes_by_depth", None)
    if not by_depth:
        return None
    return {id(node) for nodes in by_depth.values() for node in nodes}


def _calls(layer, model_nodes=None):
    """Yields `(input_tensors, output_tensors)` of each call of `layer`."""
    nodes = getattr(layer, "_inbound_nodes", None) or []
    if model_nodes is not None:
        own = [node for node in nodes if id(node) in model_nodes]
        nodes = own or nodes
    for node in nodes:
        yield list(node.input_tensors), list(node.output_tensors)


def _weights_size(weights):
    return sum(math.prod(w.shape) for w in weights)


def _layer_row(layer, model_nodes=None):
    calls = list(_calls(layer, model_nodes))
    if not calls:
        raise ValueError(
            f"Layer {layer.name!r} of the model has never been called: summarize "
            "needs a built functional or Sequential model (e.g. one from "
            "kerascnn.zoo or keras.Model(inputs, outputs))."
        )
    macs = 0
    activation_bytes = 0
    notes = []
    for inputs, outputs in calls:
        in_shapes = [_defined(tuple(t.shape), layer, "input") for t in inputs]
        out_shapes = [_defined(tuple(t.shape), layer, "output") for t in outputs]
        call_macs, note = _layer_macs(layer, in_shapes, out_shapes)
        macs += call_macs
        if note and note not in notes:
            notes.append(note)
        for tensor, shape in zip(outputs, out_shapes):
            activation_bytes += _num_elements(shape) * _dtype_bytes(tensor.dtype)
    out_shapes = [tuple(t.shape) for t in calls[0][1]]
    filters = getattr(layer, "filters", None)
    if filters is None:
        filters = getattr(layer, "units", None)
    if not (isinstance(filters, int) and not isinstance(filters, bool)):
        filters = None
    return LayerRow(
        name=layer.name,
        class_name=type(layer).__name__,
        output_shape=out_shapes[0] if len(out_shapes) == 1 else out_shapes,
        filters=filters,
        params=_weights_size(layer.weights),
        trainable_params=_weights_size(layer.trainable_weights),
        macs=int(macs),
        activation_bytes=int(activation_bytes),
        note="; ".join(notes),
    )


def summarize(model):
    """Summarizes a built Keras model: parameters, MACs and activation memory.

    Args:
        model: a built functional or Sequential `keras.Model` with a fully
            defined input shape (batch size aside).

    Returns:
        A `ModelSummary`. Counting conventions: see the module docstring.

    Example:

    >>> import kerascnn
    >>> model = kerascnn.zoo.vgg11(input_shape=(32, 32, 3), classes=10)
    >>> s = summarize(model)
    >>> s.params == model.count_params()
    True
    """
    if not isinstance(model, keras.Model):
        raise TypeError(
            f"model must be a keras.Model. Received: model of type {type(model).__name__}"
        )
    if not model.built:
        raise ValueError(
            f"model {model.name!r} is not built: build it (or call it on an input) "
            "before summarizing it."
        )
    rows = []
    weights = {}
    trainable = {}
    model_nodes = _model_nodes(model)
    for layer in model.layers:
        rows.append(_layer_row(layer, model_nodes))
        for w in layer.weights:
            weights[id(w)] = w
        for w in layer.trainable_weights:
            trainable[id(w)] = w
    return ModelSummary(
        name=model.name,
        layers=rows,
        params=int(_weights_size(weights.values())),
        trainable_params=int(_weights_size(trainable.values())),
        macs=sum(r.macs for r in rows),
        activation_bytes=sum(r.activation_bytes for r in rows),
    )


# --------------------------------------------------------------------------
# Output.
# --------------------------------------------------------------------------
def _shape_text(shape):
    if isinstance(shape, list):
        return ", ".join(_shape_text(s) for s in shape)
    return "(" + ", ".join("None" if d is None else str(d) for d in shape) + ")"


def human(number, unit=""):
    """Formats `number` with a metric suffix: `human(4.09e9) == "4.09 G"`."""
    for threshold, suffix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "K")):
        if abs(number) >= threshold:
            return f"{number / threshold:.2f} {suffix}{unit}"
    return f"{number} {unit}".rstrip() if unit else str(number)


def format_table(summary):
    """Returns the summary as an aligned text table with totals.

    Args:
        summary: a `ModelSummary`.

    Example:

    >>> print(format_table(summarize(model)))  # doctest: +SKIP
    """
    header = ("Layer (type)", "Output shape", "Filters", "Params", "MACs", "Act. bytes")
    lines = []
    for row in summary.layers:
        name = f"{row.name} ({row.class_name})"
        if row.note:
            name += " *"
        lines.append(
            (
                name,
                _shape_text(row.output_shape),
                "" if row.filters is None else f"{row.filters:,}",
                f"{row.params:,}",
                f"{row.macs:,}",
                f"{row.activation_bytes:,}",
            )
        )
    widths = [max(len(h), *(len(line[i]) for line in lines)) for i, h in enumerate(header)]

    def fmt(cells):
        left = [cells[i].ljust(widths[i]) for i in range(2)]
        right = [cells[i].rjust(widths[i]) for i in range(2, len(cells))]
        return "  ".join(left + right).rstrip()

    rule = "-" * len(fmt(header))
    out = [f'Model: "{summary.name}"', rule, fmt(header), rule]
    out += [fmt(line) for line in lines]
    out.append(rule)
    out.append(f"Total params:         {summary.params:,} ({human(summary.params)})")
    out.append(f"Trainable params:     {summary.trainable_params:,}")
    out.append(f"Non-trainable params: {summary.non_trainable_params:,}")
    out.append(f"MACs (batch 1):       {summary.macs:,} ({human(summary.macs)})")
    out.append(
        f"Activation memory:    {summary.activation_bytes:,} bytes "
        f"({summary.activation_bytes / 2**20:.2f} MiB, batch 1)"
    )
    notes = [f"  * {row.name}: {row.note}" for row in summary.layers if row.note]
    if notes:
        out.append("Notes:")
        out += notes
    return "\n".join(out)


def to_dict(summary):
    """Returns the summary as a JSON-serializable dict.

    The layout is `{"model": name, "layers": [...], "totals": {"params",
    "trainable_params", "non_trainable_params", "macs", "activation_bytes"}}`.
    """

    def shape_list(shape):
        if isinstance(shape, list):
            return [shape_list(s) for s in shape]
        return list(shape)

    rows = []
    for row in summary.layers:
        item = dataclasses.asdict(row)
        item["output_shape"] = shape_list(row.output_shape)
        rows.append(item)
    return {"model": summary.name, "layers": rows, "totals": summary.totals}
