"""Learn&Drop layer dropping as a Keras callback, with a tf.data feature cache.

`LayerDropping` implements Cruciata et al., "Learn&Drop: Fast Learning of
CNNs based on Layer Dropping" (`shared/papers/learn-and-drop_layer-dropping.txt`)
inside a plain `model.fit(x, callbacks=[LayerDropping(...)])`.

How the switch happens in the middle of `fit` (TensorFlow backend). Keras'
`fit` loop calls `model.train_function(raw_iterator)` once per step (per
`steps_per_execution` steps) and looks the attribute up at every step. The
callback replaces it at `on_epoch_begin`:

* **warm-up / no drop yet**: keras' own train function (hooked by
  `LayerStatistics` to accumulate the per-weight gradient sums of eq. 2).
* **build epoch** (the epoch after a drop decision, the paper's epoch k+1):
  its first step runs the whole epoch's *tail* forward pass first: a
  forward-only function (inference mode: batch norm uses its moving
  statistics; cast to `cache_dtype` in the graph) takes `params["steps"]`
  batches from its source and the host appends the features to a
  `FeatureCache` (memory, or TFRecord files on disk). The source is the raw
  iterator that `fit` hands over for the first drop and for `refresh_every`
  refreshes, and the previous cache for a further drop (running only the
  layers between the two cut points). Then the head trains on the cache for
  the rest of the epoch, with the same train function as every later epoch,
  so each head is traced exactly once (the tail's forward function once per
  build); a refresh at the same cut keeps the head and its trace. The tail's
  weights no longer change, so computing all features before the head's
  first step gives the same features as computing them step by step. The
  set-up (split, head compile, tail forward + cache write, pipeline, first
  head step with its trace) is timed per build (`timings`, logs, `verbose`).
* **cache epochs**: a function that *ignores* the raw iterator and runs the
  head's train function on an iterator over the cache (shuffled every epoch,
  repeated so each `fit` epoch takes the same number of batches as the raw
  data). The raw images are not read any more except for what the raw
  pipeline prefetches when keras creates its per-epoch iterator.

The head is a small `keras.Model` wrapping a functional sub-model that
shares the layer objects (and variables) of `model`; it is compiled with
`model`'s optimizer object (same slots, iterations, learning-rate schedule)
and its train step computes the loss and updates the metrics of `model`
(`model.compute_loss`, `model.compute_metrics`), so History keeps the usual
keys with the head's training values, and `model` always holds every layer
with its current weights: validation inside `fit`, `evaluate`, `predict` and
saving use the full model on raw data. Gradient statistics come from the
model's `LayerStatistics` (the one collector every callback shares), which
follows the head after a drop (`LayerStatistics.follow`): the optimizer's
gradients and the head layers' activations are recorded in the head's train
step, and monitored layers of the dropped prefix are reported stable at the
value of their last trained epoch (`LayerStatistics.freeze_layers`), so
`StabilityStopping` and `LayerMetrics` keep working in the same `fit`.
No `trainable` flag is changed: checkpoints written during `fit` carry the
user's flags and the full optimizer state.

Epoch logs (and so TensorBoard and History) get `learn_drop/dropped_convs`,
`learn_drop/train_macs` (forward MACs per sample of what ran in training
this epoch, `kerascnn.observe.summary.summarize(...).macs`),
`learn_drop/epoch_seconds`, `learn_drop/setup_seconds` (the build's set-up,
0 on other epochs), `learn_drop/cache_bytes` (size of the current cache, 0
before the first drop) and `learn_drop/score/<conv>` (P_l of eq. 2, NaN for
dropped layers).

Data augmentation: the cache holds the features of *one* augmented view of
each image (the build epoch's). Training on it afterwards sees no new
augmentation, which may cost accuracy on small data; `refresh_every=k`
recomputes the cache from fresh augmented raw data every k epochs (costs one
tail forward pass over the raw data per refresh).

Resuming with `keras.callbacks.BackupAndRestore`: pass `backup_dir` (e.g.
the same directory). The callback writes its state (cut point, the P' of
dropped layers, pending decision) to `backup_dir/learn_drop_state.json` at
every epoch end; on a resumed `fit` (its first epoch equals the saved next
epoch) it restores the state and rebuilds the cache from raw data in that
epoch. Without `backup_dir` a resumed `fit` warns and starts the dropping
decisions afresh (the model's weights are those restored).

Multi-worker (`tf.distribute.MultiWorkerMirroredStrategy`, one process per
worker, each with its own shard of the data): the gradient sums behind the
scores are those the optimizer applies, all-reduced in the step, so every
worker computes the same scores and takes the same decision in the same
epoch. Each worker caches the features of its own shard (the local results
of the distributed tail pass), in memory or in its own fresh sub-directory
of `cache`, and trains the head (compiled under the strategy's scope, with
the shared optimizer) on a per-worker input pipeline over its own cache
(`distribute_datasets_from_function`, no re-sharding), so the global batch
keeps its size. Only the chief (`kerascnn._distribute.is_chief`) writes and
removes the state file; on resume the chief's state is broadcast to every
worker, so they all resume at the same cut.
"""

