"""Per-layer statistics accumulated inside the compiled training step.

This is the one mechanism that every kerascnn callback needing per-layer
statistics uses (`StabilityStopping`, `LayerMetrics`, and the gradient score of
layer dropping). It adds no forward pass and no per-batch host round trip: the
statistics are reductions of tensors that the training step computes anyway,
accumulated into non-trainable `tf.Variable`s that callbacks read once per
epoch (or once per `update_freq` window).

How it hooks into `fit()` (TensorFlow backend):

* **Activations.** The `call` of every monitored layer is shadowed by an
  instance attribute that calls the original `call` and, only while the
  training step is being traced, records the output's moments in one fused
  pass: `reduce_sum(x)` and `2 * l2_loss(x)`, two float32 reductions that
  write no temporary of the tensor's size (bfloat16/float16 outputs are cast
  to float32 first), finished in float64 (`m2 = s2 - s1**2 / n`). When that
  difference cancels (`s2 > CANCELLATION_LIMIT * m2`, a mean large against
  the spread) a `tf.cond` branch recomputes `m2` exactly around the step's
  mean, so the std stays within ~1e-7 of `np.std(ddof=1)` in float64.
  Outside the training step (evaluate, predict, symbolic calls) the wrapper
  is a pass-through. A layer called several times in one step contributes one
  statistic over all its outputs.
* **Training step.** `model.train_step` is shadowed the same way: it traces
  the original `train_step` with this collector active, then turns the
  recorded moments into one statistic per layer and step (the unbiased
  standard deviation and the mean of the whole tensor, batch x H x W x C)
  and adds them, with the gradient norms of the step, to ONE float64
  accumulator vector with ONE `assign_add`. Under a `tf.distribute` strategy
  with several replicas the moments are combined exactly over replicas (one
  all-reduce SUM of a `[replicas, 3, layers]` array that gathers every
  replica's moments, then Chan's parallel formula), so the statistic is that
  of the global batch.
* **Gradients.** The (inner, for `LossScaleOptimizer`) optimizer's
  `_all_reduce_sum_gradients` is shadowed: its output is the gradients that
  the optimizer applies, all-reduced over replicas and unscaled under mixed
  precision; the requested gradient statistics are accumulated from them
  (per-layer norms in the step's vector update, per-weight sums with one
  `assign_add` per weight).
* Installing or changing the hooks forces Keras to rebuild the train function
  (`model.make_train_function(force=True)`; keras' `fit()` calls it before
  `on_train_begin`, then looks `model.train_function` up at every step), and
  uninstalling resets `model.train_function = None` so the next `fit()`
  builds a clean one. Hooks are set with `object.__setattr__`, so Keras'
  tracking never sees them and the model saves and loads unchanged; the
  accumulators belong to the collector, not to the model.

* **Following the model through drops.** `LayerDropping` and
  `LayerFreezing` train a *head* sub-model (sharing `model`'s layers and
  optimizer) instead of `model` once they drop or freeze a prefix. They call
  `follow(head)`: the head's `train_step` is hooked the same way, so monitored
  layers in the head keep producing per-step statistics from the step that
  actually runs. Monitored layers of the dropped / frozen prefix are passed to
  `freeze_layers(names, epoch)`: from then on they are not recorded (the tail
  runs in inference mode, or not at all on a feature cache) and `read()`
  reports them *stable*, with the std/mean of their last trained epoch
  (logged once), so `stability/<layer>` stays finite.

Consumer API (for callbacks):

```python
stats = LayerStatistics.acquire(
    model, owner=self,
    activations=["stage1_pool"],          # layers whose output std/mean to track
    gradients=["stage1_conv1_conv"],      # layers whose gradients to track
    gradient_stats=("sum", "abs_sum"),    # any of GRADIENT_STATS
)
stats.begin_epoch(epoch)                  # in on_epoch_begin: resets once per epoch
result = stats.read()                     # in on_epoch_end: one device->host read
result.activations["stage1_pool"]["std"]  # mean over the epoch's steps
result.gradients["stage1_conv1_conv"]["sum"]  # list of arrays, one per weight
stats.release(self)                       # in on_train_end: last one uninstalls
# Learn&Drop-style callbacks only:
stats.follow(head)                        # the head's train_step now trains the model
stats.freeze_layers(["stage1_pool"], 3)   # dropped at the end of epoch 3: report stable
```

Several consumers share one collector per model (the union of their
requests); the accumulators hold totals since the last `begin_epoch`, and
`read()` results are cached until the next step runs or the next reset.
"""

from __future__ import annotations

import dataclasses
import functools
import re
import threading
import weakref

import keras
import numpy as np
import tensorflow as tf

