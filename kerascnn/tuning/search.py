"""Running a search and reading its results: `search`, `SearchResult`, `print_best`.

`search` makes a `kerascnn.tuning.CNNHyperModel` and a tuner
(`kerascnn.tuning.tuners.make_tuner`), runs keras-tuner's search and returns a
`SearchResult` with a `trial_report` dict per trial (score, parameters, MACs,
epochs trained, hyperparameters); `print_best` prints the best trials.

Example:

>>> import numpy as np
>>> from kerascnn import tuning
>>> x = np.random.rand(64, 16, 16, 1).astype("float32")
>>> y = np.random.randint(0, 10, 64)
>>> result = tuning.search(x, y, validation_data=(x, y), input_shape=(16, 16, 1),
...                        classes=10, families=["compact"], max_trials=2,
...                        epochs=1, directory="/tmp/kt", seed=1)
>>> tuning.print_best(result.tuner, 1)
"""

from __future__ import annotations

import copy
import dataclasses
import time

from kerascnn import _checks, _keras_compat
from kerascnn.tuning.space import CNNHyperModel
from kerascnn.tuning.tuners import make_tuner
from kerascnn.tuning.tuners import role as process_role


def _completed(trial):
    """Whether a keras-tuner trial completed."""
    return trial.status == _keras_compat.TrialStatus.COMPLETED


def trial_report(trial):
    """Returns a dict of a keras-tuner `Trial`: id, status, score, hyperparameters, costs."""

    def metric(name):
        if trial.metrics.exists(name):
            value = trial.metrics.get_last_value(name)
            return None if value is None else int(round(value))
        return None

    return {
        "trial_id": trial.trial_id,
        "status": str(trial.status),
        "score": None if trial.score is None else float(trial.score),
        "params": metric("params"),
        "macs": metric("macs"),
        "epochs_trained": metric("epochs_trained"),
        "hyperparameters": dict(trial.hyperparameters.values),
    }


@dataclasses.dataclass
class SearchResult:
    """What `search` returns.

    Attributes:
        tuner: the keras-tuner tuner (its oracle holds every trial).
        best_trials: `trial_report` dicts of the best completed trials, best
            first (empty on a distributed worker: the chief reports).
        trials: `trial_report` dicts of every trial, in start order.
        total_epochs: epochs trained over all trials.
        wall_time: seconds spent in `tuner.search`.
        role: `"local"`, `"chief"` or `"worker"`.
    """

    tuner: object
    best_trials: list
    trials: list
    total_epochs: int
    wall_time: float
    role: str = "local"

    def to_dict(self):
        return {k: v for k, v in dataclasses.asdict(self).items() if k != "tuner"} | {
            "trials_run_here": getattr(self.tuner, "trials_run", [])
        }