from __future__ import annotations

import json
import math
import os
import time
import warnings
import weakref

import keras
import numpy as np
import tensorflow as tf

from kerascnn._distribute import broadcast_json, is_chief, is_multi_worker
from kerascnn._keras_compat import (
    print_msg,
    unpack_x_y_sample_weight,
    unscale_loss_for_distribution,
)
from kerascnn.callbacks.layer_stats import LayerStatistics
from kerascnn.callbacks.learn_drop.feature_cache import FeatureCache, check_directory
from kerascnn.callbacks.learn_drop.model_split import conv_cut_points, flatten_nested, sub_model
from kerascnn.callbacks.learn_drop.score import (
    PAPER_MIN_LAYERS,
    check_min_layers,
    decide,
    finite_or_none,
    layer_score,
)

STATE_FILE = "learn_drop_state.json"


def _is_int(value):
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def layer_macs(model):
    """`{layer name: forward MACs per sample}` of `model`'s layers.

    `kerascnn.observe.summary.summarize` counts only `model`'s own calls of each
    layer, so the sub-models that share its layers do not inflate the counts.
    """
    from kerascnn.observe.summary import summarize

    return {row.name: int(row.macs) for row in summarize(model).layers}


def sub_macs(table, sub):
    """Forward MACs of a sub-model whose layers are named as in `table`."""
    return int(sum(table.get(layer.name, 0) for layer in sub.layers))


class _Head(keras.Model):
    """Trains a head sub-model with the loss, metrics and optimizer of `full`.

    `pre` (LayerFreezing only) runs the frozen tail in inference mode under
    `tf.stop_gradient` inside the same step. `trace_count` counts the Python
    executions of `train_step`, i.e. its traces (one per replica) once the
    step is compiled: `LayerDropping` traces each head once.
    """

    def __init__(self, full, core, pre=None):
        super().__init__(name=f"{full.name}_learn_drop_head")
        self.core = core
        # Not tracked: `pre` and `full` share layers with `core`'s model.
        object.__setattr__(self, "_full", full)
        object.__setattr__(self, "_pre", pre)
        object.__setattr__(self, "_input_dtypes", [t.dtype for t in core.inputs])
        object.__setattr__(self, "trace_count", 0)

    def call(self, inputs, training=None):
        return self.core(inputs, training=training)

    def _cast_inputs(self, x):
        flat = tf.nest.flatten(x)
        cast = [tf.cast(t, d) for t, d in zip(flat, self._input_dtypes, strict=True)]
        return tf.nest.pack_sequence_as(x, cast)

    def train_step(self, data):
        object.__setattr__(self, "trace_count", self.trace_count + 1)
        full = self._full
        x, y, sample_weight = unpack_x_y_sample_weight(data)
        if self._pre is not None:
            x = tf.nest.map_structure(tf.stop_gradient, self._pre(x, training=False))
        x = self._cast_inputs(x)
        with tf.GradientTape() as tape:
            y_pred = self.core(x, training=True)
            loss = full._compute_loss(
                x=x, y=y, y_pred=y_pred, sample_weight=sample_weight, training=True
            )
            full._loss_tracker.update_state(
                unscale_loss_for_distribution(loss),
                sample_weight=tf.shape(tf.nest.flatten(x)[0])[0],
            )
            loss = full.optimizer.scale_loss(loss)
        variables = self.core.trainable_weights
        gradients = tape.gradient(loss, variables)
        full.optimizer.apply_gradients(zip(gradients, variables))
        return full.compute_metrics(x, y, y_pred, sample_weight=sample_weight)


