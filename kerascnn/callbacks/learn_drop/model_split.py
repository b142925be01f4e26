"""Single-tensor cut points of a functional model, and tail/head sub-models.

A *cut point* is a layer whose (single) output tensor is the only tensor that
crosses from the part of the graph that computes it (the *tail*: the layer
and all its ancestors) to the rest (the *head*). Cutting there splits the
model into `tail(x) -> features` and `head(features) -> outputs` with
`head(tail(x)) == model(x)`. Both sub-models share the original layer objects
(and so their variables) with the model: training the head trains `model`.

For kerascnn zoo models this gives the cut points of the Learn&Drop paper:
ResNet at residual-block boundaries (inside a block the block input still
feeds the skip path, so no single tensor crosses) and VGG after every
conv/BN/ReLU(/pool) group. A user's functional or Sequential model whose
convolutions form a chain works the same way; a model where a tensor skips
over every possible cut (a dense connection to the end, several inputs) gets a
`ValueError` naming the layer.

Nested functional (or Sequential) models used as layers, such as a
`keras.applications` backbone inside a user's model, are inlined first
(`flatten_nested`): the cut points reach inside them. A nested subclassed
model stays one opaque layer (no cut inside it).

`conv_cut_points(model)` maps "the first k convolutions are in the tail" to
the last layer at which the model can be cut with exactly those k
convolutions in the tail, so that a cut after a conv also takes its BN,
activation and pooling.

Example:

>>> from kerascnn import zoo
>>> m = zoo.resnet18(input_shape=(16, 16, 3), width_multiplier=0.125)
>>> plan = conv_cut_points(m)
>>> plan.cuts[1], plan.cuts[4]
('stem_conv1_relu', 'stage1_block1_out')
>>> tail, head = split_model(m, "stage1_block1_out")
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
            first `k` convolutions are in the tail (the last such layer in
            topological order, so a conv's BN/activation/pool go with it).
            Only `k < len(convs)` (the head keeps at least one convolution).
        valid: names of all layers after which a single-tensor cut exists.
        blocked: `{conv_name: reason}` for convolutions after which no cut
            exists before the next convolution, with the tensor that crosses.
    """

    convs: list
    cuts: dict
    valid: list
    blocked: dict

    def round_down(self, k, minimum=0):
        """The largest cuttable `k' <= k` with `k' > minimum`, or None."""
        best = None
        for key in self.cuts:
            if minimum < key <= k and (best is None or key > best):
                best = key
        return best


def conv_cut_points(model):
    """Computes the single-tensor cut points of `model` (see the module doc).

    Args:
        model: a built functional or Sequential `keras.Model` with one input
            and one output.

    Returns:
        A `CutPlan`.

    Raises:
        ValueError: the model is not functional, has several inputs or
            outputs, has fewer than two convolutions, or admits no cut that
            leaves a convolution in the head; the message names the first
            convolution after which no single tensor crosses, and the layer
            that receives the other tensor.
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
    consumers = {}  # id(tensor) -> list of consumer nodes
    for node in nodes:
        for tensor in node.arguments.keras_tensors:
            consumers.setdefault(id(tensor), []).append(node)
    output_ids = {id(t) for t in outputs}
    position = {id(node): i for i, node in enumerate(nodes)}
    ancestors = _ancestors(nodes, position)
    valid, crossing, tail_convs = [], {}, {}
    for i, node in enumerate(nodes):
        name = node.operation.name
        if isinstance(node.operation, keras.layers.InputLayer) or len(node.outputs) != 1:
            continue
        if id(node.outputs[0]) in output_ids:
            continue
        bad = _crossing_tensor(i, nodes, ancestors[i], consumers, position)
        if bad:
            crossing[name] = bad
            continue
        valid.append(name)
        tail_convs[name] = sum(
            1 for j in ancestors[i] if isinstance(nodes[j].operation, CONV_CLASSES)
        )
    cuts = {}
    for name in valid:  # topological order: later cuts overwrite earlier ones
        k = tail_convs[name]
        if 0 < k < len(convs):
            cuts[k] = name
    blocked = _blocked_convs(nodes, convs, cuts, crossing)
    if not cuts:
        first = next(iter(blocked))
        raise ValueError(
            f"Model {model.name!r} has no single-tensor cut point that leaves a "
            f"convolution in the head: after layer {first!r}, {blocked[first]}. "
            "Layer dropping needs a model whose convolutions form a chain (or "
            "blocks with one tensor between them)."
        )
    return CutPlan(convs=convs, cuts=cuts, valid=valid, blocked=blocked)


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


def _ancestors(nodes, position):
    """The ancestors of each node (node positions, the node included), in one pass."""
    ancestors = []
    for node in nodes:
        acc = {position[id(node)]}
        for tensor in node.arguments.keras_tensors:
            acc |= ancestors[position[id(_producer_node(tensor))]]
        ancestors.append(acc)
    return ancestors


def _crossing_tensor(i, nodes, tail, consumers, position):
    """`(producer, consumer)` of a tensor other than node `i`'s output leaving `tail`, or None."""
    for j in sorted(tail):
        if j == i:
            continue
        for tensor in nodes[j].outputs:
            for consumer in consumers.get(id(tensor), []):
                if position[id(consumer)] not in tail:
                    return nodes[j].operation.name, consumer.operation.name
    return None


