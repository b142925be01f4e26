"""Stochastic weight averaging (Izmailov et al., 2018) as a Keras callback.

The efficient-CNN paper averages the weights once per epoch over the last
25% of training (it starts at 75%), then uses the average. MosaicML Composer's
`SWA` (`composer/algorithms/swa/swa.py`) does the same with `swa_start="0.7dur"`
and `update_interval="1ep"`, optionally with an SWA learning-rate phase
(`schedule_swa_lr=True`: PyTorch's `SWALR`, annealing to `swa_lr` over
`anneal_steps` updates). The SWA paper (Section 3.1) trains the averaged
epochs with a constant rate `alpha_2` or a cyclical one, decreasing linearly
from `alpha_1` to `alpha_2` within each cycle of `c` steps, and averages at
the cycle ends (the learning-rate minima).
"""

from __future__ import annotations

import glob
import math
import os
import warnings

import keras
import numpy as np

from kerascnn import _checks
from kerascnn._distribute import (
    average_variables,
    broadcast_from_chief,
    is_chief,
    is_multi_worker,
)
from kerascnn._keras_compat import print_msg
from kerascnn._warnings import NoEffectWarning

#: The SWA-phase learning-rate schedules (`swa_lr` given).
SCHEDULES = ("constant", "cyclical")
#: How the rate anneals to `swa_lr` (PyTorch `SWALR` / Composer names).
ANNEAL_STRATEGIES = ("cos", "linear")


def swa_learning_rate(
    k, lr0, swa_lr, schedule="constant", anneal_epochs=0, anneal_strategy="cos", cycle_epochs=1
):
    """The learning rate of the `k`-th epoch (0-based) of the SWA phase.

    - `"constant"`: `swa_lr` from the first averaged epoch when
      `anneal_epochs=0` (the SWA paper's constant schedule); otherwise the
      rate goes from `lr0` (the rate when the phase starts) to `swa_lr` over
      `anneal_epochs` epochs, `lr0 + (swa_lr - lr0) * a(t)` with
      `t = min(1, (k + 1) / anneal_epochs)` and `a(t) = (1 - cos(pi t)) / 2`
      (`"cos"`) or `t` (`"linear"`), as PyTorch's `SWALR`, then stays there.
    - `"cyclical"`: the SWA paper's cyclical rate in epochs,
      `(1 - t) * lr0 + t * swa_lr` with `t = (mod(k, c) + 1) / c` and
      `c = cycle_epochs`: the last epoch of each cycle trains at `swa_lr`.

    Example:

    >>> swa_learning_rate(0, 0.1, 0.01)
    0.01
    >>> [round(swa_learning_rate(k, 0.1, 0.01, "cyclical", cycle_epochs=3), 3) for k in range(4)]
    [0.07, 0.04, 0.01, 0.07]
    """
    if schedule == "cyclical":
        t = (k % cycle_epochs + 1) / cycle_epochs
        return (1.0 - t) * lr0 + t * swa_lr
    if anneal_epochs == 0:
        return float(swa_lr)
    t = min(1.0, (k + 1) / anneal_epochs)
    alpha = (1.0 - math.cos(math.pi * t)) / 2.0 if anneal_strategy == "cos" else t
    return lr0 + (swa_lr - lr0) * alpha