class _LearnDropBase(keras.callbacks.Callback):
    """Score, decision, logs and state shared by LayerDropping and LayerFreezing."""

    _verb = "drop"

    def __init__(self, warmup_epochs, force_drops, cut_points, log_scores, verbose):
        super().__init__()
        if not _is_int(warmup_epochs) or warmup_epochs < 0:
            raise ValueError(
                f"warmup_epochs must be an integer >= 0. Received: warmup_epochs={warmup_epochs!r}"
            )
        if force_drops is not None and not isinstance(force_drops, dict):
            raise TypeError(
                "force_drops must be None or a dict {epoch: layer name or number of "
                f"convolutions}}. Received: force_drops={force_drops!r}"
            )
        force_drops = dict(force_drops or {})
        for epoch, cut in force_drops.items():
            valid_cut = (isinstance(cut, str) and cut) or (_is_int(cut) and cut >= 1)
            if not _is_int(epoch) or epoch < 0 or not valid_cut:
                raise ValueError(
                    "force_drops must map epoch indices (integers >= 0) to a layer name or "
                    "a number of convolutions (an integer >= 1). "
                    f"Received: force_drops={force_drops!r}"
                )
        if not (isinstance(cut_points, str) and cut_points == "auto") and (
            isinstance(cut_points, str)
            or not isinstance(cut_points, (list, tuple))
            or not cut_points
            or not all(isinstance(c, str) for c in cut_points)
        ):
            raise ValueError(
                "cut_points must be 'auto' or a list of layer names. "
                f"Received: cut_points={cut_points!r}"
            )
        if not isinstance(log_scores, bool):
            raise TypeError(f"log_scores must be a bool. Received: log_scores={log_scores!r}")
        if not isinstance(verbose, (int, np.integer)) or verbose not in (0, 1, 2):
            raise ValueError(f"verbose must be 0, 1 or 2. Received: verbose={verbose!r}")
        self.warmup_epochs = warmup_epochs
        self.force_drops = force_drops
        self.cut_points = cut_points
        self.log_scores = log_scores
        self.verbose = verbose
        self.history = []  # one dict per epoch: scores, decision
        self._reset_state()

    def _reset_state(self):
        self.dropped = 0  # convolutions in the tail
        self.cut = None
        self.dropped_scores = []
        self._pending = None  # (k, cut) decided at the end of an epoch
        self._stats = None

    # -- checks ---------------------------------------------------------
    def _check_model(self):
        name = type(self).__name__
        if keras.backend.backend() != "tensorflow":
            raise RuntimeError(
                f"{name} needs the TensorFlow backend. "
                f"Received: backend={keras.backend.backend()!r}"
            )
        if self.model.optimizer is None:
            raise ValueError(f"{name} needs a compiled model (call model.compile first).")

    def _make_plan(self):
        """The cut plan (clear errors for unsupported models), then weight checks."""
        self._make_cut_plan()
        name = type(self).__name__
        if not self.model.trainable_weights:
            raise ValueError(
                f"{name} needs a model with trainable weights; model {self.model.name!r} has "
                "none (every layer has trainable=False), so there is nothing to score or "
                f"{self._verb}. Received: model={self.model.name!r}"
            )

    # -- plan -----------------------------------------------------------
    def _make_cut_plan(self):
        plan = conv_cut_points(self.model)
        if self.cut_points != "auto":
            allowed = set(self.cut_points)
            unknown = allowed - set(plan.valid)
            if unknown:
                raise ValueError(
                    f"cut_points {sorted(unknown)} are not cut points of "
                    f"model {self.model.name!r}. Valid: {plan.valid}. "
                    f"Received: cut_points={self.cut_points!r}"
                )
            plan.cuts = {k: c for k, c in plan.cuts.items() if c in allowed}
        self.plan = plan

    def _forced(self, epoch):
        value = self.force_drops.get(epoch)
        if value is None:
            return None
        if isinstance(value, str):
            k = next((k for k, c in self.plan.cuts.items() if c == value), None)
            if k is None:
                raise ValueError(
                    f"force_drops[{epoch}]={value!r} is not a cut point leaving a convolution "
                    f"in the head; cut points: {self.plan.cuts}"
                )
            return k
        return self.plan.round_down(value, self.dropped)

    # -- statistics -------------------------------------------------------
    def _acquire(self):
        """Gradient sums of every convolution, for the whole `fit`.

        The request never changes during `fit` (no re-installation, so the
        accumulators of other consumers are never reset mid-epoch); dropped
        convolutions simply receive no gradients. After a drop the collector
        follows the head (`LayerStatistics.follow`).
        """
        self._stats = LayerStatistics.acquire(
            self.model, self, gradients=self.plan.convs, gradient_stats=("sum", "abs_sum")
        )

    def _freeze_prefix(self, epoch, k):
        """Tells the statistics that the prefix up to cut `k` stops training."""
        tail = sub_model(self.model, None, self.plan.cuts[k], name=f"{self.model.name}_tail")
        reason = "frozen" if self._verb == "freeze" else "dropped"
        self._stats.freeze_layers([layer.name for layer in tail.layers], epoch, reason)

    def _release_stats(self):
        if self._stats is not None:
            self._stats.follow(None)
            self._stats.release(self)
            self._stats = None

    def _install(self, mode):
        """Points `model.train_function` at this callback's `mode` function.

        The installed function holds only weak references, so an interrupted
        `fit` does not keep the callback (and its cache) alive through the
        model; in a later `fit` without this callback it rebuilds keras' own
        train function.
        """
        self._mode = mode
        model_ref, callback_ref = weakref.ref(self.model), weakref.ref(self)

        def train_function(iterator):
            callback, model = callback_ref(), model_ref()
            if callback is None or getattr(model, "history", None) is not callback._fit_history:
                model.make_train_function(force=True)
                return model.train_function(iterator)
            try:
                return callback._run(iterator)
            except (StopIteration, tf.errors.OutOfRangeError):
                raise
            except BaseException:
                callback._abort()
                raise

        self.model.train_function = train_function

    def _scores(self):
        result = self._stats.read()
        scores = {}
        for name in self.plan.convs[self.dropped :]:
            entry = result.gradients.get(name)
            if entry is None or not entry.get("steps"):
                scores[name] = float("nan")
            else:
                scores[name] = layer_score(entry["sum"], entry["abs_sum"])
        return scores

    def _decide(self, epoch, scores, may_decide):
        """Returns (k, standardized) with k the new tail size or None."""
        names = self.plan.convs[self.dropped :]
        raw = [scores[n] for n in names]
        forced = self._forced(epoch)
        min_layers = getattr(self, "min_layers", PAPER_MIN_LAYERS)
        count, standardized = decide(raw, self.dropped_scores, min_layers=min_layers)
        if forced is not None and forced > self.dropped:
            return forced, standardized
        if not may_decide or epoch < self.warmup_epochs or count == 0:
            return None, standardized
        # Every conv is a cut point; only a user's `cut_points` list can round down,
        # and a rounded-down drop still takes at least `min_layers` layers (Alg. 1, n* > 1).
        k = self.plan.round_down(self.dropped + count, self.dropped + min_layers - 1)
        return k, standardized

    def _epoch_logs(self, logs, scores, macs):
        logs[f"learn_drop/{self._verb}ped_convs"] = float(self.dropped)
        logs["learn_drop/train_macs"] = float(macs)
        if self.log_scores:
            for name in self.plan.convs:
                logs[f"learn_drop/score/{name}"] = float(scores.get(name, float("nan")))

    def _record_decision(self, epoch, k, standardized, scores):
        names = self.plan.convs[self.dropped :]
        entry = {
            "epoch": epoch,
            "scores": {n: finite_or_none(scores[n]) for n in names},
            "standardized": {n: finite_or_none(v) for n, v in zip(names, standardized)},
            "decision": None,
        }
        if k is not None:
            new = self.plan.convs[self.dropped : k]
            self.dropped_scores += [
                float(v) if math.isfinite(v) else 0.0 for v in list(standardized)[: len(new)]
            ]
            entry["decision"] = {"cut": self.plan.cuts[k], "convs": k}
            if self.verbose:
                print_msg(
                    f"\nEpoch {epoch + 1}: Learn&Drop {self._verb}s {len(new)} convolutions "
                    f"({new[0]} .. {new[-1]}), cut after {self.plan.cuts[k]!r}."
                )
        self.history.append(entry)


