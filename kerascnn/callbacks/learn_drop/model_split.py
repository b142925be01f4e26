"""Cut points of a functional model (one or several tensors), and tail/head sub-models.

A *cut after layer L* splits the model's graph, in topological order, into
the *tail* (every layer up to and including L) and the *head* (the rest).
The tensors that cross the cut are the outputs of tail layers used by head
layers: L's own output first, then any other (e.g. the input of a residual
block, still needed by its skip connection), in topological order. Cutting
there splits the model into `tail(x) -> features` and
`head(features) -> outputs` with `head(tail(x)) == model(x)`; `features` is
one tensor when one tensor crosses and a list when several do. Both
sub-models share the original layer objects (and so their variables) with
the model: training the head trains `model`.

Every convolution can be cut after, as in the Learn&Drop paper's Figure 3
("the saved feature maps come from the layers [...] inside the residual
block on the main track and on the skip connection"): a ResNet cut after
the first convolution of a residual block has two crossing tensors, the main
path and the shortcut, and both are cached. At block boundaries, between
VGG conv/BN/ReLU(/pool) groups and in a chain of convolutions one tensor
crosses, as before (`CutPlan.single` lists those cut points).

Nested functional (or Sequential) models used as layers, such as a
`keras.applications` backbone inside a user's model, are inlined first
(`flatten_nested`): the cut points reach inside them. A nested subclassed
model stays one opaque layer (no cut inside it).

`conv_cut_points(model)` maps "the first k convolutions are in the tail" to
the last layer before the (k+1)-th convolution, so that a cut after a conv
also takes its BN, activation and pooling.

Example:

>>> from kerascnn import zoo
>>> m = zoo.resnet18(input_shape=(16, 16, 3), width_multiplier=0.125)
>>> plan = conv_cut_points(m)
>>> plan.cuts[4], plan.crossing["stage1_block1_out"]
('stage1_block1_out', ['stage1_block1_out'])
>>> plan.cuts[5], plan.crossing[plan.cuts[5]]  # inside a residual block
('stage1_block2_1_relu', ['stage1_block2_1_relu', 'stage1_block1_out'])
>>> tail, head = split_model(m, "stage1_block2_1_relu")
>>> len(tail.outputs), len(head.inputs)
(2, 2)
"""

from __future__ import annotations

import dataclasses
import weakref

import keras

#: The Keras convolution layers (what counts as a convolution for cut points and
#: for the statistics callbacks' default monitored layers).
CONV_CLASSES = (
    keras.layers.Conv1D,
    keras.layers.Conv2D,
    keras.layers.Conv3D,
    keras.layers.DepthwiseConv1D,
    keras.layers.DepthwiseConv2D,
    keras.layers.SeparableConv1D,
    keras.layers.SeparableConv2D,
    keras.layers.Conv1DTranspose,
    keras.layers.Conv2DTranspose,
    keras.layers.Conv3DTranspose,
)


def _history(tensor):
    history = getattr(tensor, "_keras_history", None)
    if history is None:
        raise ValueError(f"Tensor {tensor!r} has no Keras history (not a functional graph).")
    return history


def _producer_node(tensor):
    operation, node_index, _ = _history(tensor)
    return operation._inbound_nodes[node_index]


def _graph(model):
    """Nodes reachable backward from the outputs: {id(node): node}, in topo order."""
    if not hasattr(model, "outputs") or not getattr(model, "_inbound_nodes", None):
        pass
    try:
        outputs = list(model.outputs)
        inputs = list(model.inputs)
    except (AttributeError, ValueError) as error:
        raise ValueError(
            "Layer dropping needs a functional (or Sequential) model with defined "
            f"inputs and outputs. Received: model={model.name!r} ({type(model).__name__})"
        ) from error
    order, seen = [], set()

    def visit(node):
        if id(node) in seen:
            return
        seen.add(id(node))
        for tensor in node.arguments.keras_tensors:
            visit(_producer_node(tensor))
        order.append(node)

    for tensor in outputs:
        visit(_producer_node(tensor))
    return inputs, outputs, order