@keras.saving.register_keras_serializable(package="kerascnn")
class SWALearningRate(keras.optimizers.schedules.LearningRateSchedule):
    """A schedule that follows `base` until an SWA phase overrides it (in-graph).

    `StochasticWeightAveraging(swa_lr=...)` installs it on an optimizer whose
    learning rate is a `LearningRateSchedule` (e.g. `OneCycle`, cosine decay)
    and sets `value` / `active` once per epoch; while `active` is 0 the rate
    is exactly `base(step)`. A saved optimizer reloads it inactive.

    Args:
        base: the user's `keras.optimizers.schedules.LearningRateSchedule`.
    """

    def __init__(self, base):
        super().__init__()
        if not isinstance(base, keras.optimizers.schedules.LearningRateSchedule):
            raise TypeError(
                "base must be a keras.optimizers.schedules.LearningRateSchedule. "
                f"Received: base={base!r}"
            )
        self.base = base
        self.active = keras.Variable(0.0, trainable=False, dtype="float32", name="swa_active")
        self.value = keras.Variable(0.0, trainable=False, dtype="float32", name="swa_lr")

    def __call__(self, step):
        base = keras.ops.cast(self.base(step), "float32")
        return keras.ops.where(self.active > 0.5, keras.ops.convert_to_tensor(self.value), base)

    def get_config(self):
        return {"base": keras.optimizers.schedules.serialize(self.base)}

    @classmethod
    def from_config(cls, config):
        return cls(keras.optimizers.schedules.deserialize(config["base"]))


def _inner_optimizer(model):
    optimizer = getattr(model, "optimizer", None)
    return getattr(optimizer, "inner_optimizer", optimizer)  # LossScaleOptimizer


