"""Per-layer training metrics written to TensorBoard."""

from __future__ import annotations

import copy
import os

import keras
import numpy as np
import tensorflow as tf

from kerascnn.callbacks.layer_stats import (
    LayerStatistics,
    find_layer,
    iter_layers,
    resolve_layers,
)

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
    forward pass); weights are read on the host once per window. Written with
    its own summary writer to `log_dir/layer_metrics`, with a custom-scalars
    layout that groups the per-layer curves (one chart per metric, and per
    layer). Nothing is pinned to a device.

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
        with self._writer.as_default():
            tf.summary.experimental.write_raw_pb(cs_summary.pb(layout).SerializeToString(), step=0)
        self._step = 0
        self._window_start = None

    def _open_writer(self):
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

    def _weights(self):
        return {
            name: [
                np.asarray(w.numpy(), np.float64)
                for w in find_layer(self.model, name).trainable_weights
            ]
            for name in self.weight_names
        }

    def on_epoch_begin(self, epoch, logs=None):
        self._stats.begin_epoch(epoch)
        self._epoch_steps = 0
        self._snapshot = self._stats.read().sums
        if self._window_start is None or self.update_freq == "epoch":
            self._window_start = self._weights()

    def on_train_batch_end(self, batch, logs=None):
        self._step = self._step_base() + batch + 1
        if self.update_freq == "epoch":
            return
        if self._step - self._last_written >= self.update_freq:
            self._write(self._step)

    def _step_base(self):
        return getattr(self, "_epoch_base", 0)

    def on_epoch_end(self, epoch, logs=None):
        if self.update_freq == "epoch":
            self._write(epoch)  # keras' TensorBoard writes epoch_* at step=epoch
        self._epoch_base = self._step

    def _write(self, step):
        result = self._stats.read()
        sums, prev = result.sums, self._snapshot
        now = self._weights()
        with self._writer.as_default(step=step), np.errstate(invalid="ignore", divide="ignore"):
            d_steps = sums["act_steps"] - prev["act_steps"]
            mean = (sums["act_mean"] - prev["act_mean"]) / d_steps
            std = (sums["act_std"] - prev["act_std"]) / d_steps
            for i, name in enumerate(self._stats.activation_layers):
                frozen = result.frozen.get(name)
                if frozen is not None:  # dropped / frozen prefix: last trained value
                    mean[i], std[i] = frozen["mean"], frozen["std"]
                if name in self.activation_names:
                    tf.summary.scalar(f"activation_mean/{name}", mean[i])
                    tf.summary.scalar(f"activation_std/{name}", std[i])
            g_steps = float(sums.get("grad_steps", 0.0) - prev.get("grad_steps", 0.0))
            if "grad_norm" in sums:
                g_norm = (sums["grad_norm"] - prev["grad_norm"]) / max(g_steps, 1.0)
            for gi, name in enumerate(self._stats.gradient_layers):
                if name not in self.weight_names:
                    continue
                w = np.concatenate([a.ravel() for a in now[name]])
                w0 = np.concatenate([a.ravel() for a in self._window_start[name]])
                norm = float(np.linalg.norm(w))
                tf.summary.scalar(f"weight_norm/{name}", norm)
                tf.summary.scalar(
                    f"update_ratio/{name}",
                    float(np.linalg.norm(w - w0) / max(np.linalg.norm(w0), 1e-12)),
                )
                if g_steps:
                    tf.summary.scalar(f"gradient_norm/{name}", float(g_norm[gi]))
                if self.histograms:
                    for weight, value in zip(
                        find_layer(self.model, name).trainable_weights, now[name]
                    ):
                        tf.summary.histogram(f"weights/{weight.path}", value)
        self._writer.flush()
        self._snapshot = sums
        self._window_start = now
        self._last_written = self._step

    _last_written = 0

    def on_train_end(self, logs=None):
        if self._stats is not None:
            self._stats.release(self)
            self._stats = None
        if self._writer is not None:
            self._writer.close()
            self._writer = None
