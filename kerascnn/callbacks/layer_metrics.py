"""Per-layer training metrics written to TensorBoard."""

from __future__ import annotations

import copy
import os

import keras
import numpy as np
import tensorflow as tf
from tensorflow.core.framework import summary_pb2, types_pb2

from kerascnn._distribute import is_chief
from kerascnn.callbacks.layer_stats import (
    LayerStatistics,
    find_layer,
    iter_layers,
    resolve_layers,
)

_SCALAR_METADATA = summary_pb2.SummaryMetadata(
    plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name="scalars"),
    data_class=summary_pb2.DATA_CLASS_SCALAR,
)
"""What `tf.summary.scalar` attaches to a value (TensorBoard's scalars plugin)."""

METRICS = ("activation_mean", "activation_std", "weight_norm", "gradient_norm", "update_ratio")


def _weighted_layers(model):
    return [
        layer.name
        for layer in iter_layers(model)
        if not isinstance(layer, keras.Model)
        and any(w.path.endswith("kernel") for w in layer.trainable_weights)
    ]


def custom_scalar_layout(activation_layers, weight_layers):
    """A TensorBoard custom-scalars layout: one multi-line chart per metric."""
    from tensorboard.plugins.custom_scalar import layout_pb2

    charts = []
    for metric in METRICS:
        charts.append(
            layout_pb2.Chart(
                title=metric,
                multiline=layout_pb2.MultilineChartContent(tag=[rf"^{metric}/.*"]),
            )
        )
    per_layer = []
    for name in activation_layers:
        per_layer.append(
            layout_pb2.Chart(
                title=f"activation/{name}",
                multiline=layout_pb2.MultilineChartContent(
                    tag=[rf"^activation_(mean|std)/{name}$"]
                ),
            )
        )
    for name in weight_layers:
        per_layer.append(
            layout_pb2.Chart(
                title=f"weights/{name}",
                multiline=layout_pb2.MultilineChartContent(
                    tag=[rf"^(weight_norm|gradient_norm|update_ratio)/{name}$"]
                ),
            )
        )
    return layout_pb2.Layout(
        category=[
            layout_pb2.Category(title="layer metrics (all layers)", chart=charts),
            layout_pb2.Category(title="layer metrics (per layer)", chart=per_layer, closed=True),
        ]
    )


