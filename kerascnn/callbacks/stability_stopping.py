"""Validation-free early stopping from per-layer output stability."""

from __future__ import annotations

import copy
import math
import warnings

import keras
import numpy as np

from kerascnn._keras_compat import print_msg
from kerascnn.callbacks.layer_stats import LayerStatistics, resolve_layers

PAPER_PATIENCE = 3
"""The paper's rule: all layers unchanged at the check epoch and two more."""

PRESETS = {
    "paper": {"decimals": 2, "patience": PAPER_PATIENCE, "start_from_epoch": 0},
    "reference": {"decimals": 2, "patience": 4, "start_from_epoch": 1},
}
"""Named settings of the rule.

* `"paper"` (Sec. 3.3, Table 1): r = 2; δ = 0 for all layers at the check
  epoch "and for two more epochs" (4 identical rounded epochs).
* `"reference"`: the paper's public code (`solver_cbs.py`): from its 0-based
  `epoch_count` 5 on, it stops when the last 5 rows of its rounded-mean CSV
  are identical, i.e. 5 identical rounded epochs, the first of which is
  epoch index >= 1 (`patience=4, start_from_epoch=1`). A flat sequence stops
  at epoch index 5 (six epochs run), as the reference does.
"""


def _check_preset(preset):
    if not isinstance(preset, str) or preset not in PRESETS:
        raise ValueError(f"preset must be one of {sorted(PRESETS)}. Received: preset={preset!r}")
    return PRESETS[preset]


def resolve_preset(preset="paper", decimals=None, patience=None, start_from_epoch=None):
    """The rule's `(decimals, patience, start_from_epoch)`: the preset's, unless given.

    Args:
        preset: a key of `PRESETS`. Defaults to `"paper"`.
        decimals, patience, start_from_epoch: explicit values override the
            preset's. Default to None (the preset's).

    Example:

    >>> resolve_preset("reference")
    (2, 4, 1)
    >>> resolve_preset("reference", decimals=1)
    (1, 4, 1)
    """
    values = _check_preset(preset)
    return (
        values["decimals"] if decimals is None else decimals,
        values["patience"] if patience is None else patience,
        values["start_from_epoch"] if start_from_epoch is None else start_from_epoch,
    )


def round_half_even(value, decimals):
    """Rounds `value` to `decimals` places as the reference code does.

    The reference rounds the float64 epoch mean with pandas/numpy's
    `round(decimals)` (`np.round`): scale by 10**decimals in float64, round
    half to even, scale back. So `round_half_even(2.675, 2) == 2.68` (Python's
    `round` gives 2.67, as does rounding the float32 value 2.6749999523).

    Args:
        value: a number, taken as float64.
        decimals: the number of decimal places r.
    """
    return float(np.round(np.float64(value), decimals))


class StabilityRule:
    """The stopping rule on a stream of per-epoch, per-layer means μ.

    Each epoch `update(epoch, mu)` rounds every layer's float64 μ to
    `decimals` places as the reference code does (`round_half_even`) and
    compares it with the previous monitored epoch; an epoch is *stable* when
    no layer's rounded μ changed (δ = 0 for all layers). The rule fires at
    the epoch where `patience` consecutive epochs have been stable, that is,
    `patience + 1` identical rounded values in a row. Epochs with index below
    `start_from_epoch` are ignored. A NaN μ resets the count and makes no
    decision.

    Args:
        decimals: the rounding precision r. Defaults to 2.
        patience: consecutive stable epochs needed. Defaults to 3.
        start_from_epoch: first (0-based) epoch index considered. Defaults to 0.

    Example:

    >>> rule = StabilityRule(decimals=2, patience=3)
    >>> [rule.update(e, {"l": v}) for e, v in enumerate([0.2, 0.1, 0.1, 0.1, 0.1])]
    [False, False, False, False, True]
    """

    def __init__(self, decimals=2, patience=PAPER_PATIENCE, start_from_epoch=0):
        if not isinstance(decimals, int) or isinstance(decimals, bool) or decimals < 0:
            raise ValueError(f"decimals must be an integer >= 0. Received: decimals={decimals!r}")
        if not isinstance(patience, int) or isinstance(patience, bool) or patience < 1:
            raise ValueError(f"patience must be an integer >= 1. Received: patience={patience!r}")
        if (
            not isinstance(start_from_epoch, int)
            or isinstance(start_from_epoch, bool)
            or start_from_epoch < 0
        ):
            raise ValueError(
                "start_from_epoch must be an integer >= 0. "
                f"Received: start_from_epoch={start_from_epoch!r}"
            )
        self.decimals = decimals
        self.patience = patience
        self.start_from_epoch = start_from_epoch
        self.reset()

    def reset(self):
        self.previous = None
        self.stable_epochs = 0

    def update(self, epoch, mu):
        """Feeds epoch `epoch`'s `{layer: μ}`; returns True when training should stop."""
        if epoch < self.start_from_epoch:
            return False
        if any(not math.isfinite(float(v)) for v in mu.values()):
            self.reset()
            return False
        rounded = {name: round_half_even(v, self.decimals) for name, v in mu.items()}
        if self.previous is not None and rounded == self.previous:
            self.stable_epochs += 1
        else:
            self.stable_epochs = 0
        self.previous = rounded
        return self.stable_epochs >= self.patience