@dataclasses.dataclass
class CutPlan:
    """Where a model can be cut, in terms of its convolutions.

    Attributes:
        convs: names of the convolution layers, in topological order.
        cuts: `{k: layer_name}`, the layer to cut after so that exactly the
            first `k` convolutions are in the tail (the last layer before the
            (k+1)-th convolution, so a conv's BN/activation/pool go with it),
            for every `0 < k < len(convs)` (the head keeps at least one
            convolution).
        valid: names of all layers after which the model can be cut (every
            layer but the input and the output layer), in topological order.
        crossing: `{layer_name: [tensor names]}`, the tensors that cross the
            cut after each valid layer: the layer's own output first, then
            the others in topological order. A tensor is named after the
            layer producing it (`"name[i]"` for output `i` of a layer with
            several outputs).
        single: the names in `valid` whose cut has one crossing tensor.
        blocked: kept for compatibility; always empty (every convolution can
            be cut after).
    """

    convs: list
    cuts: dict
    valid: list
    crossing: dict = dataclasses.field(default_factory=dict)
    single: list = dataclasses.field(default_factory=list)
    blocked: dict = dataclasses.field(default_factory=dict)

    def round_down(self, k, minimum=0):
        """The largest cuttable `k' <= k` with `k' > minimum`, or None."""
        best = None
        for key in self.cuts:
            if minimum < key <= k and (best is None or key > best):
                best = key
        return best


def conv_cut_points(model):
    """Computes the cut points of `model` (see the module doc).

    Args:
        model: a built functional or Sequential `keras.Model` with one input
            and one output.

    Returns:
        A `CutPlan`.

    Raises:
        ValueError: the model is not functional, has several inputs or
            outputs, has fewer than two convolutions, or calls a
            convolution more than once.
    """
    model = flatten_nested(model)
    inputs, outputs, nodes = _graph(model)
    if len(inputs) != 1 or len(outputs) != 1:
        raise ValueError(
            "Layer dropping needs a model with one input and one output. "
            f"Received: model={model.name!r} with {len(inputs)} inputs and "
            f"{len(outputs)} outputs"
        )
    convs = _conv_names(model, nodes)
    crossing = {name: [_tensor_name(t) for t in tensors] for name, tensors in _cuts(model).items()}
    position = {node.operation.name: i for i, node in enumerate(nodes)}
    cuts = {}
    for k in range(1, len(convs)):
        before = nodes[position[convs[k]] - 1].operation.name
        if before in crossing:
            cuts[k] = before
    return CutPlan(
        convs=convs,
        cuts=cuts,
        valid=list(crossing),
        crossing=crossing,
        single=[name for name, tensors in crossing.items() if len(tensors) == 1],
    )


def _tensor_name(tensor):
    operation, node_index, tensor_index = _history(tensor)
    node = operation._inbound_nodes[node_index]
    return operation.name if len(node.outputs) == 1 else f"{operation.name}[{tensor_index}]"


_CUTS = weakref.WeakKeyDictionary()  # flat model -> {layer name: [crossing KerasTensors]}


def _cuts(flat):
    """`{layer name: crossing tensors}` of every cut of the flat model, in one sweep.

    The tail of the cut after node `i` is the topological prefix `nodes[:i+1]`;
    its crossing tensors are the prefix's outputs with a consumer after `i`.
    """
    cached = _CUTS.get(flat)
    if cached is not None:
        return cached
    inputs, outputs, nodes = _graph(flat)
    position = {id(node): i for i, node in enumerate(nodes)}
    last_use, tensor_of = {}, {}
    for i, node in enumerate(nodes):
        for tensor in node.arguments.keras_tensors:
            last_use[id(tensor)] = i
            tensor_of[id(tensor)] = tensor
    output_ids = {id(t) for t in outputs}
    calls = {}
    for node in nodes:
        calls[node.operation.name] = calls.get(node.operation.name, 0) + 1
    live, cuts = [], {}
    for i, node in enumerate(nodes):
        live = [t for t in live if last_use[id(t)] > i]
        own = [t for t in keras.tree.flatten(node.outputs) if last_use.get(id(t), -1) > i]
        live += own
        if isinstance(node.operation, keras.layers.InputLayer) or i == len(nodes) - 1:
            continue
        if calls[node.operation.name] > 1:
            continue  # a shared layer: its name does not name one cut
        if any(id(t) in output_ids for t in keras.tree.flatten(node.outputs)):
            continue
        others = [t for t in live if not any(t is o for o in own)]
        others.sort(key=lambda t: position[id(_producer_node(t))])
        cuts[node.operation.name] = own + others
    _CUTS[flat] = cuts
    return cuts