class StochasticWeightAveraging(keras.callbacks.Callback):
    """Averages the trainable weights over the end of training and swaps the average in.

    From the first epoch whose end reaches `start` of the planned epochs (the
    SWA phase), the trainable weights are added to a running mean at every
    epoch end (`schedule="cyclical"`: at every cycle end), once per epoch on
    the host (no per-batch work). When training ends the mean replaces the
    trainable weights, then the batch-norm moving statistics (which were
    not averaged) are re-estimated with one forward pass in training mode
    over the training data, as an exact average over the batches (PyTorch's
    `update_bn`). The data used for that pass is, in order:

    1. `data` given to the callback: a `tf.data.Dataset`, a numpy array /
       tensor of inputs, an `(x, y)` tuple of arrays, or any iterable of
       batches (`x` or `(x, ...)`); arrays are batched with `batch_size`;
    2. otherwise the dataset `fit` iterated (recovered from the first
       training-step call; under a `tf.distribute` strategy, this process'
       input pipeline: its shard of the data, in per-replica batches).

    `bn_steps` limits the pass to that many batches (default: all). Models
    without BatchNormalization need no pass. If the pass cannot be done, the
    averaged weights are kept and a warning says the batch-norm statistics
    are stale. If training stops before `start`, the weights are left alone.

    The SWA learning rate (`swa_lr` given; None keeps the optimizer's own
    rate, the efficient-CNN paper's setting): at the beginning of every
    epoch of the SWA phase the rate is set to `swa_learning_rate(k, lr0,
    ...)` (`k` the epoch's index in the phase, `lr0` the optimizer's rate
    when the phase starts): constant `swa_lr`, optionally reached over
    `anneal_epochs` (PyTorch `SWALR` / Composer), or the SWA paper's
    cyclical schedule of `cycle_epochs` epochs with averaging at the cycle
    ends. A float learning rate (a variable) is assigned; a
    `LearningRateSchedule` (cosine, `kerascnn.training.schedules.OneCycle`)
    is wrapped in `SWALearningRate` when `fit` starts, which follows it
    exactly until the phase. Both are restored when the average is swapped
    in. Any other learning rate (a plain callable) is a ValueError. The
    rate depends only on the epoch index, so a run resumed mid-phase
    (`keras.callbacks.BackupAndRestore`, `kerascnn train --resume`) gets
    the same rates; it works with SAM (`kerascnn.training.sam`), which
    steps the same optimizer.

    Resuming: with `backup_dir`, the running average, its count and `lr0`
    are written there (`swa_state_<epoch>.npz`, the last two epochs kept)
    at every SWA-phase epoch end, and read back when `fit` resumes at a
    later epoch, so an interrupted run ends with the same average as an
    uninterrupted one. Use a folder of the `BackupAndRestore` directory
    (removed with it when training completes). Without it a resumed run
    averages from the resumed epoch only.

    Multi-worker (`tf.distribute.MultiWorkerMirroredStrategy`): every worker
    averages its own copy of the (synchronously trained, so identical)
    weights; only the chief (`kerascnn._distribute.is_chief`) writes and
    removes the state files, and on resume the chief's state is broadcast
    to every worker (one collective), so all of them swap in the same
    average. The batch-norm pass runs on each worker's data (its shard of
    the fit data, or `data`), then the moving statistics are averaged over
    the workers (one collective), so they are identical everywhere.

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
        swa_lr: None (keep the optimizer's rate) or the SWA-phase rate, a
            positive float (the SWA paper's `alpha_2`). Defaults to None.
        schedule: `"constant"` or `"cyclical"` (needs `swa_lr`). Defaults to
            `"constant"`.
        anneal_epochs: epochs over which the constant schedule goes from the
            current rate to `swa_lr` (0: at once). Defaults to 0.
        anneal_strategy: `"cos"` or `"linear"`. Defaults to `"cos"` (SWALR's).
        cycle_epochs: the cyclical schedule's cycle length `c` in epochs.
            Defaults to 1 (every epoch at `swa_lr`).
        backup_dir: optional folder for the averaging state (see above).

    Example:

    >>> swa = StochasticWeightAveraging(start=0.75)
    >>> # model.fit(x, y, epochs=20, callbacks=[swa])  # averages epochs 16..20
    >>> swa = StochasticWeightAveraging(start=0.75, swa_lr=0.01, anneal_epochs=2)
    """

    def __init__(
        self,
        start=0.75,
        data=None,
        batch_size=128,
        bn_steps=None,
        verbose=0,
        swa_lr=None,
        schedule="constant",
        anneal_epochs=0,
        anneal_strategy="cos",
        cycle_epochs=1,
        backup_dir=None,
    ):
        super().__init__()
        _check_args(start, batch_size, bn_steps, verbose)
        self.start = float(start)
        self.data = data
        self.batch_size = batch_size
        self.bn_steps = bn_steps
        self.verbose = verbose
        self.swa_lr = _checks.check_positive_number(swa_lr, "swa_lr", allow_none=True)
        self.schedule = _checks.check_one_of(schedule, "schedule", SCHEDULES)
        self.anneal_epochs = _checks.check_non_negative_int(anneal_epochs, "anneal_epochs")
        self.anneal_strategy = _checks.check_one_of(
            anneal_strategy, "anneal_strategy", ANNEAL_STRATEGIES
        )
        self.cycle_epochs = _checks.check_positive_int(cycle_epochs, "cycle_epochs")
        self.backup_dir = _checks.check_path(backup_dir, "backup_dir", allow_none=True)
        if schedule == "cyclical" and swa_lr is None:
            raise ValueError(
                "schedule='cyclical' needs swa_lr (the rate at the cycle ends). "
                "Received: swa_lr=None"
            )
        if schedule == "cyclical" and anneal_epochs:
            raise ValueError(
                "anneal_epochs applies to schedule='constant' only. "
                f"Received: schedule='cyclical', anneal_epochs={anneal_epochs!r}"
            )
        self.averaged_weights = None
        self.num_averaged = 0
        self._fit_dataset = None
        self._lr0 = None
        self._lr_set = False
        self._swapped = True
        self._completed = False

    # ------------------------------------------------------------------ fit
    def start_epoch(self, epochs):
        """0-based index of the first epoch of the SWA phase (whose end is averaged)."""
        return max(0, math.ceil(self.start * epochs) - 1)

    def averages_at(self, epoch, epochs):
        """Whether the end of `epoch` (0-based) is added to the average."""
        k = epoch - self.start_epoch(epochs)
        if k < 0:
            return False
        return self.schedule == "constant" or (k + 1) % self.cycle_epochs == 0

    def set_model(self, model):
        super().set_model(model)
        if self.swa_lr is not None:
            self._install_schedule(model)

    def _install_schedule(self, model):
        """Wraps a schedule learning rate in `SWALearningRate` (before `fit` traces)."""
        optimizer = _inner_optimizer(model)
        if optimizer is None:
            return  # not compiled: `fit` will fail on its own
        current = optimizer._learning_rate
        if isinstance(current, (SWALearningRate, keras.Variable)):
            return
        if not isinstance(current, keras.optimizers.schedules.LearningRateSchedule):
            raise ValueError(
                "swa_lr needs the optimizer's learning_rate to be a float or a "
                "keras.optimizers.schedules.LearningRateSchedule. Received: "
                f"learning_rate={current!r} (set swa_lr=None to keep it)"
            )
        cached = getattr(optimizer, "_kerascnn_swa_schedule", None)
        if cached is None or cached.base is not current:
            strategy = getattr(model, "distribute_strategy", None)
            if strategy is not None:
                with strategy.scope():
                    cached = SWALearningRate(current)
            else:
                cached = SWALearningRate(current)
            optimizer._kerascnn_swa_schedule = cached
            # A train function traced by an earlier `fit` holds the old schedule.
            if getattr(model, "train_function", None) is not None:
                model.train_function = None
        optimizer.learning_rate = cached

    def on_train_begin(self, logs=None):
        self.averaged_weights = None
        self.num_averaged = 0
        self._fit_dataset = None
        self._swapped = False
        self._lr0 = None
        self._lr_set = False
        self._first_epoch = None
        self._completed = False
        self._capture = self.data is None and bool(self._batch_norm_layers())
        self._warn_if_no_effect()

    def _warn_if_no_effect(self):
        epochs = self._planned_epochs()
        if not epochs:
            return
        tail = (epochs - self.start_epoch(epochs)) % self.cycle_epochs
        if self.schedule == "cyclical" and tail:
            warnings.warn(
                f"StochasticWeightAveraging: the SWA phase ({epochs - self.start_epoch(epochs)} "
                f"epochs) is not a whole number of cycles (cycle_epochs={self.cycle_epochs}): "
                f"the last {tail} epoch(s) are trained but not averaged.",
                stacklevel=3,
            )
        if self.swa_lr is not None:
            return
        averaged = [e for e in range(epochs) if self.averages_at(e, epochs)]
        if averaged == [epochs - 1]:
            warnings.warn(
                f"StochasticWeightAveraging(start={self.start}) averages only the last of "
                f"{epochs} epochs: the weights stay those of the last epoch (only the "
                "batch-norm statistics are re-estimated). Lower start or train more epochs.",
                NoEffectWarning,
                stacklevel=3,
            )

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
            self._fit_dataset = _iterator_dataset(iterator)
            if model.train_function is capture:
                model.train_function = original
            return original(iterator)

        model.train_function = capture

    def _planned_epochs(self):
        return self.params.get("epochs") if self.params else None

    def on_epoch_begin(self, epoch, logs=None):
        epochs = self._planned_epochs()
        if epochs is None:
            return
        if self._first_epoch is None:
            self._first_epoch = epoch
            self._load_state(epoch, epochs)
        if self.swa_lr is None or epoch < self.start_epoch(epochs):
            return
        if self._lr0 is None:
            self._lr0 = self._current_learning_rate()
        k = epoch - self.start_epoch(epochs)
        rate = swa_learning_rate(
            k,
            self._lr0,
            self.swa_lr,
            self.schedule,
            self.anneal_epochs,
            self.anneal_strategy,
            self.cycle_epochs,
        )
        self._set_learning_rate(rate)

    # ------------------------------------------------------- learning rate
    def _current_learning_rate(self):
        optimizer = _inner_optimizer(self.model)
        current = optimizer._learning_rate
        if isinstance(current, SWALearningRate):
            return float(keras.ops.convert_to_numpy(current.base(optimizer.iterations)))
        return float(keras.ops.convert_to_numpy(optimizer.learning_rate))

    def _set_learning_rate(self, rate):
        optimizer = _inner_optimizer(self.model)
        current = optimizer._learning_rate
        if isinstance(current, SWALearningRate):
            current.value.assign(rate)
            current.active.assign(1.0)
        elif isinstance(current, keras.Variable):
            optimizer.learning_rate = rate
        else:
            raise ValueError(
                "StochasticWeightAveraging(swa_lr=...) cannot set the learning rate: the "
                f"optimizer's learning_rate was replaced by {current!r} during fit."
            )
        self._lr_set = True

    def _restore_learning_rate(self):
        """The user's rate back: the variable's value when the phase began, or the schedule."""
        if not self._lr_set:
            return
        self._lr_set = False
        optimizer = _inner_optimizer(self.model)
        current = optimizer._learning_rate
        if isinstance(current, SWALearningRate):
            current.active.assign(0.0)
            optimizer.learning_rate = current.base
        elif isinstance(current, keras.Variable) and self._lr0 is not None:
            optimizer.learning_rate = self._lr0

    # ----------------------------------------------------------- averaging
    def on_epoch_end(self, epoch, logs=None):
        epochs = self._planned_epochs()
        if epochs is None or epoch < self.start_epoch(epochs):
            return
        if self.averages_at(epoch, epochs):
            self._update_average(epoch)
        self._save_state(epoch)
        if epoch == epochs - 1:
            self._completed = True
            self._swap()

    def _update_average(self, epoch):
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

    def on_train_end(self, logs=None):
        model = self.model
        if getattr(model, "train_function", None) is not None and (
            getattr(model.train_function, "__name__", "") == "capture"
        ):
            model.train_function = None
        if not self._swapped:
            self._swap()
        if self.backup_dir and self._completed and is_chief(model.distribute_strategy):
            for path in self._state_files():  # training finished: nothing to resume
                os.remove(path)

    def _swap(self):
        """Puts the average in the model and re-estimates batch norm (once)."""
        self._swapped = True
        self._restore_learning_rate()
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
                self._average_batch_norm_over_workers()
                return
            self.update_batch_norm(data)

    # --------------------------------------------------------------- resume
    def _state_files(self):
        return sorted(glob.glob(os.path.join(self.backup_dir, "swa_state_*.npz")))

    def _state_path(self, epoch):
        return os.path.join(self.backup_dir, f"swa_state_{epoch:06d}.npz")

    def _save_state(self, epoch):
        """Writes the averaging state of the end of `epoch`; keeps the last two epochs."""
        if not self.backup_dir or not is_chief(self.model.distribute_strategy):
            return
        os.makedirs(self.backup_dir, exist_ok=True)
        arrays = {f"w{i}": w for i, w in enumerate(self.averaged_weights or [])}
        path = self._state_path(epoch)
        tmp = path + ".tmp.npz"
        np.savez(
            tmp,
            num_averaged=self.num_averaged,
            lr0=np.nan if self._lr0 is None else self._lr0,
            **arrays,
        )
        os.replace(tmp, path)
        for old in self._state_files():
            if old < self._state_path(epoch - 1):
                os.remove(old)

    def _load_state(self, epoch, epochs):
        """At the first epoch of `fit`: the state of the end of `epoch - 1`, if resuming."""
        if not self.backup_dir:
            return
        if epoch == 0:
            if is_chief(self.model.distribute_strategy):
                for path in self._state_files():  # a fresh run: stale state
                    os.remove(path)
            return
        path = self._state_path(epoch - 1)
        found = os.path.exists(path)
        if found:
            with np.load(path) as state:
                self.num_averaged = int(state["num_averaged"])
                lr0 = float(state["lr0"])
                self._lr0 = None if math.isnan(lr0) else lr0
                count = len([k for k in state.files if k.startswith("w")])
                weights = [state[f"w{i}"] for i in range(count)]
            self.averaged_weights = weights or None
        found = self._sync_state(found)
        if found and self.verbose:
            print_msg(f"SWA: resumed the average of {self.num_averaged} epochs")
        elif not found and epoch > self.start_epoch(epochs):
            warnings.warn(
                f"StochasticWeightAveraging: no saved state for epoch {epoch} in "
                f"{self.backup_dir!r}; the average restarts at epoch {epoch + 1}.",
                stacklevel=2,
            )

    def _sync_state(self, found):
        """Multi-worker: the chief's resumed state on every worker; returns its `found`."""
        strategy = self.model.distribute_strategy
        if not is_multi_worker(strategy):
            return found
        weights = self.averaged_weights or [
            np.zeros(v.shape, "float64") for v in self.model.trainable_variables
        ]
        head = np.array(
            [found, self.averaged_weights is not None, self.num_averaged]
            + [self._lr0 is not None, self._lr0 or 0.0],
            "float64",
        )
        head, *weights = broadcast_from_chief([head] + list(weights), strategy)
        self.num_averaged = int(head[2])
        self._lr0 = float(head[4]) if head[3] else None
        self.averaged_weights = weights if head[1] else None
        return bool(head[0])

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

        strategy = model.distribute_strategy
        count = 0
        try:
            for layer in bn_layers:
                layer.momentum = momentum
            for batch in self._batches(data):
                x = batch[0] if isinstance(batch, (tuple, list)) else batch
                # A distributed batch (the fit data under a strategy): this
                # worker's replicas' parts, one after the other.
                parts = (
                    strategy.experimental_local_results(x)
                    if isinstance(x, tf.distribute.DistributedValues)
                    else [x]
                )
                for part in parts:
                    if self.bn_steps is not None and count >= self.bn_steps:
                        break
                    momentum.assign(count / (count + 1.0))
                    step(part)
                    count += 1
                if self.bn_steps is not None and count >= self.bn_steps:
                    break
        finally:
            for layer, value in zip(bn_layers, saved):
                layer.momentum = value
        self._average_batch_norm_over_workers()
        return count

    def _average_batch_norm_over_workers(self):
        """Multi-worker: the workers' mean of every batch-norm moving statistic, everywhere.

        Keras 3 updates a BatchNormalization's moving statistics from each
        worker's own batches (the variables have no aggregation), so they
        differ between workers; one collective makes them identical.
        """
        strategy = self.model.distribute_strategy
        if not is_multi_worker(strategy):
            return
        variables = [v for layer in self._batch_norm_layers() for v in layer.non_trainable_weights]
        average_variables(variables, strategy)

    def get_config(self):
        return {
            "start": self.start,
            "batch_size": self.batch_size,
            "bn_steps": self.bn_steps,
            "verbose": self.verbose,
            "swa_lr": self.swa_lr,
            "schedule": self.schedule,
            "anneal_epochs": self.anneal_epochs,
            "anneal_strategy": self.anneal_strategy,
            "cycle_epochs": self.cycle_epochs,
            "backup_dir": self.backup_dir,
        }


def _iterator_dataset(iterator):
    """The dataset behind `fit`'s iterator, or None.

    A plain `tf.data` iterator keeps it as `_dataset`; a `tf.distribute`
    iterator keeps one iterator per input worker, and with a single one (one
    process: `MirroredStrategy`, or one worker of a multi-worker strategy)
    its `_dataset` is this process' pipeline (its shard, per-replica batches).
    """
    dataset = getattr(iterator, "_dataset", None)
    if dataset is not None:
        return dataset
    per_worker = getattr(iterator, "_iterators", None)
    if isinstance(per_worker, (list, tuple)) and len(per_worker) == 1:
        return getattr(per_worker[0], "_dataset", None)
    return None


def _check_args(start, batch_size, bn_steps, verbose):
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
