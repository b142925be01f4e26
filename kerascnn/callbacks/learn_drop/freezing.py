"""Layer freezing with the Learn&Drop score: the paper's "Freezing" baseline.

Same score (eq. 2-3), decision (eq. 4, median check) and cut points as
`LayerDropping`, but the layers of the tail still run forward at every step
(in inference mode: their batch norms use, and keep, their moving
statistics), as in Xiao et al. 2019 / the "Freezing" columns of the paper's
tables.

How a freeze happens: no `trainable` flag is ever changed. From the epoch
after a freeze decision, `model.train_function` runs the train step of a
*head* sub-model (sharing `model`'s layers, variables and optimizer, see
`LayerDropping`) that first computes the tail in inference mode under
`tf.stop_gradient`, then trains the head: the tail's variables are simply
left out of the gradient step. So the model, its optimizer (built for all
trainable variables) and every checkpoint written during `fit` by
`keras.callbacks.ModelCheckpoint` / `BackupAndRestore` keep the user's
`trainable` flags and the full optimizer state, and load without an
optimizer-variable mismatch.
"""

from __future__ import annotations

from kerascnn.callbacks.learn_drop.dropping import _Head, _LearnDropBase, layer_macs
from kerascnn.callbacks.learn_drop.model_split import flatten_nested, sub_model
from kerascnn.callbacks.learn_drop.score import PAPER_MIN_LAYERS, check_min_layers


class LayerFreezing(_LearnDropBase):
    """Freezes the first layers once they stop learning (Learn&Drop's score).

    Args:
        warmup_epochs: epochs before the first decision. Defaults to 5.
        restore_trainable: kept for compatibility: layers' `trainable` flags
            are never changed (frozen variables are left out of the gradient
            step instead), so there is nothing to restore. Defaults to True.
        force_drops: for tests and experiments only: `{epoch: cut}`, freeze
            at the end of that epoch up to `cut` (layer name or number of
            convolutions >= 1) whatever the score says. Defaults to None.
        cut_points: `"auto"` or the allowed cut layer names. Defaults to
            `"auto"`.
        log_scores: add `learn_drop/score/<conv>` to the epoch logs.
            Defaults to True.
        verbose: 0, 1 or 2; non-zero prints each freeze. Defaults to 0.
        min_layers: the fewest convolutions one freeze takes. Defaults to 2
            (Algorithm 1's `n* > 1`); 1 also freezes a single layer.

    Example:

    ```python
    import keras, numpy as np
    from kerascnn import zoo
    from kerascnn.callbacks import LayerFreezing

    model = zoo.build("compact_mnist_5k", input_shape=(28, 28, 1))
    model.compile("adam", "sparse_categorical_crossentropy")
    x, y = np.random.rand(64, 28, 28, 1), np.random.randint(0, 10, 64)
    model.fit(x, y, epochs=3, callbacks=[LayerFreezing(warmup_epochs=1)], verbose=0)
    ```
    """

    _verb = "freeze"

    def __init__(
        self,
        warmup_epochs=5,
        restore_trainable=True,
        force_drops=None,
        cut_points="auto",
        log_scores=True,
        verbose=0,
        min_layers=PAPER_MIN_LAYERS,
    ):
        super().__init__(warmup_epochs, force_drops, cut_points, log_scores, verbose)
        self.min_layers = check_min_layers(min_layers)
        if not isinstance(restore_trainable, bool):
            raise TypeError(
                "restore_trainable must be a bool. "
                f"Received: restore_trainable={restore_trainable!r}"
            )
        self.restore_trainable = restore_trainable

    def _reset_state(self):
        super()._reset_state()
        self._head = None

    def _epoch_logs(self, logs, scores, macs):
        super()._epoch_logs(logs, scores, macs)
        logs["learn_drop/frozen_convs"] = logs.pop("learn_drop/freezeped_convs")

    def on_train_begin(self, logs=None):
        self._check_model()
        self._reset_state()
        self.history = []
        self._make_plan()
        self._fit_history = getattr(self.model, "history", None)
        self._macs = sum(layer_macs(flatten_nested(self.model)).values())
        self._acquire()

    def on_epoch_begin(self, epoch, logs=None):
        if self._head is not None:
            self._install("head")  # again, in case something rebuilt it
        self._stats.begin_epoch(epoch)

    def on_epoch_end(self, epoch, logs=None):
        logs = logs if logs is not None else {}
        scores = self._scores()
        k, standardized = self._decide(epoch, scores, may_decide=True)
        self._epoch_logs(logs, scores, self._macs)
        self._record_decision(epoch, k, standardized, scores)
        if k is not None and k > self.dropped:
            self._freeze_prefix(epoch, k)
            self.dropped, self.cut = k, self.plan.cuts[k]
            self._build_head()

    def _build_head(self):
        model = self.model
        pre = sub_model(model, None, self.cut, name=f"{model.name}_frozen_tail")
        core = sub_model(model, self.cut, None, name=f"{model.name}_trained_head")
        with model.distribute_strategy.scope():
            head = _Head(model, core, pre)
            head.compile(
                optimizer=model.optimizer,
                steps_per_execution=model.steps_per_execution,
                jit_compile=False,
                run_eagerly=model.run_eagerly,
            )
        self._head = head
        self._stats.follow(head)
        head.make_train_function(force=True)
        self._install("head")

    def _run(self, iterator):
        return self._head.train_function(iterator)

    def _abort(self):
        self.model.train_function = None

    def on_train_end(self, logs=None):
        self._release_stats()
        self._head = None
        self.model.train_function = None


__all__ = ["LayerFreezing"]