from kerascnn._keras_compat import in_stateless_scope, print_msg
from kerascnn.callbacks.learn_drop.model_split import CONV_CLASSES

GRADIENT_STATS = ("sum", "abs_sum", "norm")
"""Gradient statistics a consumer may request.

* `"sum"`: per weight element, the sum over steps of the gradient (one array
  per trainable weight of the layer, same shape as the weight).
* `"abs_sum"`: per weight element, the sum over steps of |gradient|.
* `"norm"`: per layer, the mean over steps of the L2 norm of the layer's
  gradient (all its trainable weights together).
"""

_STAGE_PREFIX = re.compile(r"^(stem\d*|stage\d+)_")

_STATE = threading.local()


def _active_record():
    stack = getattr(_STATE, "stack", None)
    return stack[-1] if stack else None


# --------------------------------------------------------------------------
# Layer discovery.
# --------------------------------------------------------------------------
def iter_layers(model):
    """Yields the layers of `model`, descending into nested models, in order."""
    seen = set()

    def walk(m):
        for layer in m.layers:
            if id(layer) in seen:
                continue
            seen.add(id(layer))
            yield layer
            if isinstance(layer, keras.Model):
                yield from walk(layer)

    yield from walk(model)


def find_layer(model, name):
    """Returns the layer called `name` in `model` or a nested model.

    Raises:
        ValueError: no such layer; the message lists the available names.
    """
    for layer in iter_layers(model):
        if layer.name == name:
            return layer
    names = [layer.name for layer in iter_layers(model)]
    raise ValueError(
        f"No layer named {name!r} in model {model.name!r}. Available layers: "
        f"{', '.join(names)}. Received: layers={name!r}"
    )


def _global_pool_of(layers, name):
    """Name of the global pooling layer that consumes layer `name`'s output, or None."""
    source = next(layer for layer in layers if layer.name == name)
    for layer in layers:
        if not isinstance(
            layer, (keras.layers.GlobalAveragePooling2D, keras.layers.GlobalMaxPooling2D)
        ):
            continue
        try:
            if layer.input is source.output:
                return layer.name
        except (AttributeError, ValueError):  # several inbound nodes: not ours
            continue
    return None


def default_monitored_layers(model):
    """Names of the layers whose outputs are monitored by default.

    For kerascnn zoo models (every convolution named `stem*_...` or
    `stageN_...`, see `kerascnn.builder`) these are the stage outputs: the
    last layer of each stage prefix in `model.layers` order (for ResNet the
    last block's `_out` ReLU, for VGG the stage's `_pool`), as in
    `kerascnn.builder.stage_output_names(spec)`, except that the last one is
    replaced by the global pooling layer that consumes it when the model has
    one (`head_gap`, or `avg_pool` / `max_pool` without top): the tensor the
    classifier sees. That is what the stability-stopping paper monitors: its
    ResNet-18 "layer 18" (Sec. 5.1, Figure 5: "an average pool function used
    in the last layer") and its reference code's `avg_pool2d(layer4, 4)`;
    its VGG-16 and CNN end with the flattened last pooling, which for VGG is
    our `stage5_pool`. For any other model, its convolution layers (Conv,
    DepthwiseConv, SeparableConv, ConvTranspose). Nested models are searched
    too.

    Args:
        model: a built `keras.Model`.

    Returns:
        A list of layer names, possibly empty.

    Example:

    >>> from kerascnn import zoo
    >>> m = zoo.resnet18(input_shape=(16, 16, 3), width_multiplier=0.125)
    >>> default_monitored_layers(m)[:2]
    ['stem_conv1_relu', 'stage1_block2_out']
    >>> default_monitored_layers(m)[-1]
    'head_gap'
    """
    layers = list(iter_layers(model))
    convs = [layer for layer in layers if isinstance(layer, CONV_CLASSES)]
    if convs and all(_STAGE_PREFIX.match(layer.name) for layer in convs):
        last = {}
        for layer in layers:
            match = _STAGE_PREFIX.match(layer.name)
            if match:
                last[match.group(1)] = layer.name
        names = list(last.values())
        pooled = _global_pool_of(layers, names[-1])
        if pooled is not None:
            names[-1] = pooled
        return names
    return [layer.name for layer in convs]


def resolve_layers(model, layers, argument="layers"):
    """Turns `"auto"` or a list of names into a list of distinct layer names."""
    if isinstance(layers, str) and layers == "auto":
        names = default_monitored_layers(model)
        if not names:
            raise ValueError(
                f"Model {model.name!r} has nothing to monitor: no convolution "
                "layer and no kerascnn stage output. Pass layer names "
                f"explicitly. Received: {argument}='auto'"
            )
        return names
    if isinstance(layers, str):
        layers = [layers]
    names = []
    for name in layers:
        if not isinstance(name, str):
            raise TypeError(
                f"{argument} must be 'auto' or a list of layer names. "
                f"Received: {argument}={layers!r}"
            )
        find_layer(model, name)
        if name not in names:
            names.append(name)
    if not names:
        raise ValueError(
            f"{argument} must name at least one layer. Received: {argument}={layers!r}"
        )
    return names