class LayerMetrics(keras.callbacks.Callback):
    """Writes per-layer activation, weight, gradient and update metrics.

    For each monitored layer: the mean and the spread (unbiased std) of its
    whole output tensor, averaged over the window's training steps; for each
    layer with a kernel: the weight norm ||w||, the mean per-step gradient
    norm (global gradients as applied, unscaled under mixed precision) and the
    update ratio ||Δw|| / ||w|| over the window. Activation and gradient
    statistics come from the training step itself (`layer_stats`, no extra
    forward pass, one small vector read per window). The weight and update
    norms are computed in the graph, on the weights' device, against a
    float32 copy of the weights taken at the window's start (the copy costs
    one model's worth of weight memory); one traced function per window
    computes them, writes every summary and returns a small vector, so the
    host does no linear algebra and copies no weights. Written with
    its own summary writer to `log_dir/layer_metrics`, with a custom-scalars
    layout that groups the per-layer curves (one chart per metric, and per
    layer). Nothing is pinned to a device. With `update_freq="epoch"` the
    callback has no per-batch hook, so keras keeps dispatching training
    steps asynchronously. After each write, `latest` holds the written
    values (`{metric: {layer: float}}`).

    Multi-worker (`tf.distribute.MultiWorkerMirroredStrategy`): the
    statistics are all-reduced inside the step and the weights are
    mirrored, so every worker computes the same values (`latest`); only the
    chief (`kerascnn._distribute.is_chief`) creates `log_dir` and writes the
    event files, the other workers write to a no-op summary writer.

    Steps line up with keras' `TensorBoard`: with `update_freq="epoch"` a
    value is written at step `epoch` (0-based, like keras' `epoch_*`
    scalars); with `update_freq=N` at the global batch count (1-based, like
    keras' `batch_*` scalars). After `LayerDropping` / `LayerFreezing` drop
    or freeze a prefix, its monitored layers are written with the value of
    their last trained epoch (see `LayerStatistics.freeze_layers`), and the
    head's layers keep being measured in the head's train step.

    Args:
        log_dir: TensorBoard log directory (the same as keras' TensorBoard's is
            fine: this writes under its `layer_metrics` subfolder).
        update_freq: `"epoch"` or a number of batches per window. Defaults to
            `"epoch"`.
        histograms: also write weight histograms each window. Defaults to False.
        layers: activation layers, `"auto"` or names. Defaults to `"auto"`.
        weight_layers: layers for weight/gradient/update metrics, `"auto"`
            (every layer with a kernel) or names. Defaults to `"auto"`.

    Example:

    >>> model.fit(x, y, epochs=10, callbacks=[LayerMetrics("logs")])
    """

    def __init__(
        self, log_dir, update_freq="epoch", histograms=False, layers="auto", weight_layers="auto"
    ):
        super().__init__()
        if not isinstance(log_dir, (str, os.PathLike)) or not os.fspath(log_dir):
            raise TypeError(f"log_dir must be a path. Received: log_dir={log_dir!r}")
        if os.path.exists(log_dir) and not os.path.isdir(log_dir):
            raise ValueError(
                f"log_dir must be a directory, but it is a file. Received: log_dir={log_dir!r}"
            )
        if not (isinstance(update_freq, str) and update_freq == "epoch") and not (
            isinstance(update_freq, int) and not isinstance(update_freq, bool) and update_freq > 0
        ):
            raise ValueError(
                "update_freq must be 'epoch' or a positive integer. "
                f"Received: update_freq={update_freq!r}"
            )
        if not isinstance(histograms, bool):
            raise TypeError(f"histograms must be a bool. Received: histograms={histograms!r}")
        for argument, value in (("layers", layers), ("weight_layers", weight_layers)):
            if isinstance(value, str):
                continue
            if (
                not isinstance(value, (list, tuple))
                or not value
                or not all(isinstance(n, str) for n in value)
            ):
                raise TypeError(
                    f"{argument} must be 'auto' or a non-empty list of layer names. "
                    f"Received: {argument}={value!r}"
                )
        self.log_dir = os.fspath(log_dir)
        self.update_freq = update_freq
        self.histograms = bool(histograms)
        self.layers = layers
        self.weight_layers = weight_layers
        self._stats = None
        self._writer = None
        self.latest = {}
        if update_freq != "epoch":
            # Only then a per-batch hook (its presence makes keras dispatch
            # every training step synchronously).
            self.on_train_batch_end = self._on_train_batch_end

    def __deepcopy__(self, memo):
        return type(self)(
            self.log_dir,
            update_freq=self.update_freq,
            histograms=self.histograms,
            layers=copy.deepcopy(self.layers, memo),
            weight_layers=copy.deepcopy(self.weight_layers, memo),
        )

    # ------------------------------------------------------------------
    def on_train_begin(self, logs=None):
        model = self.model
        self.activation_names = resolve_layers(model, self.layers)
        if isinstance(self.weight_layers, str) and self.weight_layers == "auto":
            self.weight_names = _weighted_layers(model)
        else:
            self.weight_names = resolve_layers(model, self.weight_layers, "weight_layers")
        self._stats = LayerStatistics.acquire(
            model,
            self,
            activations=self.activation_names,
            gradients=self.weight_names,
            gradient_stats=("norm",),
        )
        self._writer = self._open_writer()
        from tensorboard.plugins.custom_scalar import summary as cs_summary

        layout = custom_scalar_layout(self.activation_names, self.weight_names)
        if self._writer is not None:
            with self._writer.as_default():
                tf.summary.experimental.write_raw_pb(
                    cs_summary.pb(layout).SerializeToString(), step=0
                )
        self._step = 0
        self._last_written = 0
        self._epoch_base = 0
        self._snapshot = None
        self._build_graph_functions()
        self._start_window()

    def _open_writer(self):
        self._chief = is_chief(self.model.distribute_strategy)
        if not self._chief:
            return None  # only the chief writes files
        path = os.path.join(self.log_dir, "layer_metrics")
        try:
            os.makedirs(path, exist_ok=True)
            probe = os.path.join(path, ".kerascnn_write_probe")
            with open(probe, "w") as f:
                f.write("")
            os.remove(probe)
            return tf.summary.create_file_writer(path)
        except (OSError, tf.errors.OpError) as error:
            self._stats.release(self)
            self._stats = None
            raise ValueError(
                f"LayerMetrics cannot write its TensorBoard files under log_dir "
                f"({type(error).__name__}: {getattr(error, 'strerror', None) or error}). "
                f"Received: log_dir={self.log_dir!r}"
            ) from None

    def _build_graph_functions(self):
        """Traced once per fit: the window's weight and update norms in one call.

        `self._start` holds a float32 copy of every tracked weight at the
        window's start (on the weights' device) and `self._start_norms` the
        per-layer `||w0||`. The window function takes, per weight, the fused
        reductions `2 * l2_loss(w)` and `2 * l2_loss(w - w0)` (one temporary
        of the weight's size), copies `w` into its start copy, and returns
        `[||w||, ||w - w0|| / ||w0||]` per layer. (One flat vector with
        segment sums was 80x slower on full-width VGG-11: scatter-adds.)
        """
        weights = [list(find_layer(self.model, n).trainable_weights) for n in self.weight_names]
        self._start = [
            [tf.Variable(tf.zeros(w.shape, tf.float32), trainable=False) for w in layer]
            for layer in weights
        ]
        self._start_norms = tf.Variable(tf.zeros((len(weights),), tf.float32), trainable=False)
        start, start_norms = self._start, self._start_norms

        def layer_norms(diff):
            """Per layer `||w||` (and `||w - w0||` when `diff`); copies every `w` to `w0`."""
            w_sq, d_sq = [], []
            for layer, copies in zip(weights, start):
                now = [tf.cast(w.value, tf.float32) for w in layer]
                w_sq.append(tf.add_n([tf.nn.l2_loss(v) for v in now] or [tf.zeros(())]))
                if diff:
                    d_sq.append(
                        tf.add_n(
                            [tf.nn.l2_loss(v - c) for v, c in zip(now, copies)] or [tf.zeros(())]
                        )
                    )
                for v, c in zip(now, copies):
                    c.assign(v)
            w_norm = tf.sqrt(2.0 * tf.stack(w_sq)) if w_sq else tf.zeros((0,))
            d_norm = tf.sqrt(2.0 * tf.stack(d_sq)) if d_sq else tf.zeros((0,))
            return w_norm, d_norm

        @tf.function(autograph=False)
        def snapshot():
            w_norm, _ = layer_norms(diff=False)
            start_norms.assign(w_norm)

        @tf.function(autograph=False)
        def window():
            w_norm, d_norm = layer_norms(diff=True)
            ratio = d_norm / tf.maximum(start_norms, 1e-12)
            start_norms.assign(w_norm)
            return tf.concat([w_norm, ratio], 0)

        self._snapshot_fn, self._window_fn = snapshot, window
        self._histogram_fn = None
        if self.histograms and self._writer is not None:
            writer = self._writer
            flat_weights = [w for layer in weights for w in layer]

            @tf.function(autograph=False)
            def histograms(step):
                with writer.as_default(step=step):
                    for weight in flat_weights:
                        tf.summary.histogram(f"weights/{weight.path}", weight.value)

            self._histogram_fn = histograms

    def _start_window(self):
        self._act_set = set(self.activation_names)
        self._snapshot_fn()

    def on_epoch_begin(self, epoch, logs=None):
        self._stats.begin_epoch(epoch)
        # Reset at the epoch's start (whoever called first, no step ran since).
        self._snapshot = None

    def _on_train_batch_end(self, batch, logs=None):
        # Installed as `on_train_batch_end` only with `update_freq=N`: keras
        # then calls it per batch (and dispatches training synchronously).
        self._step = self._epoch_base + batch + 1
        if self._step - self._last_written >= self.update_freq:
            self._write(self._step)

    def on_epoch_end(self, epoch, logs=None):
        steps = (self.params or {}).get("steps")
        if self.update_freq == "epoch":
            self._write(epoch)  # keras' TensorBoard writes epoch_* at step=epoch
            self._step = self._epoch_base + (steps or 0)
        self._epoch_base = self._step

    def _window_values(self, result):
        """The window's activation means/stds and gradient norms (tiny vectors)."""
        sums, prev = result.sums, self._snapshot or {}
        with np.errstate(invalid="ignore", divide="ignore"):
            d_steps = sums["act_steps"] - prev.get("act_steps", 0.0)
            mean = (sums["act_mean"] - prev.get("act_mean", 0.0)) / d_steps
            std = (sums["act_std"] - prev.get("act_std", 0.0)) / d_steps
        for i, name in enumerate(self._stats.activation_layers):
            frozen = result.frozen.get(name)
            if frozen is not None:  # dropped / frozen prefix: last trained value
                mean[i], std[i] = frozen["mean"], frozen["std"]
        g_steps = float(sums.get("grad_steps", 0.0) - prev.get("grad_steps", 0.0))
        g_norm = np.zeros(len(self._stats.gradient_layers))
        if "grad_norm" in sums:
            g_norm = (sums["grad_norm"] - prev.get("grad_norm", 0.0)) / max(g_steps, 1.0)
        return mean, std, g_norm, g_steps

    def _write(self, step):
        result = self._stats.read()
        mean, std, g_norm, g_steps = self._window_values(result)
        vector = self._window_fn().numpy()
        n = len(self.weight_names)
        w_norm, ratio = vector[:n], vector[n:]
        act = self._stats.activation_layers
        g_index = {name: i for i, name in enumerate(self._stats.gradient_layers)}
        latest = {
            "activation_mean": {a: float(mean[i]) for i, a in enumerate(act) if a in self._act_set},
            "activation_std": {a: float(std[i]) for i, a in enumerate(act) if a in self._act_set},
            "weight_norm": dict(zip(self.weight_names, w_norm.tolist())),
            "update_ratio": dict(zip(self.weight_names, ratio.tolist())),
        }
        if g_steps:
            latest["gradient_norm"] = {n: float(g_norm[g_index[n]]) for n in self.weight_names}
        self._writer_write(latest, step)
        self.latest = latest
        self._snapshot = result.sums
        self._last_written = self._step

    def _writer_write(self, latest, step):
        """All the window's scalars in ONE summary proto and one write op."""
        if self._writer is None:  # not the chief
            return
        summary = summary_pb2.Summary()
        for metric, values in latest.items():
            for name, value in values.items():
                entry = summary.value.add(tag=f"{metric}/{name}", metadata=_SCALAR_METADATA)
                entry.tensor.dtype = types_pb2.DT_FLOAT
                entry.tensor.float_val.append(value)
        with self._writer.as_default():
            tf.summary.experimental.write_raw_pb(summary.SerializeToString(), step=step)
        if self._histogram_fn is not None:
            self._histogram_fn(tf.constant(step, tf.int64))

    def on_train_end(self, logs=None):
        if self._stats is not None:
            self._stats.release(self)
            self._stats = None
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        self._window_fn = self._snapshot_fn = self._histogram_fn = None
        self._start = self._start_norms = None