def _conv_names(model, nodes):
    """The names of the convolutions of `nodes`, in order (each called once, two or more)."""
    convs = []
    for node in nodes:
        if isinstance(node.operation, CONV_CLASSES):
            if node.operation.name in convs:
                raise ValueError(
                    f"Convolution {node.operation.name!r} is called more than once "
                    "in the model (shared layer); layer dropping needs each layer "
                    f"called once. Received: model={model.name!r}"
                )
            convs.append(node.operation.name)
    if len(convs) < 2:
        raise ValueError(
            "Layer dropping needs at least two convolution layers. "
            f"Received: model={model.name!r} with convolutions {convs}"
        )
    return convs


_FLAT = weakref.WeakKeyDictionary()  # model -> its flat graph (built once)


def _nested_graph(operation):
    """`_graph` of a nested functional / Sequential model, else None."""
    if not isinstance(operation, keras.Model):
        return None
    try:
        return _graph(operation)
    except ValueError:
        return None  # subclassed: kept as one opaque layer


def _run_nodes(nodes, tensors):
    """Calls every node's operation again on the tensors mapped in `tensors`.

    Nested functional models are replaced by their own nodes (recursively), so
    the result is a flat graph over the same layer objects.
    """
    for node in nodes:
        operation = node.operation
        if isinstance(operation, keras.layers.InputLayer):
            continue
        args, kwargs = node.arguments.fill_in(tensors)
        graph = _nested_graph(operation)
        if graph is not None:
            inner_inputs, inner_outputs, inner_nodes = graph
            extra = sorted(k for k in kwargs if k not in ("training", "mask"))
            if extra or kwargs.get("mask") is not None or len(args) != 1:
                raise ValueError(
                    f"Nested model {operation.name!r} is called with arguments that "
                    "layer dropping cannot inline (only one positional input is "
                    f"supported). Received: kwargs={extra}"
                )
            inner = {
                id(t): v for t, v in zip(inner_inputs, keras.tree.flatten(args[0]), strict=True)
            }
            _run_nodes(inner_nodes, inner)
            results = [inner[id(t)] for t in inner_outputs]
        else:
            results = keras.tree.flatten(operation(*args, **kwargs))
        for tensor, value in zip(keras.tree.flatten(node.outputs), results, strict=True):
            tensors[id(tensor)] = value


def flatten_nested(model):
    """`model` with every nested functional sub-model inlined, or `model` itself.

    A functional model that uses another functional model as a layer (e.g. a
    `keras.applications` backbone, or a kerascnn zoo model) is rebuilt as one
    flat functional graph over the *same* layer objects (and so the same
    variables): training the flat model trains `model`, and the cut points of
    the flat graph reach inside the backbone. `model` itself is not changed
    (its layers gain one extra symbolic call each, which saving ignores).
    A model without nested models is returned as is.

    Args:
        model: a functional or Sequential `keras.Model`.

    Returns:
        A functional `keras.Model`.

    A nested *subclassed* model has no graph to inline: it stays one opaque
    layer (its convolutions are not cut points and not counted).

    Raises:
        ValueError: a nested model is called with extra arguments, or two
            different layers share a name.

    Example:

    >>> inner = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Conv2D(4, 3)])
    >>> x = keras.Input((8, 8, 3))
    >>> outer = keras.Model(x, keras.layers.Conv2D(2, 3)(inner(x)))
    >>> [type(layer).__name__ for layer in flatten_nested(outer).layers]
    ['InputLayer', 'Conv2D', 'Conv2D']
    """
    cached = _FLAT.get(model)
    if cached is not None:
        return cached
    inputs, outputs, nodes = _graph(model)
    if not any(_nested_graph(node.operation) is not None for node in nodes):
        return model
    tensors = {id(t): t for t in inputs}
    _run_nodes(nodes, tensors)
    flat = keras.Model(
        inputs,
        [tensors[id(t)] for t in outputs] if len(outputs) > 1 else tensors[id(outputs[0])],
        name=f"{model.name}_flat",
    )
    names = {}
    for layer in flat.layers:
        other = names.setdefault(layer.name, layer)
        if other is not layer:
            raise ValueError(
                f"Two different layers are named {layer.name!r} in model {model.name!r} "
                "and its nested models; layer dropping needs unique layer names. "
                f"Received: model={model.name!r}"
            )
    _FLAT[model] = flat
    return flat