def search(
    x=None,
    y=None,
    *,
    validation_data=None,
    hypermodel=None,
    input_shape=None,
    classes=None,
    tuner="random",
    max_trials=6,
    epochs=2,
    objective=None,
    directory=None,
    project_name="kerascnn_tune",
    overwrite=True,
    seed=None,
    num_best=3,
    callbacks=None,
    batch_size=None,
    verbose=0,
    tuner_kwargs=None,
    **hypermodel_kwargs,
):
    """Runs an architecture search and returns the best trials.

    Args:
        x: training data (arrays or a `tf.data.Dataset` of `(x, y)`).
        y: labels when `x` is an array. Defaults to None.
        validation_data: passed to `fit`. Defaults to None.
        hypermodel: a `CNNHyperModel`; otherwise one is made from
            `input_shape`, `classes` and `**hypermodel_kwargs`.
        input_shape: image shape, required without `hypermodel`.
        classes: number of classes, required without `hypermodel`.
        tuner: `"random"`, `"hyperband"` or `"bayesian"`. Defaults to
            `"random"`.
        max_trials: number of trials (random, bayesian). Defaults to 6.
        epochs: epochs per trial (Hyperband's `max_epochs`). Defaults to 2.
        objective: defaults to `"val_accuracy"` with `validation_data`,
            `"accuracy"` without.
        directory: trial storage. Defaults to `./kerascnn_tuner`.
        project_name: defaults to `"kerascnn_tune"`.
        overwrite: start afresh. Defaults to True.
        seed: oracle seed. Defaults to None.
        num_best: how many best trials to report. Defaults to 3.
        callbacks: extra Keras callbacks (deep-copied per trial by
            keras-tuner). Defaults to None.
        batch_size: for array inputs. Defaults to None (Keras' 32).
        verbose: `fit`/tuner verbosity. Defaults to 0.
        tuner_kwargs: extra arguments of the tuner class. Defaults to None.
        **hypermodel_kwargs: `CNNHyperModel` arguments (`families`,
            `max_params`, `stability_stopping`, ...).

    Returns:
        A `SearchResult`.

    Example:

    >>> result = search(x, y, validation_data=(xv, yv), input_shape=(28, 28, 1),
    ...                 classes=10, families=["compact"], max_trials=6, epochs=2)
    >>> result.best_trials[0]["params"]
    """
    if hypermodel is None:
        if input_shape is None or classes is None:
            raise ValueError(
                "search needs input_shape and classes when no hypermodel is given. "
                f"Received: input_shape={input_shape!r}, classes={classes!r}"
            )
        hypermodel = CNNHyperModel(input_shape, classes, **hypermodel_kwargs)
    elif hypermodel_kwargs:
        raise TypeError(
            f"Hypermodel arguments {sorted(hypermodel_kwargs)} cannot be combined with "
            "hypermodel=; pass them to CNNHyperModel."
        )
    _checks.check_positive_int(num_best, "num_best")
    if objective is None:
        objective = "val_accuracy" if validation_data is not None else "accuracy"
    kt = make_tuner(
        hypermodel,
        tuner,
        objective=objective,
        max_trials=max_trials,
        epochs=epochs,
        directory=directory,
        project_name=project_name,
        overwrite=overwrite,
        seed=seed,
        **(tuner_kwargs or {}),
    )
    check_deepcopyable(callbacks)
    fit_kwargs = {"verbose": verbose, "callbacks": list(callbacks or [])}
    if tuner != "hyperband":
        fit_kwargs["epochs"] = epochs
    if validation_data is not None:
        fit_kwargs["validation_data"] = validation_data
    if batch_size is not None:
        fit_kwargs["batch_size"] = batch_size
    args = (x,) if y is None else (x, y)
    role = process_role()
    start = time.perf_counter()
    kt.search(*args, **fit_kwargs)
    wall = time.perf_counter() - start
    if role == "worker":
        return SearchResult(kt, [], [], 0, wall, role)
    trials = [kt.oracle.trials[t] for t in kt.oracle.start_order]
    reports = [trial_report(t) for t in trials]
    best = [trial_report(t) for t in kt.oracle.get_best_trials(num_best) if _completed(t)]
    total = sum(r["epochs_trained"] or 0 for r in reports)
    return SearchResult(kt, best, reports, total, wall, role)


def _fmt(value):
    if value is None:
        return "-"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, float):
        return f"{value:.4g}"
    return f"{value:,}" if isinstance(value, int) else str(value)


def format_best(tuner, num_trials=3):
    """Returns the text `print_best` prints."""
    best = [t for t in tuner.oracle.get_best_trials(num_trials) if _completed(t)]
    n_done = sum(_completed(t) for t in tuner.oracle.trials.values())
    lines = [
        f"Best {len(best)} of {n_done} completed trials "
        f"({len(tuner.oracle.trials)} run; objective {tuner.oracle.objective.name}):"
    ]
    for rank, t in enumerate(best, 1):
        r = trial_report(t)
        hps = r["hyperparameters"]
        arch = [
            hps.get(f"{hps.get('family')}_model"),
            hps.get("template"),
            f"w{hps.get('width_multiplier')}",
            hps.get("stage_layout"),
        ]
        depths = [hps[f"depth_{k}"] for k in range(1, 64) if f"depth_{k}" in hps]
        used = getattr(tuner.hypermodel, "_body_stages", {}).get(arch[0])
        depths = depths[:used] if used else depths
        if hps.get("stage_layout") == "free":
            arch.append("depths=" + ",".join(str(d) for d in depths))
        lines.append(
            f"{rank}. trial {r['trial_id']}: score {_fmt(r['score'])}  "
            f"params {_fmt(r['params'])}  MACs {_fmt(r['macs'])}  "
            f"epochs {_fmt(r['epochs_trained'])}  " + " ".join(str(a) for a in arch)
        )
        other = {
            k: v
            for k, v in hps.items()
            if k not in ("family", "template", "width_multiplier", "stage_layout")
            and not k.endswith("_model")
            and not k.startswith("depth_")
            and not k.startswith("tuner/")
        }
        lines.append("   " + ", ".join(f"{k}={_fmt(v)}" for k, v in other.items()))
    return "\n".join(lines)


def print_best(tuner, num_trials=3):
    """Prints the best completed trials with their parameters and MACs.

    Args:
        tuner: a keras-tuner tuner after `search`.
        num_trials: how many. Defaults to 3.
    """
    print(format_best(tuner, num_trials))


def check_deepcopyable(callbacks):
    """Raises a ValueError naming the first callback that `copy.deepcopy` fails on."""
    for c in callbacks or []:
        try:
            copy.deepcopy(c)
        except Exception as e:  # noqa: BLE001
            raise ValueError(
                f"Callback {type(c).__name__} cannot be deep-copied (keras-tuner copies "
                f"callbacks for every trial): {e}"
            ) from None
