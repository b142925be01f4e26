"""Tuner construction: keras-tuner's tuners, recording the trials each process runs.

`make_tuner` returns a `RandomSearch`, `Hyperband` or `BayesianOptimization`
(Li et al., "Hyperband", JMLR 2018; keras-tuner's Gaussian-process Bayesian
optimization) for a `kerascnn.tuning.CNNHyperModel`. On a distributed
keras-tuner worker (`KERASTUNER_TUNER_ID` other than `chief`) it never
overwrites the chief's trial files.

Example:

>>> from kerascnn.tuning import CNNHyperModel, make_tuner
>>> hypermodel = CNNHyperModel((28, 28, 1), 10, families=["compact"])
>>> tuner = make_tuner(hypermodel, "random", max_trials=4, directory="/tmp/kt")
"""

from __future__ import annotations

import importlib.util
import time

import keras_tuner

from kerascnn import _checks, _keras_compat

TUNERS = ("random", "hyperband", "bayesian")


class _TrialLog:
    """Mixin recording the trials this process ran (ids and wall time)."""

    def on_trial_begin(self, trial):
        self._kerascnn_t0 = time.perf_counter()
        super().on_trial_begin(trial)

    def on_trial_end(self, trial):
        if not hasattr(self, "trials_run"):
            self.trials_run = []
        self.trials_run.append(
            {
                "trial_id": trial.trial_id,
                "seconds": time.perf_counter() - getattr(self, "_kerascnn_t0", time.perf_counter()),
            }
        )
        super().on_trial_end(trial)


class RandomSearch(_TrialLog, keras_tuner.RandomSearch):
    """`keras_tuner.RandomSearch` that records `trials_run`."""


class Hyperband(_TrialLog, keras_tuner.Hyperband):
    """`keras_tuner.Hyperband` that records `trials_run`."""


class BayesianOptimization(_TrialLog, keras_tuner.BayesianOptimization):
    """`keras_tuner.BayesianOptimization` that records `trials_run`."""


_TUNER_CLASSES = {
    "random": RandomSearch,
    "hyperband": Hyperband,
    "bayesian": BayesianOptimization,
}


def make_tuner(
    hypermodel,
    tuner="random",
    *,
    objective="val_accuracy",
    max_trials=10,
    epochs=2,
    directory=None,
    project_name="kerascnn_tune",
    overwrite=True,
    seed=None,
    max_consecutive_failed_trials=None,
    **kwargs,
):
    """Returns a keras-tuner tuner for `hypermodel`.

    Args:
        hypermodel: a `CNNHyperModel` (or any `keras_tuner.HyperModel`).
        tuner: `"random"`, `"hyperband"` or `"bayesian"`. Defaults to
            `"random"`.
        objective: the metric to optimise. Defaults to `"val_accuracy"`.
        max_trials: trials for random/bayesian (ignored by Hyperband, whose
            brackets fix the number of trials). Defaults to 10.
        epochs: Hyperband's `max_epochs`. Defaults to 2.
        directory: where trials are stored. Defaults to
            `./kerascnn_tuner`.
        project_name: sub-folder of `directory`. Defaults to
            `"kerascnn_tune"`.
        overwrite: start afresh. Defaults to True (forced False on a
            distributed worker so that it never deletes the chief's files).
        seed: random seed of the oracle. Defaults to None.
        max_consecutive_failed_trials: rejected/failed trials in a row
            before the search stops. Defaults to `max_trials` (rejections by
            the limits are expected).
        **kwargs: passed to the tuner class.

    Returns:
        A `RandomSearch`, `Hyperband` or `BayesianOptimization`.

    Example:

    >>> tuner = make_tuner(hypermodel, "hyperband", epochs=4, directory="/tmp/kt")
    """
    if not isinstance(tuner, str) or tuner.lower() not in TUNERS:
        raise ValueError(f"tuner must be one of {TUNERS}. {_checks.received('tuner', tuner)}")
    tuner = tuner.lower()
    _checks.check_positive_int(max_trials, "max_trials")
    _checks.check_positive_int(epochs, "epochs")
    _checks.check_int(seed, "seed", allow_none=True)
    if tuner == "bayesian":
        missing = [m for m in ("scipy", "sklearn") if importlib.util.find_spec(m) is None]
        if missing:
            raise ValueError(
                "tuner='bayesian' needs scipy and scikit-learn (missing: "
                f"{', '.join(missing)}); install them with `pip install scipy scikit-learn`."
            )
    if role() == "worker":
        overwrite = False
    common = dict(
        hypermodel=hypermodel,
        objective=objective,
        directory=directory or "kerascnn_tuner",
        project_name=project_name,
        overwrite=overwrite,
        seed=seed,
        max_consecutive_failed_trials=(
            max_consecutive_failed_trials
            if max_consecutive_failed_trials is not None
            else max(3, max_trials)
        ),
        **kwargs,
    )
    if tuner == "hyperband":
        return Hyperband(max_epochs=epochs, **common)
    return _TUNER_CLASSES[tuner](max_trials=max_trials, **common)


def role():
    """This process' part in a search: `"local"`, `"chief"` or `"worker"`."""
    dist = _keras_compat.kt_distribute
    if not dist.has_chief_oracle():
        return "local"
    return "chief" if dist.is_chief_oracle() else "worker"