# --------------------------------------------------------------------------
# Trace-time recording.
# --------------------------------------------------------------------------
class _StepRecord:
    """What one training step records while it is traced.

    `moments` maps a monitored layer's index to its `(n, s1, m2)` (float64
    scalars: element count, sum, sum of squared deviations); `pending` holds
    `(indices, values)` pieces of the accumulator update that the gradient
    hook computed in the step's own graph, added by the step's one update.
    """

    def __init__(self, collector):
        self.collector = collector
        self.graph = tf.compat.v1.get_default_graph()
        self.moments = {}
        self.pending = []

    def add(self, index, outputs):
        tensor = tf.nest.flatten(outputs)[0]
        n, s1, m2 = _moments(tensor)
        if index in self.moments:  # a layer called twice: Chan's exact merge
            n0, s10, m20 = self.moments[index]
            total = n0 + n
            delta = _div(s1, n) - _div(s10, n0)
            m2 = m20 + m2 + tf.square(delta) * _div(n0 * n, total)
            n, s1 = total, s10 + s1
        self.moments[index] = (n, s1, m2)


CANCELLATION_LIMIT = 4.0
"""When `sum(x**2) > CANCELLATION_LIMIT * sum((x - mean)**2)` the one-pass
moments lose too much to cancellation (relative error of the std about
`3e-8 * limit`) and that tensor's step takes the exact shifted two-pass path."""


def _div(a, b):
    return tf.math.divide_no_nan(a, b)


def _moments(tensor):
    """`(n, s1, m2)` of the whole tensor as float64 scalars, fused one-pass.

    `s1 = reduce_sum(x)` and `s2 = 2 * l2_loss(x)` are two float32 reductions
    that read `x` and write nothing of its size; `m2 = s2 - s1**2 / n` is
    formed in float64. That cancels when `mean**2 >> var` (the relative
    error of `m2` is about `eps32 * s2 / m2`), so when `s2 > CANCELLATION_LIMIT
    * m2` a `tf.cond` branch recomputes it exactly around the step's mean
    `c` (`d = x - c`, then the same two reductions of `d`): typical ReLU / BN
    outputs (`s2 / m2` about 1-3) never pay for that temporary.
    """
    x = tf.stop_gradient(tf.cast(tensor, tf.float32))
    n = tf.cast(tf.size(x), tf.float64)
    s1_32 = tf.reduce_sum(x)
    s1 = tf.cast(s1_32, tf.float64)
    s2 = tf.cast(2.0 * tf.nn.l2_loss(x), tf.float64)
    m2 = s2 - _div(tf.square(s1), n)

    def shifted():
        c = tf.math.divide_no_nan(s1_32, tf.cast(tf.size(x), tf.float32))
        d = x - c
        d1 = tf.cast(tf.reduce_sum(d), tf.float64)
        d2 = tf.cast(2.0 * tf.nn.l2_loss(d), tf.float64)
        # The sum too, from the shift: exact enough for the replica merge.
        return n * tf.cast(c, tf.float64) + d1, d2 - _div(tf.square(d1), n)

    s1, m2 = tf.cond(s2 > CANCELLATION_LIMIT * m2, shifted, lambda: (s1, m2))
    return n, s1, tf.maximum(m2, 0.0)


def _combine_over_replicas(n, s1, m2):
    """Exact moments of the global batch from per-replica vectors (float64).

    One all-reduce (SUM, so any strategy, multi-worker included): each replica
    writes its `(n, s1, m2)` into its own row of a `[replicas, 3, k]` array of
    zeros, the sum gathers every replica's moments, and each replica merges
    them with Chan's formula, `m2 = sum(m2_r) + sum(n_r * (mean_r - mean)**2)`,
    which needs no cancelling difference of large sums.
    """
    ctx = tf.distribute.get_replica_context()
    if ctx is None or ctx.num_replicas_in_sync == 1:
        return n, s1, m2
    replicas = ctx.num_replicas_in_sync
    slot = tf.one_hot(ctx.replica_id_in_sync_group, replicas, dtype=tf.float64)
    local = tf.stack([n, s1, m2])
    gathered = ctx.all_reduce(tf.distribute.ReduceOp.SUM, slot[:, None, None] * local[None])
    n_r, s1_r, m2_r = tf.unstack(gathered, axis=1)
    total_n = tf.reduce_sum(n_r, axis=0)
    total_s1 = tf.reduce_sum(s1_r, axis=0)
    spread = n_r * tf.square(_div(s1_r, n_r) - _div(total_s1, total_n))
    return total_n, total_s1, tf.reduce_sum(m2_r + spread, axis=0)