class LayerDropping(_LearnDropBase):
    """Learn&Drop: drops the first layers once they stop learning.

    At the end of every epoch after `warmup_epochs`, the score P_l (eq. 2 of
    the paper) of each convolution still trained is computed from the
    epoch's per-weight gradient sums, standardised (eq. 3), the candidates
    `l_z .. l_n*` found (eq. 4) and checked against the median of the
    previously dropped layers (Algorithm 1, which drops only when `n* > 1`:
    `min_layers`). The cut falls right after the n*-th convolution's
    BN/activation/pool (`kerascnn.callbacks.learn_drop.model_split`); inside
    a ResNet residual block every tensor crossing the cut (main path and
    shortcut) is cached, as in the paper's Figure 3. `cut_points=
    conv_cut_points(model).single` keeps only single-tensor cuts (ResNet
    block boundaries, VGG groups), rounding down. From the next epoch on only the
    head is trained, on features cached once (see the module docstring for
    the mechanics, the augmentation trade-off and resuming).

    Args:
        warmup_epochs: epochs before the first decision (e1 of Algorithm 1;
            the first decision is taken at the end of epoch index
            `warmup_epochs`). Defaults to 5 (the paper's MNIST setting).
        cache: `"memory"`, or a directory under which a fresh cache
            sub-directory of TFRecord files is created (and removed at the
            end of `fit`, on exceptions when the callback is collected, and
            at interpreter exit). Defaults to `"memory"`.
        cache_dtype: storage dtype of cached features, e.g. `"float16"`, or
            None to keep the compute dtype. Defaults to None.
        refresh_every: recompute the cache from fresh (augmented) raw data
            every this many epochs after it was built, or None. Defaults to
            None.
        shuffle_buffer: samples in the shuffle buffer of a disk cache (a
            memory cache is shuffled fully). Defaults to 4096.
        seed: seed of the cache shuffling. Defaults to None.
        backup_dir: directory for the callback's state, for resuming with
            `keras.callbacks.BackupAndRestore`; None disables it. Defaults to
            None.
        force_drops: for tests and experiments only: `{epoch: cut}`, drop at
            the end of that epoch up to `cut` (a layer name from
            `conv_cut_points(model).cuts`, or a number of convolutions,
            rounded down to a cut point) whatever the score says. Defaults to
            None.
        cut_points: `"auto"` or the list of layer names allowed as cuts.
            Defaults to `"auto"`.
        log_scores: add `learn_drop/score/<conv>` to the epoch logs.
            Defaults to True.
        verbose: 0, 1 or 2; non-zero prints each drop and, after each build,
            the cache size and the set-up times. Defaults to 0.
        min_layers: the fewest convolutions one drop takes. Defaults to 2,
            Algorithm 1's `n* > 1` (a single candidate layer is not
            dropped); 1 restores the looser pre-#14 rule.

    Composition: checkpoints written during `fit` (`ModelCheckpoint`,
    `BackupAndRestore`) hold the full model with the user's `trainable`
    flags and the full optimizer state (nothing is frozen by flag).
    Statistics callbacks (`StabilityStopping`, `LayerMetrics`) keep working
    after a drop: head layers are measured in the head's train step, layers
    of the dropped prefix are reported stable at their last trained value.
    A functional model containing nested functional / Sequential models
    (e.g. a `keras.applications` backbone) is inlined
    (`kerascnn.callbacks.learn_drop.model_split.flatten_nested`), so cuts can fall inside it.

    Example:

    ```python
    model.fit(x, y, epochs=60, validation_data=(xv, yv),
              callbacks=[LayerDropping(warmup_epochs=5, cache="/tmp/feat")])
    ```
    """

    _verb = "drop"

    def __init__(
        self,
        warmup_epochs=5,
        cache="memory",
        cache_dtype=None,
        refresh_every=None,
        shuffle_buffer=4096,
        seed=None,
        backup_dir=None,
        force_drops=None,
        cut_points="auto",
        log_scores=True,
        verbose=0,
        min_layers=PAPER_MIN_LAYERS,
    ):
        super().__init__(warmup_epochs, force_drops, cut_points, log_scores, verbose)
        self.min_layers = check_min_layers(min_layers)
        if not (isinstance(cache, str) and cache == "memory") and not isinstance(
            cache, (str, os.PathLike)
        ):
            raise TypeError(
                f"cache must be 'memory' or a directory path. Received: cache={cache!r}"
            )
        if isinstance(cache, str) and not cache:
            raise ValueError(
                f"cache must be 'memory' or a directory path. Received: cache={cache!r}"
            )
        if cache_dtype is not None:
            try:
                floating = tf.dtypes.as_dtype(cache_dtype).is_floating
            except TypeError:
                floating = False
            if not floating:
                raise ValueError(
                    "cache_dtype must be a float dtype (e.g. 'float16') or None. "
                    f"Received: cache_dtype={cache_dtype!r}"
                )
        if refresh_every is not None and (not _is_int(refresh_every) or refresh_every < 1):
            raise ValueError(
                "refresh_every must be None or an integer >= 1. "
                f"Received: refresh_every={refresh_every!r}"
            )
        if not _is_int(shuffle_buffer) or shuffle_buffer < 1:
            raise ValueError(
                "shuffle_buffer must be an integer >= 1. "
                f"Received: shuffle_buffer={shuffle_buffer!r}"
            )
        if seed is not None and not _is_int(seed):
            raise TypeError(f"seed must be None or an integer. Received: seed={seed!r}")
        if backup_dir is not None and (
            not isinstance(backup_dir, (str, os.PathLike)) or not os.fspath(backup_dir)
        ):
            raise TypeError(
                f"backup_dir must be None or a directory path. Received: backup_dir={backup_dir!r}"
            )
        self.cache = cache
        self.cache_dtype = cache_dtype
        self.refresh_every = refresh_every
        self.shuffle_buffer = shuffle_buffer
        self.seed = seed
        self.backup_dir = None if backup_dir is None else os.fspath(backup_dir)
        # One dict per build: epoch, source, epoch_seconds, setup_seconds (= split_seconds +
        # compile_seconds + extract_seconds + pipeline_seconds), write_seconds (part of the
        # extract), first_step_seconds (incl. the head's trace), head_traces (train_step
        # traces, one per replica), extract_traces, bytes, samples, on_disk.
        self.timings = []

    # ------------------------------------------------------------------
    def _reset_state(self):
        super()._reset_state()
        self._head = None
        self._feature_cache = None
        self._building = None  # dict while a build epoch runs
        self._cache_iter = None
        self._epochs_since_build = 0
        self._first_epoch = True

    @property
    def _cache_dir(self):
        return None if self.cache == "memory" else os.fspath(self.cache)

    def on_train_begin(self, logs=None):
        self._check_model()
        self._reset_state()
        self.history = []
        self.timings = []
        self._make_plan()
        if self._cache_dir is not None:
            check_directory(self._cache_dir)
        self._fit_history = getattr(self.model, "history", None)
        self._macs_table = layer_macs(flatten_nested(self.model))
        self._full_macs = sum(self._macs_table.values())
        self._acquire()

    # -- resume ----------------------------------------------------------
    def _state_path(self):
        return os.path.join(self.backup_dir, STATE_FILE)

    def _save_state(self, next_epoch):
        if self.backup_dir is None or not is_chief(self.model.distribute_strategy):
            return
        os.makedirs(self.backup_dir, exist_ok=True)
        state = {
            "version": 1,
            "model": self.model.name,
            "convs": self.plan.convs,
            "next_epoch": next_epoch,
            "dropped": self.dropped if self._pending is None else self._pending[0],
            "dropped_scores": self.dropped_scores,
            "history": self.history,
        }
        tmp = self._state_path() + ".tmp"
        with open(tmp, "w") as f:
            json.dump(state, f)
        os.replace(tmp, self._state_path())

    def _maybe_resume(self, epoch):
        if epoch == 0:
            return
        state = None
        strategy = self.model.distribute_strategy
        chief = is_chief(strategy)
        if self.backup_dir is not None and chief and os.path.exists(self._state_path()):
            with open(self._state_path()) as f:
                state = json.load(f)
        if self.backup_dir is not None:
            state = broadcast_json(state, strategy)  # the chief's state on every worker
        if (
            state is None
            or state.get("next_epoch") != epoch
            or state.get("convs") != self.plan.convs
        ):
            warnings.warn(
                f"LayerDropping starts at epoch {epoch} without a matching saved state "
                f"(backup_dir={self.backup_dir!r}); dropping decisions start afresh.",
                stacklevel=2,
            )
            return
        self.dropped_scores = list(state["dropped_scores"])
        self.history = list(state["history"])
        k = int(state["dropped"])
        if k:
            self._pending = (k, self.plan.cuts[k])
            self._resume_refresh = True
            self._freeze_prefix(epoch - 1, k)

    # -- epochs ------------------------------------------------------------
    def on_epoch_begin(self, epoch, logs=None):
        self._resume_refresh = False
        if self._first_epoch:
            self._first_epoch = False
            self._maybe_resume(epoch)
        self._epoch_start = time.perf_counter()
        refresh = (
            self.refresh_every is not None
            and self.cut is not None
            and self._epochs_since_build >= self.refresh_every
        )
        if self._pending is not None:
            k, cut = self._pending
            self._pending = None
            from_raw = self.cut is None or self._resume_refresh
            self._start_build(epoch, k, cut, from_raw)
        elif refresh:
            self._start_build(epoch, self.dropped, self.cut, True)
        elif self._head is not None:
            self._install("cache")
        self._stats.begin_epoch(epoch)

    def _start_build(self, epoch, k, cut, from_raw):
        """Splits the model and prepares the build epoch (traces nothing).

        A refresh at the same cut keeps the head (and its traced train
        function); a new cut builds and compiles a new head.
        """
        model = self.model
        strategy = model.distribute_strategy
        start = time.perf_counter()
        reuse = self._head is not None and cut == self.cut
        pre = sub_model(
            model, None if from_raw else self.cut, cut, name=f"{model.name}_learn_drop_pre"
        )
        core = None if reuse else sub_model(model, cut, None, name=f"{model.name}_learn_drop_core")
        split_seconds = time.perf_counter() - start
        head = self._head
        if not reuse:
            with strategy.scope():
                head = _Head(model, core)
                head.compile(
                    optimizer=model.optimizer,
                    steps_per_execution=model.steps_per_execution,
                    jit_compile=False,
                    run_eagerly=model.run_eagerly,
                )
            self._head_macs = sub_macs(self._macs_table, core)
        old_cache, source_iter = self._feature_cache, None
        if not from_raw:
            # One pass over the previous cache; the new cache is shuffled on read.
            source_iter = iter(self._distribute_cache(old_cache, shuffle=False, repeat=False))
        self.dropped, self.cut, self._head = k, cut, head
        self._stats.follow(head)
        self._building = {
            "epoch": epoch,
            "cache": FeatureCache(
                directory=self._cache_dir,
                dtype=self.cache_dtype,
                shuffle_buffer=self.shuffle_buffer,
            ),
            "old_cache": old_cache,
            "source_iter": source_iter,
            "source": "raw" if from_raw else "cache",
            "start": start,
            "macs": sub_macs(self._macs_table, pre) + self._head_macs,
            "extract": self._extract_function(pre),
            "split_seconds": split_seconds,
            "compile_seconds": time.perf_counter() - start - split_seconds,
            "traces_before": head.trace_count,
            "capacity": None if from_raw else old_cache.num_samples,
        }
        self._feature_cache, self._cache_iter = self._building["cache"], None
        self._install("build")

    def _extract_function(self, pre):
        """A tf.function: one batch from an iterator -> `(features, y[, w])` of `pre`.

        Forward only, in inference mode, cast to `cache_dtype` in the graph.
        It takes the iterator, so it is traced once (also for a last partial
        batch). Layers still monitored by `LayerStatistics` (a resumed run's
        dropped prefix without a value yet) are recorded when the collector
        offers `wrap_forward`.
        """
        strategy = self.model.distribute_strategy
        dtype = None if self.cache_dtype is None else tf.dtypes.as_dtype(self.cache_dtype)

        def cast(t):
            return tf.cast(t, dtype) if dtype is not None and t.dtype.is_floating else t

        def forward(data):
            x, y, sample_weight = unpack_x_y_sample_weight(data)
            features = tf.nest.map_structure(cast, pre(x, training=False))
            if isinstance(features, list):
                features = tuple(features)
            return (features, y) if sample_weight is None else (features, y, sample_weight)

        wrap = getattr(self._stats, "wrap_forward", None)
        step = wrap(forward) if wrap is not None else forward

        @tf.function(autograph=False)  # no Python control flow on tensors: faster trace
        def extract(iterator):
            return strategy.run(step, args=(next(iterator),))

        return extract

    def _run(self, iterator):
        # The same keras train function of the head for the build epoch and
        # every cache epoch (built once, traced at its first call).
        self._head.make_train_function()  # no-op once built
        train = self._head.train_function
        if self._mode == "build":
            self._build_cache(iterator)
            start = time.perf_counter()
            logs = train(self._cache_iter)
            self._building["first_step_seconds"] = time.perf_counter() - start
            return logs
        return train(self._cache_iter)

    def _build_cache(self, iterator):
        """First step of a build epoch: the whole epoch's features into the cache.

        Reads `params["steps"]` batches of the raw data (or the whole previous
        cache) through the forward-only extract function, then finalizes the
        cache and creates its (repeated, reshuffled) iterator; the head then
        trains on it for the rest of this epoch and every later epoch.
        """
        build = self._building
        raw = build["source_iter"] is None
        source = iterator if raw else build["source_iter"]
        steps = self.params.get("steps") if raw else None
        cache, extract = build["cache"], build["extract"]
        start, count = time.perf_counter(), 0
        while steps is None or count < steps:
            try:
                payload = extract(source)
            except (StopIteration, tf.errors.OutOfRangeError):
                break
            arrays = tf.nest.map_structure(self._to_numpy, payload)
            if count == 0 and not cache.on_disk:
                # Preallocate the memory cache (one buffer per field, no concatenation).
                batch = len(tf.nest.flatten(arrays)[0])
                cache.capacity = steps * batch if raw and steps else build["capacity"]
            cache.append(*arrays)
            count += 1
        cache.finalize()
        build["extract_seconds"] = time.perf_counter() - start
        build["extract_traces"] = int(extract.experimental_get_tracing_count())
        if cache.num_samples == 0:
            raise RuntimeError("LayerDropping: the build epoch produced no features.")
        start = time.perf_counter()
        self._batch_size = int(cache.batch_size)
        self._cache_iter = iter(
            self._distribute_cache(cache, shuffle=True, seed=self.seed, repeat=True)
        )
        build["pipeline_seconds"] = time.perf_counter() - start
        self._mode = "cache"  # the rest of this epoch trains the head on the cache

    def _distribute_cache(self, cache, **options):
        """`cache` as a distributed dataset of `self._batch_size` samples per step here.

        `self._batch_size` is what this process' replicas took per step.
        Single process: the global batch, split over the replicas as usual.
        Multi-worker: each worker's cache holds its own shard, so each worker
        reads its own cache (one pipeline per worker, per-replica batches,
        no auto-sharding).
        """
        strategy = self.model.distribute_strategy
        if not is_multi_worker(strategy):
            return strategy.experimental_distribute_dataset(
                cache.dataset(self._batch_size, **options)
            )
        local = max(1, len(strategy.extended.worker_devices))
        per_replica = max(1, self._batch_size // local)
        return strategy.distribute_datasets_from_function(
            lambda context: cache.dataset(per_replica, **options)
        )

    def _to_numpy(self, value):
        parts = self.model.distribute_strategy.experimental_local_results(value)
        if len(parts) == 1:
            return np.asarray(parts[0])
        return np.concatenate([np.asarray(p) for p in parts])

    def on_epoch_end(self, epoch, logs=None):
        logs = logs if logs is not None else {}
        built = self._building
        if built is not None:
            self._finish_build(epoch)
        scores = self._scores()
        k, standardized = self._decide(epoch, scores, may_decide=built is None)
        macs = (
            built["macs"]
            if built is not None
            else (self._head_macs if self._head is not None else self._full_macs)
        )
        self._epoch_logs(logs, scores, macs)
        logs["learn_drop/epoch_seconds"] = time.perf_counter() - self._epoch_start
        logs["learn_drop/setup_seconds"] = self.timings[-1]["setup_seconds"] if built else 0.0
        cache = self._feature_cache
        logs["learn_drop/cache_bytes"] = float(cache.nbytes) if cache is not None else 0.0
        self._record_decision(epoch, k, standardized, scores)
        if k is not None and k > self.dropped:
            self._pending = (k, self.plan.cuts[k])
            self._freeze_prefix(epoch, k)
        self._epochs_since_build += 1
        self._save_state(epoch + 1)

    def _finish_build(self, epoch):
        build, self._building = self._building, None
        cache = build["cache"]
        if "extract_seconds" not in build:  # the epoch ran no step
            raise RuntimeError("LayerDropping: the build epoch produced no features.")
        old = build["old_cache"]
        if old is not None:
            old.cleanup()
        self._epochs_since_build = 0
        setup = sum(
            build[key]
            for key in ("split_seconds", "compile_seconds", "extract_seconds", "pipeline_seconds")
        )
        entry = {
            "epoch": epoch,
            "source": build["source"],
            "epoch_seconds": time.perf_counter() - build["start"],
            "setup_seconds": setup,
            "split_seconds": build["split_seconds"],
            "compile_seconds": build["compile_seconds"],
            "extract_seconds": build["extract_seconds"],
            "write_seconds": cache.write_seconds,
            "pipeline_seconds": build["pipeline_seconds"],
            "first_step_seconds": build.get("first_step_seconds", float("nan")),
            "head_traces": self._head.trace_count - build["traces_before"],
            "extract_traces": build["extract_traces"],
            "bytes": int(cache.nbytes),
            "samples": int(cache.num_samples),
            "on_disk": cache.on_disk,
        }
        self.timings.append(entry)
        if self.verbose:
            where = "on disk" if cache.on_disk else "in memory"
            print_msg(
                f"\nEpoch {epoch + 1}: Learn&Drop cache of {entry['samples']} samples, "
                f"{entry['bytes'] / 2**20:.1f} MiB {where}; set-up {setup:.2f} s (split "
                f"{entry['split_seconds']:.2f}, compile {entry['compile_seconds']:.2f}, tail "
                f"forward + write {entry['extract_seconds']:.2f} of which write "
                f"{entry['write_seconds']:.2f}, pipeline {entry['pipeline_seconds']:.2f}); first "
                f"head step {entry['first_step_seconds']:.2f} s ({entry['head_traces']} trace)."
            )

    def _abort(self):
        """Cleanup after an exception inside a train function."""
        for cache in (self._feature_cache, (self._building or {}).get("old_cache")):
            if cache is not None:
                cache.cleanup()
        self.model.train_function = None

    def on_train_end(self, logs=None):
        self._cleanup()
        if (
            self.backup_dir is not None
            and is_chief(self.model.distribute_strategy)
            and os.path.exists(self._state_path())
        ):
            os.remove(self._state_path())

    def _cleanup(self):
        model = self.model
        self._release_stats()
        for cache in (self._feature_cache, (self._building or {}).get("old_cache")):
            if cache is not None:
                cache.cleanup()
        self._feature_cache = None
        self._cache_iter = None
        self._head = None
        self._building = None
        model.train_function = None

    def __del__(self):
        cache = getattr(self, "_feature_cache", None)
        if cache is not None:
            cache.cleanup()
