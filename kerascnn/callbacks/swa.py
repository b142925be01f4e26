"""Stochastic weight averaging (Izmailov et al., 2018) as a Keras callback.

The efficient-CNN paper averages the weights once per epoch over the last
25% of training (it starts at 75%), then uses the average. MosaicML Composer's
`SWA` (`composer/algorithms/swa/swa.py`) does the same with `swa_start="0.7dur"`
and `update_interval="1ep"`.
"""

from __future__ import annotations

import math
import warnings

import keras
import numpy as np

from kerascnn._keras_compat import print_msg


class StochasticWeightAveraging(keras.callbacks.Callback):
    """Averages the trainable weights over the end of training and swaps the average in.

    From the first epoch whose end reaches `start` of the planned epochs, the
    trainable weights are added to a running mean at every epoch end (once
    per epoch, on the host: no per-batch work). When training ends the mean
    replaces the trainable weights, then the batch-norm moving statistics
    (which were not averaged) are re-estimated with one forward pass in
    training mode over the training data, as an exact average over the
    batches (PyTorch's `update_bn`). The data used for that pass is, in order:

    1. `data` given to the callback: a `tf.data.Dataset`, a numpy array /
       tensor of inputs, an `(x, y)` tuple of arrays, or any iterable of
       batches (`x` or `(x, ...)`); arrays are batched with `batch_size`;
    2. otherwise the dataset `fit` iterated (recovered from the first
       training-step call). That works for the single-device case; under a
       `tf.distribute` strategy pass `data` explicitly.

    `bn_steps` limits the pass to that many batches (default: all). Models
    without BatchNormalization need no pass. If the pass cannot be done, the
    averaged weights are kept and a warning says the batch-norm statistics
    are stale. If training stops before `start`, the weights are left alone.

    When the swap happens: at the end of the last planned epoch (so callbacks
    placed *after* this one in the list, e.g. `keras.callbacks.ModelCheckpoint`
    or `BackupAndRestore`, save the averaged model at that epoch; the
    epoch's logged validation metrics are those of the weights before the
    swap), or at the end of `fit` when training stopped early. Checkpoints of
    earlier epochs hold the weights being trained, not the average. The
    average covers `model.trainable_variables` (with `LayerFreezing` /
    `LayerDropping` every layer keeps its `trainable` flag, so the average is
    over the same variables as a checkpoint's).

    Args:
        start: fraction of the planned epochs (`fit(epochs=...)`) after which
            averaging starts, in [0, 1). Defaults to 0.75 (the paper's 75%).
        data: optional data for the batch-norm pass (see above).
        batch_size: batch size for array `data`. Defaults to 128.
        bn_steps: optional cap on the number of batch-norm batches.
        verbose: 1 prints when averaging starts and ends. Defaults to 0.

    Example:

    >>> swa = StochasticWeightAveraging(start=0.75)
    >>> # model.fit(x, y, epochs=20, callbacks=[swa])  # averages epochs 15..20
    """

    def __init__(self, start=0.75, data=None, batch_size=128, bn_steps=None, verbose=0):
        super().__init__()
        if isinstance(start, bool) or not isinstance(start, (int, float)) or not 0 <= start < 1:
            raise ValueError(f"start must be a number in [0, 1). Received: start={start!r}")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(
                f"batch_size must be a positive integer. Received: batch_size={batch_size!r}"
            )
        if bn_steps is not None and (
            isinstance(bn_steps, bool) or not isinstance(bn_steps, int) or bn_steps < 1
        ):
            raise ValueError(
                f"bn_steps must be None or a positive integer. Received: bn_steps={bn_steps!r}"
            )
        if not isinstance(verbose, (int, np.integer)) or verbose not in (0, 1, 2):
            raise ValueError(f"verbose must be 0, 1 or 2. Received: verbose={verbose!r}")
        self.start = float(start)
        self.data = data
        self.batch_size = batch_size
        self.bn_steps = bn_steps
        self.verbose = verbose
        self.averaged_weights = None
        self.num_averaged = 0
        self._fit_dataset = None

    # ------------------------------------------------------------------ fit
    def start_epoch(self, epochs):
        """0-based index of the first epoch whose end is averaged."""
        return max(0, math.ceil(self.start * epochs) - 1)

    def on_train_begin(self, logs=None):
        self.averaged_weights = None
        self.num_averaged = 0
        self._fit_dataset = None
        self._swapped = False
        self._capture = self.data is None and bool(self._batch_norm_layers())

    def on_train_batch_begin(self, batch, logs=None):
        # Wrapped lazily, just before the first step: other callbacks (the
        # statistics collector, LayerDropping) may replace
        # `model.train_function` in their `on_train_begin` / `on_epoch_begin`.
        if self._capture:
            self._capture = False
            self._capture_fit_dataset()

    def _capture_fit_dataset(self):
        model = self.model
        original = getattr(model, "train_function", None)
        if original is None:
            return

        def capture(iterator):
            self._fit_dataset = getattr(iterator, "_dataset", None)
            if model.train_function is capture:
                model.train_function = original
            return original(iterator)

        model.train_function = capture

    def on_epoch_end(self, epoch, logs=None):
        epochs = self.params.get("epochs") if self.params else None
        if epochs is None or epoch < self.start_epoch(epochs):
            return
        weights = [
            np.asarray(keras.ops.convert_to_numpy(v)) for v in self.model.trainable_variables
        ]
        if self.averaged_weights is None:
            self.averaged_weights = [w.astype("float64") for w in weights]
            if self.verbose:
                print_msg(f"SWA: averaging from epoch {epoch + 1}")
        else:
            n = self.num_averaged
            self.averaged_weights = [
                a + (w.astype("float64") - a) / (n + 1)
                for a, w in zip(self.averaged_weights, weights)
            ]
        self.num_averaged += 1
        if epoch == epochs - 1:
            self._swap()

    def on_train_end(self, logs=None):
        model = self.model
        if getattr(model, "train_function", None) is not None and (
            getattr(model.train_function, "__name__", "") == "capture"
        ):
            model.train_function = None
        if not self._swapped:
            self._swap()

    def _swap(self):
        """Puts the average in the model and re-estimates batch norm (once)."""
        self._swapped = True
        model = self.model
        if self.averaged_weights is None:
            warnings.warn(
                "StochasticWeightAveraging: training ended before averaging started "
                f"(start={self.start}); the weights were left unchanged.",
                stacklevel=2,
            )
            return
        for variable, value in zip(model.trainable_variables, self.averaged_weights):
            variable.assign(value.astype(variable.dtype))
        if self.verbose:
            print_msg(f"SWA: swapped in the average of {self.num_averaged} epochs")
        if self._batch_norm_layers():
            data = self.data if self.data is not None else self._fit_dataset
            if data is None:
                warnings.warn(
                    "StochasticWeightAveraging: no data to re-estimate the batch-norm "
                    "statistics (pass `data=` to the callback); they are stale.",
                    stacklevel=2,
                )
                return
            self.update_batch_norm(data)

    # ----------------------------------------------------------- batch norm
    def _batch_norm_layers(self):
        return [
            layer
            for layer in self.model._flatten_layers(include_self=False, recursive=True)
            if isinstance(layer, keras.layers.BatchNormalization) and layer.trainable
        ]

    def _batches(self, data):
        import tensorflow as tf

        if isinstance(data, tf.data.Dataset):
            return data
        if isinstance(data, tuple) and 1 <= len(data) <= 3 and hasattr(data[0], "shape"):
            data = data[0]  # (x, y) or (x, y, sample_weight) arrays
        if hasattr(data, "shape"):
            return tf.data.Dataset.from_tensor_slices(data).batch(self.batch_size)
        return data

    def update_batch_norm(self, data):
        """Re-estimates every BatchNormalization's moving mean/variance on `data`.

        One pass in training mode; after it the moving statistics are the
        average of the per-batch statistics (momentum `k / (k + 1)` at batch `k`).
        """
        import tensorflow as tf

        model = self.model
        bn_layers = self._batch_norm_layers()
        if not bn_layers:
            return 0
        momentum = tf.Variable(0.0, trainable=False, dtype="float32")
        saved = [layer.momentum for layer in bn_layers]

        @tf.function
        def step(x):
            model(x, training=True)

        count = 0
        try:
            for layer in bn_layers:
                layer.momentum = momentum
            for batch in self._batches(data):
                if self.bn_steps is not None and count >= self.bn_steps:
                    break
                x = batch[0] if isinstance(batch, (tuple, list)) else batch
                momentum.assign(count / (count + 1.0))
                step(x)
                count += 1
        finally:
            for layer, value in zip(bn_layers, saved):
                layer.momentum = value
        return count

    def get_config(self):
        return {
            "start": self.start,
            "batch_size": self.batch_size,
            "bn_steps": self.bn_steps,
            "verbose": self.verbose,
        }