def stability_stop_epoch(
    mu_history, decimals=None, patience=None, start_from_epoch=None, preset="paper"
):
    """The 0-based epoch at which the rule stops on a μ history, or None.

    Args:
        mu_history: a list (one entry per epoch) of `{layer: μ}` dicts.
        decimals, patience, start_from_epoch: as in `StabilityRule`. Default
            to None (the preset's).
        preset: `"paper"` or `"reference"` (see `PRESETS`). Defaults to
            `"paper"`.

    Example:

    >>> flat = [{"l": 0.5}] * 8
    >>> stability_stop_epoch(flat), stability_stop_epoch(flat, preset="reference")
    (3, 5)
    """
    rule = StabilityRule(*resolve_preset(preset, decimals, patience, start_from_epoch))
    for epoch, mu in enumerate(mu_history):
        if rule.update(epoch, mu):
            return epoch
    return None


class StabilityStopping(keras.callbacks.Callback):
    """Stops training when every monitored layer's output spread is stable.

    "When do CNNs stop learning?" (ICLR 2022 submission): at every training
    iteration take the unbiased standard deviation α of each monitored
    layer's whole output tensor (batch x H x W x C, training mode); the
    epoch's μ is the (float64) mean of α over the epoch's iterations.
    Training stops once the μ of every layer, rounded to `decimals` places
    with numpy's half-to-even `np.round` (as the reference code's pandas
    `mean().round(r)`), is unchanged for `patience` consecutive epochs. μ comes from the training
    step itself (see `kerascnn.callbacks.layer_stats`): no validation data,
    no extra forward pass.

    Two rules, both reachable by name (`preset`, see `PRESETS`):

    * `preset="paper"` (the default; Sec. 3.3, Table 1): r = 2, δ = 0 for
      all layers at the check epoch "and for two more epochs" (`patience=3`).
      Table 1's ResNet-18/CIFAR-100 values are equal at epochs 73-76
      (1-based), so the rule fires at epoch 76 (`stopped_epoch == 75`,
      0-based as in Keras).
    * `preset="reference"`: the paper's public code, five identical rounded
      epochs from epoch index 1 on (`patience=4, start_from_epoch=1`): a
      flat sequence stops at `stopped_epoch == 5` (the reference's
      `epoch_count` 5, six epochs run).

    Explicit `decimals`, `patience` or `start_from_epoch` override the
    preset's value (e.g. `preset="reference", decimals=1` is the reference
    run with `--precision_point 1`).

    `stability/<layer>` (the unrounded μ) is added to the epoch logs, so
    `History`, `CSVLogger` and `TensorBoard` placed after this callback see
    it (`kerascnn plot-stability` draws them). After training,
    `stopped_epoch` (0-based, 0 when not stopped), `stable_epoch` (0-based
    epoch at which the rule first fired, None if it never did), `epochs_run`,
    `planned_epochs`, `epochs_saved` and `fraction_saved` (of the planned
    epochs of this `fit`) are set. With `monitor_only=True` the callback
    never stops training: it records `stable_epoch` and the saving that
    stopping there would have brought (`predicted_epochs_saved`,
    `predicted_fraction_saved`), e.g. to compare with a full run.

    With `LayerDropping` / `LayerFreezing` in the same `fit`, monitored
    layers of the dropped / frozen prefix are reported stable with the μ of
    their last trained epoch (logged once; listed in `frozen_layers`), and
    the head's layers keep being measured in the head's train step, so the
    rule can still fire after a drop.

    Multi-worker (`tf.distribute.MultiWorkerMirroredStrategy`): the moments
    behind μ are all-reduced inside the step (one SUM, then Chan's merge),
    so every worker sees the μ of the global batch, the same on all of them
    and equal to a single process' over the same global batches, and all
    workers stop in the same epoch (a worker stopping alone would leave the
    others waiting in a collective).

    Args:
        decimals: rounding precision r. Defaults to None (the preset's: 2,
            the paper's choice).
        patience: consecutive stable epochs before stopping. Defaults to
            None (the preset's: 3 for `"paper"`, 4 for `"reference"`).
        start_from_epoch: epochs with a smaller 0-based index are ignored.
            Defaults to None (the preset's: 0 for `"paper"`, 1 for
            `"reference"`).
        layers: `"auto"` (for kerascnn zoo models the stage outputs, the last
            one replaced by the global pooling the classifier sees, as the
            paper's ResNet-18 "layer 18"; else every convolution layer; see
            `default_monitored_layers`) or a list of layer names. Defaults to
            `"auto"`.
        verbose: 0 or 1; 1 prints the stop and the compute saved. Defaults to 0.
        monitor_only: record when the rule fires but never stop. Defaults to
            False.
        preset: `"paper"` or `"reference"`, the named settings above.
            Defaults to `"paper"`.

    Example:

    >>> callback = StabilityStopping(verbose=1)  # the paper's rule
    >>> model.fit(x, y, epochs=200, callbacks=[callback])
    >>> callback.stopped_epoch, callback.fraction_saved
    >>> StabilityStopping(preset="reference")  # the reference code's rule
    """

    def __init__(
        self,
        decimals=None,
        patience=None,
        start_from_epoch=None,
        layers="auto",
        verbose=0,
        monitor_only=False,
        preset="paper",
    ):
        super().__init__()
        decimals, patience, start_from_epoch = resolve_preset(
            preset, decimals, patience, start_from_epoch
        )
        self._rule = StabilityRule(decimals, patience, start_from_epoch)
        if not (isinstance(layers, str) and layers == "auto"):
            if isinstance(layers, str):
                layers = [layers]
            if not isinstance(layers, (list, tuple)) or not all(isinstance(n, str) for n in layers):
                raise TypeError(
                    f"layers must be 'auto' or a list of layer names. Received: layers={layers!r}"
                )
            layers = list(layers)
            if not layers:
                raise ValueError(
                    f"layers must name at least one layer. Received: layers={layers!r}"
                )
        if not isinstance(verbose, (int, np.integer)) or verbose not in (0, 1, 2):
            raise ValueError(f"verbose must be 0, 1 or 2. Received: verbose={verbose!r}")
        if not isinstance(monitor_only, bool):
            raise TypeError(f"monitor_only must be a bool. Received: monitor_only={monitor_only!r}")
        self.monitor_only = monitor_only
        self.preset = preset
        self.decimals = decimals
        self.patience = patience
        self.start_from_epoch = start_from_epoch
        self.layers = layers
        self.verbose = verbose
        self._stats = None
        self._reset_results()

    def _reset_results(self):
        self.stopped_epoch = 0
        self.stable_epoch = None
        self.predicted_epochs_saved = 0
        self.predicted_fraction_saved = 0.0
        self.epochs_run = 0
        self.planned_epochs = 0
        self.epochs_saved = 0
        self.fraction_saved = 0.0
        self.history = []
        self.monitored_layers = []
        self.frozen_layers = {}
        self._initial_epoch = None
        self._rule.reset()

    def get_config(self):
        """The constructor arguments, preset name included (`from_config` inverts it)."""
        return {
            "decimals": self.decimals,
            "patience": self.patience,
            "start_from_epoch": self.start_from_epoch,
            "layers": copy.deepcopy(self.layers),
            "verbose": self.verbose,
            "monitor_only": self.monitor_only,
            "preset": self.preset,
        }

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def __deepcopy__(self, memo):
        # keras-tuner deep-copies callbacks: copy the configuration and the
        # results, never the model, the collector or its variables.
        new = type(self).from_config(copy.deepcopy(self.get_config(), memo))
        for attr in (
            "stopped_epoch",
            "stable_epoch",
            "epochs_run",
            "planned_epochs",
            "epochs_saved",
            "fraction_saved",
            "predicted_epochs_saved",
            "predicted_fraction_saved",
        ):
            setattr(new, attr, getattr(self, attr))
        new.history = copy.deepcopy(self.history, memo)
        new.monitored_layers = list(self.monitored_layers)
        return new

    def on_train_begin(self, logs=None):
        self._reset_results()
        self.monitored_layers = resolve_layers(self.model, self.layers)
        self._stats = LayerStatistics.acquire(self.model, self, activations=self.monitored_layers)

    def on_epoch_begin(self, epoch, logs=None):
        if self._initial_epoch is None:
            self._initial_epoch = epoch
        self._stats.begin_epoch(epoch)

    def on_epoch_end(self, epoch, logs=None):
        result = self._stats.read()
        # float64, as the reference's pandas mean: rounding 2.675 must give 2.68.
        mu = {
            name: float(np.float64(result.activations[name]["std"]))
            for name in self.monitored_layers
        }
        self.frozen_layers = {n: v for n, v in result.frozen.items() if n in mu}
        self.history.append(mu)
        self.epochs_run += 1
        if logs is not None:
            for name, value in mu.items():
                logs[f"stability/{name}"] = value
        if epoch < self.start_from_epoch:
            return
        bad = [name for name, value in mu.items() if not math.isfinite(value)]
        if bad:
            warnings.warn(
                f"StabilityStopping: non-finite μ at epoch {epoch + 1} for layers "
                f"{bad}; no stop decision this epoch.",
                stacklevel=2,
            )
        if self._rule.update(epoch, mu):
            if self.stable_epoch is None:
                self.stable_epoch = epoch
            if not self.monitor_only:
                self.stopped_epoch = epoch
                self.model.stop_training = True

    def on_train_end(self, logs=None):
        if self._stats is not None:
            self._stats.release(self)
            self._stats = None
        epochs = (self.params or {}).get("epochs") or 0
        start = self._initial_epoch or 0
        self.planned_epochs = max(epochs - start, self.epochs_run)
        self.epochs_saved = self.planned_epochs - self.epochs_run
        self.fraction_saved = (
            self.epochs_saved / self.planned_epochs if self.planned_epochs else 0.0
        )
        if self.stable_epoch is not None:
            self.predicted_epochs_saved = self.planned_epochs - (self.stable_epoch + 1 - start)
            self.predicted_fraction_saved = (
                self.predicted_epochs_saved / self.planned_epochs if self.planned_epochs else 0.0
            )
        if self.verbose and self.monitor_only and self.stable_epoch is not None:
            print_msg(
                f"StabilityStopping (monitor only): all {len(self.monitored_layers)} monitored "
                f"layers stable at epoch {self.stable_epoch + 1}; stopping there would have "
                f"saved {self.predicted_epochs_saved} of {self.planned_epochs} planned epochs "
                f"({100 * self.predicted_fraction_saved:.1f}%)."
            )
        if self.verbose and self.stopped_epoch:
            print_msg(
                f"Epoch {self.stopped_epoch + 1}: StabilityStopping: all "
                f"{len(self.monitored_layers)} "
                f"monitored layers stable for {self.patience} epochs at {self.decimals} decimals; "
                f"ran {self.epochs_run} of {self.planned_epochs} planned epochs, saved "
                f"{self.epochs_saved} ({100 * self.fraction_saved:.1f}%)."
            )