def _cut_tensors(flat, name):
    """The tensors crossing the cut after layer `name` of the flat model."""
    cuts = _cuts(flat)
    if name not in cuts:
        names = {node.operation.name for node in _graph(flat)[2]}
        what = "the input or output layer" if name in names else "not a layer"
        raise ValueError(
            f"Layer {name!r} is not a cut point of model {flat.name!r} ({what}). "
            f"Valid cut points: {', '.join(cuts)}. Received: cut={name!r}"
        )
    return cuts[name]


def _one_or_list(tensors):
    return tensors[0] if len(tensors) == 1 else list(tensors)


def sub_model(model, start, end, name=None):
    """A model sharing `model`'s layers from the cut after `start` to the cut after `end`.

    Args:
        model: the functional model.
        start: layer name (the tensors crossing the cut after it are the
            sub-model's inputs) or None for the model's input.
        end: layer name (the tensors crossing the cut after it are the
            sub-model's outputs) or None for the model's output.
        name: the sub-model's name. Defaults to `"{model}_{start}_{end}"`.

    Returns:
        A functional `keras.Model` whose layers are the same objects as
        `model`'s. Its inputs (outputs) are one tensor when one tensor
        crosses the cut, else a list (`CutPlan.crossing` gives the order).
        Sub-models between consecutive cuts compose:
        `sub_model(m, a, b)(sub_model(m, None, a)(x)) == sub_model(m, None, b)(x)`.

    Raises:
        ValueError: `start` or `end` is not a cut point.
    """
    model = flatten_nested(model)
    inputs = list(model.inputs[:1]) if start is None else _cut_tensors(model, start)
    outputs = list(model.outputs[:1]) if end is None else _cut_tensors(model, end)
    name = name or f"{model.name}_{start or 'input'}_to_{end or 'output'}"
    if start is not None and any(t is i for t in outputs for i in inputs):
        inputs, outputs = _replay(model, start, end, inputs, outputs)
    return keras.Model(_one_or_list(inputs), _one_or_list(outputs), name=name)


def _replay(flat, start, end, inputs, outputs):
    """New `keras.Input`s for `inputs` and the nodes between the cuts called again on them.

    Used when a tensor crosses both cuts (a shortcut passing through): keras'
    own cloning of intermediate inputs (`keras.Model(intermediate, ...)`) does
    not support an output that is also an input. The same layer objects are
    called again (as keras' cloning does), so variables stay shared.
    """
    nodes = _graph(flat)[2]
    position = {node.operation.name: i for i, node in enumerate(nodes)}
    first = position[start] + 1
    last = len(nodes) - 1 if end is None else position[end]
    tensors, new_inputs = {}, []
    for tensor in inputs:
        new = keras.Input(
            batch_shape=tensor.shape, dtype=tensor.dtype, name=f"{_tensor_name(tensor)}_cut"
        )
        tensors[id(tensor)] = new
        new_inputs.append(new)
    for node in nodes[first : last + 1]:
        args, kwargs = node.arguments.fill_in(tensors)
        results = keras.tree.flatten(node.operation(*args, **kwargs))
        for tensor, value in zip(keras.tree.flatten(node.outputs), results, strict=True):
            tensors[id(tensor)] = value
    return new_inputs, [tensors[id(t)] for t in outputs]


def split_model(model, cut):
    """Splits `model` after layer `cut` into `(tail, head)` sharing its layers.

    Args:
        model: a functional or Sequential model with one input and output.
        cut: name of a layer listed in `conv_cut_points(model).valid`.

    Returns:
        `(tail, head)`: `tail` maps the model input to the tensors crossing
        the cut (one tensor, or a list: `CutPlan.crossing[cut]`), `head`
        maps them to the model output; `head(tail(x)) == model(x)`.

    Raises:
        ValueError: `cut` is not a cut point.
    """
    conv_cut_points(model)  # the model checks
    return (
        sub_model(model, None, cut, name=f"{model.name}_tail"),
        sub_model(model, cut, None, name=f"{model.name}_head"),
    )