def _blocked_convs(nodes, convs, cuts, crossing):
    """`{conv: reason}` of the convolutions (not the last) after which no cut exists."""
    blocked = {}
    conv_index = {c: i for i, c in enumerate(convs)}
    for node in nodes:
        name = node.operation.name
        if name in conv_index and (conv_index[name] + 1) not in cuts:
            if conv_index[name] + 1 < len(convs):
                reason = crossing.get(name)
                blocked[name] = (
                    f"the output of {reason[0]!r} is also used by {reason[1]!r}"
                    if reason
                    else "no single tensor crosses before the next convolution"
                )
    return blocked


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


def _output_of(model, name):
    for node in _graph(model)[2]:
        if node.operation.name == name:
            return node.outputs[0]
    raise ValueError(f"No layer named {name!r} in model {model.name!r}. Received: cut={name!r}")


def sub_model(model, start, end, name=None):
    """A model sharing `model`'s layers from `start`'s output to `end`'s output.

    Args:
        model: the functional model.
        start: layer name (its output is the sub-model's input) or None for
            the model's input.
        end: layer name (its output is the sub-model's output) or None for
            the model's output.
        name: the sub-model's name. Defaults to `"{model}_{start}_{end}"`.

    Returns:
        A functional `keras.Model` whose layers are the same objects as
        `model`'s.
    """
    model = flatten_nested(model)
    inputs = model.inputs[0] if start is None else _output_of(model, start)
    outputs = model.outputs[0] if end is None else _output_of(model, end)
    name = name or f"{model.name}_{start or 'input'}_to_{end or 'output'}"
    return keras.Model(inputs, outputs, name=name)


def split_model(model, cut):
    """Splits `model` after layer `cut` into `(tail, head)` sharing its layers.

    Args:
        model: a functional or Sequential model with one input and output.
        cut: name of a layer listed in `conv_cut_points(model).valid`.

    Returns:
        `(tail, head)`: `tail` maps the model input to `cut`'s output, `head`
        maps that tensor to the model output; `head(tail(x)) == model(x)`.

    Raises:
        ValueError: `cut` is not a single-tensor cut point.
    """
    plan = conv_cut_points(model)
    if cut not in plan.valid:
        raise ValueError(
            f"Layer {cut!r} is not a single-tensor cut point of model {model.name!r}. "
            f"Valid cut points: {', '.join(plan.valid)}. Received: cut={cut!r}"
        )
    return (
        sub_model(model, None, cut, name=f"{model.name}_tail"),
        sub_model(model, cut, None, name=f"{model.name}_head"),
    )
