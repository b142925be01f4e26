"""Layer freezing with the Learn&Drop score: the paper's "Freezing" baseline.

Same score (eq. 2-3), decision (eq. 4, median check) and cut points as
`LayerDropping`, but the layers of the tail are frozen (`trainable=False`,
their batch norms then run in inference mode) and still run forward at every
step, as in Xiao et al. 2019 / the "Freezing" columns of the paper's tables.
The train function is rebuilt after each freeze. At the end of `fit` the
layers' `trainable` flags are restored (`restore_trainable=True`).
"""

from __future__ import annotations

from kerascnn.callbacks.layer_dropping import _LearnDropBase, layer_macs
from kerascnn.model_split import sub_model


class LayerFreezing(_LearnDropBase):
    """Freezes the first layers once they stop learning (Learn&Drop's score).

    Args:
        warmup_epochs: epochs before the first decision. Defaults to 5.
        restore_trainable: restore every layer's `trainable` flag at the end
            of `fit`. Defaults to True.
        force_drops: for tests and experiments only: `{epoch: cut}`, freeze
            at the end of that epoch up to `cut` (layer name or number of
            convolutions) whatever the score says. Defaults to None.
        cut_points: `"auto"` or the allowed cut layer names. Defaults to
            `"auto"`.
        log_scores: add `learn_drop/score/<conv>` to the epoch logs.
            Defaults to True.
        verbose: print each freeze. Defaults to 0.

    Example:

    ```python
    model.fit(x, y, epochs=60, callbacks=[LayerFreezing(warmup_epochs=5)])
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
    ):
        super().__init__(warmup_epochs, force_drops, cut_points, log_scores, verbose)
        self.restore_trainable = restore_trainable

    def _epoch_logs(self, logs, scores, macs):
        super()._epoch_logs(logs, scores, macs)
        logs["learn_drop/frozen_convs"] = logs.pop("learn_drop/freezeped_convs")

    def on_train_begin(self, logs=None):
        if self.model.optimizer is None:
            raise ValueError("LayerFreezing needs a compiled model (call model.compile first).")
        self._reset_state()
        self.history = []
        self._make_plan()
        self._trainable = {id(layer): (layer, layer.trainable) for layer in self.model.layers}
        self._macs = sum(layer_macs(self.model).values())
        self._acquire(self.model)

    def on_epoch_begin(self, epoch, logs=None):
        self._stats.begin_epoch(epoch)

    def on_epoch_end(self, epoch, logs=None):
        logs = logs if logs is not None else {}
        scores = self._scores()
        k, standardized = self._decide(epoch, scores, may_decide=True)
        self._epoch_logs(logs, scores, self._macs)
        self._record_decision(epoch, k, standardized, scores)
        if k is not None and k > self.dropped:
            tail = sub_model(self.model, None, self.plan.cuts[k])
            for layer in tail.layers:
                layer.trainable = False
            self.dropped, self.cut = k, self.plan.cuts[k]
            self.model.make_train_function(force=True)

    def on_train_end(self, logs=None):
        if self._stats is not None:
            self._stats.release(self)
            self._stats = None
        if self.restore_trainable:
            for layer, trainable in self._trainable.values():
                layer.trainable = trainable
        self.model.train_function = None


__all__ = ["LayerFreezing"]