@dataclasses.dataclass
class LayerStatisticsResult:
    """What `LayerStatistics.read()` returns (plain numpy/python values).

    Attributes:
        activations: `{layer: {"std": float, "mean": float, "steps": int}}`,
            means over the steps since the last reset of the per-step
            unbiased std and mean of the layer's whole output tensor;
            `nan` when no step ran.
        gradients: `{layer: {"sum": [array], "abs_sum": [array], "norm": float,
            "steps": int}}` with the requested gradient statistics.
        sums: raw accumulator totals (float64), for consumers that
            difference windows: `{"act_std": array[L], "act_mean": array[L],
            "act_steps": array[L], "grad_norm": array[G], "grad_steps":
            float}`, index order of `LayerStatistics.activation_layers` /
            `gradient_layers`.
        frozen: `{layer: {"std": float, "mean": float, "epoch": int}}` for the
            monitored layers of a dropped / frozen prefix (see
            `LayerStatistics.freeze_layers`); `activations` already reports
            these values for them.
    """

    activations: dict
    gradients: dict
    sums: dict
    frozen: dict = dataclasses.field(default_factory=dict)


class LayerStatistics:
    """Per-layer statistics of one model, accumulated in its training step.

    Get one with `LayerStatistics.acquire(model, owner, ...)` (one collector
    per model, shared by all consumers); see the module docstring for the
    design and the consumer API.

    Args:
        model: the `keras.Model` being trained (TensorFlow backend).
    """

    _registry = weakref.WeakKeyDictionary()

    def __init__(self, model):
        if keras.backend.backend() != "tensorflow":
            raise RuntimeError(
                "LayerStatistics needs the TensorFlow backend. "
                f"Received: backend={keras.backend.backend()!r}"
            )
        self._model_ref = weakref.ref(model)
        self._requests = {}  # owner id -> (weakref or None, activations, gradients, stats)
        self.activation_layers = []
        self.gradient_layers = []
        self.gradient_stats = ()
        self._installed = False
        self._hooked_layers = []
        self._hooked_optimizer = None
        self._variables = {}
        self._reset_fn = self._read_fn = None
        self._var_slots = {}
        self._epoch = None
        self._cache = None
        self._saved_train_steps = []  # (weakref to model, its own train_step or None)
        self._follow_ref = None  # weakref to the head whose train_step runs now
        self._frozen = {}  # layer -> {"std", "mean", "epoch"}
        self._freeze_pending = {}  # layer -> (epoch, reason): value not known yet
        self._last_values = {}  # layer -> (std, mean) of the last epoch with steps

    # ------------------------------------------------------------------
    # Consumers.
    # ------------------------------------------------------------------
    @classmethod
    def get(cls, model):
        """The collector attached to `model`, or None."""
        return cls._registry.get(model)

    @classmethod
    def acquire(cls, model, owner, *, activations=(), gradients=(), gradient_stats=()):
        """Registers `owner`'s request and (re)installs the hooks if needed.

        Args:
            model: the model being trained.
            owner: the consumer (usually the callback); one request per owner,
                a second call replaces the first.
            activations: layer names whose output statistics to accumulate.
            gradients: layer names whose gradient statistics to accumulate.
            gradient_stats: subset of `GRADIENT_STATS`.

        Returns:
            The model's `LayerStatistics`.
        """
        for stat in gradient_stats:
            if stat not in GRADIENT_STATS:
                raise ValueError(
                    f"Unknown gradient statistic {stat!r}; expected one of "
                    f"{GRADIENT_STATS}. Received: gradient_stats={gradient_stats!r}"
                )
        for name in list(activations) + list(gradients):
            find_layer(model, name)
        collector = cls._registry.get(model)
        if collector is None:
            collector = cls(model)
            cls._registry[model] = collector
        # Requests of owners that died without releasing (a `fit` interrupted
        # by an exception skips `on_train_end`) are dropped, and so is the
        # state they left (followed head, frozen layers).
        dead = [key for key, request in collector._requests.items() if request[0]() is None]
        for key in dead:
            del collector._requests[key]
        if dead:
            collector.follow(None)
            collector._frozen, collector._freeze_pending = {}, {}
        try:
            ref = weakref.ref(owner)
        except TypeError:
            ref = lambda owner=owner: owner  # noqa: E731 (not weak-referenceable)
        collector._requests[id(owner)] = (
            ref,
            tuple(activations),
            tuple(gradients),
            tuple(gradient_stats),
        )
        collector._refresh()
        return collector

    def release(self, owner):
        """Drops `owner`'s request; the last release uninstalls everything."""
        self._requests.pop(id(owner), None)
        if self._requests:
            self._refresh()
        else:
            self.uninstall()

    @classmethod
    def remove(cls, model):
        """Uninstalls every hook from `model` (e.g. after an interrupted fit)."""
        collector = cls._registry.get(model)
        if collector is not None:
            collector._requests.clear()
            collector.uninstall()

    def begin_epoch(self, epoch):
        """Resets the accumulators, once per `epoch` whoever calls first."""
        if self._epoch == epoch:
            return
        if self._installed and self._epoch is not None:
            self.read()  # remembers the finished epoch's values (cached read)
        self._epoch = epoch
        self.reset()

    def follow(self, step_model):
        """Hooks `step_model`'s `train_step` too (None: stop following).

        `step_model` is a model whose training step trains `model`'s layers
        (the Learn&Drop head); its forward pass is then recorded like the
        model's own. Call before its train function is traced.
        """
        current = self._follow_ref() if self._follow_ref is not None else None
        if current is step_model:
            return
        if current is not None:
            self._unhook_train_step(current)
        self._follow_ref = None if step_model is None else weakref.ref(step_model)
        if step_model is not None and self._installed:
            self._hook_train_step(step_model)

    def wrap_forward(self, fn):
        """`fn`, recording the monitored layers it runs like a training step does.

        For a forward pass outside any hooked train step that runs layers of
        the model (Learn&Drop's tail pass building its feature cache): call
        the result inside the traced function. Monitored layers not frozen
        (e.g. a resumed run's dropped prefix without a value yet) are
        accumulated as in a step; gradients are not involved. Adds nothing to
        the graph when no such layer runs.

        Args:
            fn: the forward function.

        Returns:
            The wrapped function.
        """
        collector_ref = weakref.ref(self)

        @functools.wraps(fn)
        def forward(*args, **kwargs):
            collector = collector_ref()
            if collector is None or not collector._installed:
                return fn(*args, **kwargs)
            return collector._recorded(fn, *args, **kwargs)

        return forward

    def freeze_layers(self, names, epoch, reason="dropped"):
        """Reports the monitored layers among `names` stable from now on.

        Their value is that of the epoch whose accumulators are current (the
        decision epoch, when called from `on_epoch_end`), or else of the last
        epoch in which they were recorded; a layer never recorded keeps being
        recorded until its first epoch end, then is frozen with that value.
        They are no longer recorded in train steps traced after this call.

        Args:
            names: layer names (of the dropped / frozen prefix); names that
                are not monitored are ignored.
            epoch: the 0-based epoch after which they stopped training.
            reason: word for the log line ("dropped", "frozen").
        """
        wanted = [n for n in names if n in self.activation_layers and n not in self._frozen]
        if not wanted:
            return
        current = self.read().activations if self._installed else {}
        done = []
        for name in wanted:
            entry = current.get(name) or {}
            if entry.get("steps"):
                value = (entry["std"], entry["mean"])
            else:
                value = self._last_values.get(name)
            if value is None:
                self._freeze_pending[name] = (epoch, reason)
                continue
            self._frozen[name] = {"std": value[0], "mean": value[1], "epoch": int(epoch)}
            done.append(name)
        self._cache = None
        if done:
            print_msg(
                f"stability: layers {done} {reason} at epoch {epoch + 1}, reported stable "
                "(std/mean of their last trained epoch)"
            )

    @property
    def frozen_layers(self):
        """`{layer: {"std", "mean", "epoch"}}` of the layers reported stable."""
        return dict(self._frozen)

    def reset(self):
        """Sets every accumulator to zero (one op; one traced call when many)."""
        variables = list(self._variables.values())
        if len(variables) == 1:
            variables[0].assign(tf.zeros(variables[0].shape, variables[0].dtype))
        elif variables:
            if self._reset_fn is None:

                def reset_all():
                    for var in variables:
                        var.assign(tf.zeros(var.shape, var.dtype))

                self._reset_fn = tf.function(reset_all, autograph=False)
            self._reset_fn()
        self._cache = None

    def _read_values(self):
        """`{key: array}` of every accumulator, from one device call."""
        keys = list(self._variables)
        if len(keys) <= 1:
            return {key: np.asarray(self._variables[key].numpy()) for key in keys}
        if self._read_fn is None:
            variables = [self._variables[key] for key in keys]
            self._read_fn = tf.function(
                lambda: [var.read_value() for var in variables], autograph=False
            )
        return {key: np.asarray(value) for key, value in zip(keys, self._read_fn())}

    def _recorded(self, fn, *args, **kwargs):
        """Traces `fn` with a fresh step record active, then adds it (one update)."""
        record = _StepRecord(self)
        stack = getattr(_STATE, "stack", None)
        if stack is None:
            stack = _STATE.stack = []
        stack.append(record)
        try:
            outputs = fn(*args, **kwargs)
        finally:
            stack.pop()
        self._accumulate(record)
        return outputs

    def read(self):
        """Reads the accumulators once and returns a `LayerStatisticsResult`."""
        model = self._model_ref()
        step = None
        if model is not None and model.optimizer is not None:
            step = int(model.optimizer.iterations.numpy())
        if self._cache is not None and self._cache[0] == step:
            return self._cache[1]
        result = self._assemble(self._read_values())
        for name, entry in result.activations.items():
            if entry["steps"] and name not in self._frozen:
                self._last_values[name] = (entry["std"], entry["mean"])
        pending = [n for n in self._freeze_pending if n in self._last_values]
        if pending:
            epoch = self._freeze_pending[pending[0]][0]
            for name in pending:
                self._freeze_pending.pop(name)
                std, mean = self._last_values[name]
                self._frozen[name] = {"std": std, "mean": mean, "epoch": int(epoch)}
            self._apply_frozen(result)
            print_msg(
                f"stability: layers {pending} not trained since epoch {epoch + 1} "
                "(no value before), reported stable from now on"
            )
        self._cache = (step, result)
        return result

    def _apply_frozen(self, result):
        for name, frozen in self._frozen.items():
            if name in result.activations:
                result.activations[name]["std"] = frozen["std"]
                result.activations[name]["mean"] = frozen["mean"]
                result.activations[name]["frozen"] = True
        result.frozen = {n: dict(v) for n, v in self._frozen.items()}

    # ------------------------------------------------------------------
    # Installation.
    # ------------------------------------------------------------------
    def _refresh(self):
        activations, gradients, stats = [], [], []
        for _, acts, grads, gstats in self._requests.values():
            activations += [n for n in acts if n not in activations]
            gradients += [n for n in grads if n not in gradients]
            stats += [s for s in gstats if s not in stats]
        wanted = (activations, gradients, tuple(s for s in GRADIENT_STATS if s in stats))
        current = (self.activation_layers, self.gradient_layers, self.gradient_stats)
        if self._installed and wanted == current:
            return
        self.uninstall(keep_registry=True)
        self.activation_layers, self.gradient_layers, self.gradient_stats = wanted
        self._install()

    def _make_variables(self, model):
        """The accumulators: one float64 vector, plus per-weight gradient sums.

        The vector holds, in this order, the per-layer sums over steps of
        the activation std, mean and step count (`L` each), the per-layer
        gradient norms (`G`) and the gradient step count (1); one
        `assign_add` per step updates all of it.
        """
        n_act, n_grad = len(self.activation_layers), len(self.gradient_layers)
        self._sizes = (n_act, n_grad)
        variables = {}

        def make(name, shape, dtype):
            # All per-step values are identical on every replica once
            # combined, so the first replica's copy is the global total.
            return tf.Variable(
                tf.zeros(shape, dtype),
                trainable=False,
                name=f"kerascnn_layer_stats_{name}",
                synchronization=tf.VariableSynchronization.ON_READ,
                aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA,
            )

        with model.distribute_strategy.scope():
            variables["acc"] = make("acc", (3 * n_act + n_grad + 1,), tf.float64)
            for li, name in enumerate(self.gradient_layers):
                layer = find_layer(model, name)
                for wi, weight in enumerate(layer.trainable_weights):
                    for stat in ("sum", "abs_sum"):
                        if stat in self.gradient_stats:
                            key = f"grad_{stat}/{li}/{wi}"
                            variables[key] = make(
                                key.replace("/", "_"), tuple(weight.shape), tf.float32
                            )
        return variables

    def _install(self):
        model = self._model_ref()
        self._variables = self._make_variables(model)
        self._reset_fn = self._read_fn = None
        self._var_slots = {}
        for li, name in enumerate(self.gradient_layers):
            for wi, weight in enumerate(find_layer(model, name).trainable_weights):
                for ref in (getattr(weight, "_value", None), weight):
                    if ref is not None:
                        self._var_slots[id(ref)] = (li, wi)

        for index, name in enumerate(self.activation_layers):
            self._hook_layer(find_layer(model, name), index)
        self._hook_train_step(model)
        followed = self._follow_ref() if self._follow_ref is not None else None
        if followed is not None:
            self._hook_train_step(followed)
        if self.gradient_layers and self.gradient_stats:
            self._hook_optimizer(model)
        self._installed = True
        self._epoch = None
        self._cache = None
        # Keras' fit() built the train function before on_train_begin; a
        # fresh one traces the hooked step (building is lazy and cheap).
        model.make_train_function(force=True)

    def uninstall(self, keep_registry=False):
        """Removes every hook; the model is left exactly as it was."""
        model = self._model_ref()
        for layer in self._hooked_layers:
            if "call" in layer.__dict__:
                object.__delattr__(layer, "call")
        self._hooked_layers = []
        for target_ref, _ in list(self._saved_train_steps):
            if target_ref() is not None:
                self._unhook_train_step(target_ref())
        self._saved_train_steps = []
        if not keep_registry:
            self._follow_ref = None
            self._frozen = {}
            self._freeze_pending = {}
            self._last_values = {}
        if self._hooked_optimizer is not None:
            opt = self._hooked_optimizer
            if "_all_reduce_sum_gradients" in opt.__dict__:
                object.__delattr__(opt, "_all_reduce_sum_gradients")
            self._hooked_optimizer = None
        was_installed = self._installed
        self._installed = False
        self._variables = {}
        self._reset_fn = self._read_fn = None
        self._var_slots = {}
        self.activation_layers, self.gradient_layers, self.gradient_stats = [], [], ()
        if model is not None:
            if was_installed:
                model.train_function = None
            if not keep_registry:
                self._registry.pop(model, None)

    def _hook_layer(self, layer, index):
        if "call" in layer.__dict__:
            raise ValueError(
                f"Layer {layer.name!r} already has an instance-level `call` "
                "(another hook?); cannot monitor it."
            )
        original = layer.call
        collector_ref = weakref.ref(self)

        @functools.wraps(original)
        def call(*args, **kwargs):
            outputs = original(*args, **kwargs)
            record = _active_record()
            # Forward passes under a StatelessScope (SAM's perturbed pass)
            # are not the training forward pass: they are not recorded.
            collector = collector_ref()
            if (
                record is not None
                and record.collector is collector
                and not in_stateless_scope()
                and layer.name not in collector._frozen
            ):
                record.add(index, outputs)
            return outputs

        object.__setattr__(layer, "call", call)
        self._hooked_layers.append(layer)

    def _unhook_train_step(self, model):
        for i, (target_ref, saved) in enumerate(self._saved_train_steps):
            if target_ref() is model:
                del self._saved_train_steps[i]
                if "train_step" in model.__dict__:
                    if saved is not None:
                        # Put back a per-instance train_step that was there
                        # before us (e.g. kerascnn.training.sam.enable_sam's).
                        object.__setattr__(model, "train_step", saved)
                    else:
                        object.__delattr__(model, "train_step")
                return

    def _hook_train_step(self, model):
        original = model.train_step
        # A per-instance train_step installed by someone else (SAM) is wrapped
        # now and restored on uninstall.
        self._saved_train_steps.append((weakref.ref(model), model.__dict__.get("train_step")))
        collector_ref = weakref.ref(self)

        @functools.wraps(original)
        def train_step(data):
            collector = collector_ref()
            if collector is None:
                return original(data)
            return collector._recorded(original, data)

        object.__setattr__(model, "train_step", train_step)

    def _hook_optimizer(self, model):
        optimizer = model.optimizer
        if optimizer is None:
            raise ValueError("Gradient statistics need a compiled model (no optimizer).")
        inner = getattr(optimizer, "inner_optimizer", optimizer)
        if not hasattr(inner, "_all_reduce_sum_gradients"):
            raise RuntimeError(
                f"Cannot hook the gradients of optimizer {type(inner).__name__}: "
                "it has no `_all_reduce_sum_gradients` (keras 3 TensorFlow "
                "optimizers have it)."
            )
        original = inner._all_reduce_sum_gradients
        collector_ref = weakref.ref(self)

        @functools.wraps(original)
        def all_reduce_sum_gradients(grads_and_vars):
            reduced = original(grads_and_vars)
            collector = collector_ref()
            record = _active_record()
            if collector is not None and record is not None and record.collector is collector:
                collector._accumulate_gradients(reduced, record)
            return reduced

        object.__setattr__(inner, "_all_reduce_sum_gradients", all_reduce_sum_gradients)
        self._hooked_optimizer = inner

    # ------------------------------------------------------------------
    # In-graph accumulation.
    # ------------------------------------------------------------------
    def _accumulate(self, record):
        """The step's one accumulator update: activations and pending gradients."""
        pieces = list(record.pending)
        if record.moments:
            indices = sorted(record.moments)
            n, s1, m2 = (tf.stack([record.moments[i][k] for i in indices]) for k in range(3))
            n, s1, m2 = _combine_over_replicas(n, s1, m2)
            std = tf.sqrt(m2 / tf.maximum(n - 1.0, 1.0))
            n_act = self._sizes[0]
            where = indices + [n_act + i for i in indices] + [2 * n_act + i for i in indices]
            pieces.append((where, tf.concat([std, _div(s1, n), tf.ones_like(std)], 0)))
        if pieces:
            self._add(pieces)

    def _add(self, pieces):
        """One `assign_add` of the `(indices, values)` pieces into the vector."""
        acc = self._variables["acc"]
        where = [[i] for indices, _ in pieces for i in indices]
        values = tf.concat([tf.cast(v, tf.float64) for _, v in pieces], 0)
        acc.assign_add(tf.scatter_nd(tf.constant(where, tf.int32), values, acc.shape))

    def _accumulate_gradients(self, grads_and_vars, record):
        """Per-weight sums (one `assign_add` each) and per-layer norms.

        The norms (`sqrt` of the layer's summed `2 * l2_loss`, fused
        reductions) and the step count join the step's one vector update
        when the gradients are computed in the step's own graph; inside a
        branch (a `LossScaleOptimizer` applies under `tf.cond`) they are
        added there, so a skipped step counts nothing.
        """
        sq_norms = [[] for _ in self.gradient_layers]
        found = False
        for grad, var in grads_and_vars:
            slot = self._var_slots.get(id(var))
            if grad is None or slot is None:
                continue
            found = True
            li, wi = slot
            g = tf.cast(tf.convert_to_tensor(grad), tf.float32)
            if "sum" in self.gradient_stats:
                self._variables[f"grad_sum/{li}/{wi}"].assign_add(g)
            if "abs_sum" in self.gradient_stats:
                self._variables[f"grad_abs_sum/{li}/{wi}"].assign_add(tf.abs(g))
            if "norm" in self.gradient_stats:
                sq_norms[li].append(2.0 * tf.nn.l2_loss(g))
        if not found:
            return
        base = 3 * self._sizes[0]
        pieces = [([base + self._sizes[1]], tf.ones((1,), tf.float64))]
        if "norm" in self.gradient_stats:
            norms = [tf.sqrt(tf.add_n(s)) if s else tf.constant(0.0) for s in sq_norms]
            pieces.append((list(range(base, base + len(norms))), tf.stack(norms)))
        if tf.compat.v1.get_default_graph() is record.graph:
            record.pending.extend(pieces)
        else:
            self._add(pieces)

    # ------------------------------------------------------------------
    # Host side.
    # ------------------------------------------------------------------
    def _unpack(self, values):
        """Splits the accumulator vector into the named `sums` arrays."""
        acc = np.asarray(values.pop("acc", np.zeros(1)), np.float64)
        n_act, n_grad = getattr(self, "_sizes", (0, 0))
        values["act_std"] = acc[:n_act]
        values["act_mean"] = acc[n_act : 2 * n_act]
        values["act_steps"] = acc[2 * n_act : 3 * n_act]
        if self.gradient_layers and self.gradient_stats:
            if "norm" in self.gradient_stats:
                values["grad_norm"] = acc[3 * n_act : 3 * n_act + n_grad]
            values["grad_steps"] = float(acc[3 * n_act + n_grad])
        return values

    def _assemble(self, values):
        values = self._unpack(values)
        activations = {}
        steps = values.get("act_steps", np.zeros(0))
        with np.errstate(invalid="ignore", divide="ignore"):
            for i, name in enumerate(self.activation_layers):
                count = float(steps[i])
                activations[name] = {
                    "std": float(values["act_std"][i] / count) if count else float("nan"),
                    "mean": float(values["act_mean"][i] / count) if count else float("nan"),
                    "steps": int(count),
                }
        gradients = {}
        grad_steps = float(values.get("grad_steps", 0.0))
        model = self._model_ref()
        for li, name in enumerate(self.gradient_layers):
            entry = {"steps": int(grad_steps)}
            n_weights = len(find_layer(model, name).trainable_weights) if model else 0
            for stat in ("sum", "abs_sum"):
                if stat in self.gradient_stats:
                    entry[stat] = [values[f"grad_{stat}/{li}/{wi}"] for wi in range(n_weights)]
            if "norm" in self.gradient_stats:
                total = float(values["grad_norm"][li])
                entry["norm"] = total / grad_steps if grad_steps else float("nan")
            gradients[name] = entry
        sums = {
            key: values[key]
            for key in ("act_std", "act_mean", "act_steps", "grad_norm", "grad_steps")
            if key in values
        }
        result = LayerStatisticsResult(activations=activations, gradients=gradients, sums=sums)
        self._apply_frozen(result)
        return result
