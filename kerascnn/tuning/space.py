"""Architecture search with keras-tuner: `CNNHyperModel`, `search`, `print_best`.

`CNNHyperModel` is a `keras_tuner.HyperModel` whose search space covers the
zoo (model family and model), the filter-distribution template, the width
multiplier, the stage layout, the kernel type, the efficiency flags and the
optimizer. Stage layouts are conditional scopes of the `"stage_layout"`
hyperparameter:

- `"base"`: the zoo model's own stage depths;
- `"3drf"`: the stages reorganised by `kerascnn.transforms.organizer` (3D receptive
  field); only in the space when that module is importable;
- `"free"`: one `hp.Int` depth per body stage (`"depth_<k>"`), active only
  with `stage_layout="free"`.

Every trial trains with `kerascnn.callbacks.StabilityStopping` (when
available) so that a trial ends when its layers stop learning, and records
the model's parameters, MACs (`kerascnn.observe.summary`) and the epochs it trained
as trial metrics `"params"`, `"macs"` and `"epochs_trained"`.

Limits (`max_params`, `max_macs`) are checked at the start of `fit()`: an
oversized model raises `keras_tuner.errors.FailedTrialError`, the trial is
marked FAILED and the search goes on. They are not checked in `build()`
because keras-tuner builds the default hyperparameters once while creating a
tuner (to discover the conditional scopes), where a raise would abort the
tuner's creation; `fit()` only runs inside trials.

Example:

>>> import numpy as np
>>> from kerascnn.tuning import space as tuner
>>> x = np.random.rand(64, 16, 16, 1).astype("float32")
>>> y = np.random.randint(0, 10, 64)
>>> result = tuner.search(x, y, validation_data=(x, y), input_shape=(16, 16, 1),
...                       classes=10, families=["compact"], max_trials=2,
...                       epochs=1, directory="/tmp/kt", seed=1)
>>> tuner.print_best(result.tuner, 1)
"""

from __future__ import annotations

import copy
import dataclasses
import importlib
import importlib.util
import inspect
import math
import time
import weakref

import keras
import keras_tuner
from keras_tuner import errors as kt_errors
from keras_tuner.src.distribute import utils as _dist
from keras_tuner.src.engine.trial import TrialStatus

from kerascnn import zoo
from kerascnn.builder.model import build_model, minimum_input_size
from kerascnn.transforms import templates as _templates

#: Default zoo models of each family (small ones: a search trains many).
DEFAULT_MODELS = {
    "vgg": ("vgg11_bn",),
    "resnet": ("resnet18",),
    "mobilenet": ("mobilenet",),
    "compact": ("compact_mnist_25k", "compact_mnist_5k_dw", "compact_cifar_143k"),
    "inception": ("inception",),
}
#: Families searched by default (inception is available with `families=`).
DEFAULT_FAMILIES = ("vgg", "resnet", "mobilenet", "compact")
LAYOUTS = ("base", "3drf", "free")
KERNEL_TYPES = ("std", "dw_pw", "dw_gpw", "dw_rpw")
EFFICIENCY_FLAGS = ("blurpool", "squeeze_excite")
OPTIMIZERS = ("adam", "sgd", "rmsprop", "adamw")
TUNERS = ("random", "hyperband", "bayesian")


# --------------------------------------------------------------------------
# Optional kerascnn components, looked up at call time.
# --------------------------------------------------------------------------
def _optional(module, attr):
    """Returns `module.attr`, or None when the module or attribute is missing."""
    try:
        mod = importlib.import_module(module)
    except ImportError:
        return None
    return getattr(mod, attr, None)


def stability_stopping_class():
    """Returns `kerascnn.callbacks.StabilityStopping`, or None if unavailable."""
    return _optional("kerascnn.callbacks", "StabilityStopping") or _optional(
        "kerascnn.callbacks.stability_stopping", "StabilityStopping"
    )


def _organize_fn():
    """The 3DRF stage organizer `(spec, input_shape) -> ArchSpec`, or None."""
    for module in ("kerascnn.transforms.organizer", "kerascnn.transforms.rf3d"):
        for attr in ("organize", "organize_spec", "reorganize"):
            fn = _optional(module, attr)
            if callable(fn):
                return fn
    return None


def _decompose_fn():
    """The kernel decomposer `(spec, kernel_type) -> ArchSpec`, or None."""
    for attr in ("decompose_spec", "decompose"):
        fn = _optional("kerascnn.transforms.decomposer", attr)
        if callable(fn):
            return fn
    return None


def _accepts(fn, name):
    try:
        return name in inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False


def supported_layouts():
    """The stage layouts available now (`"3drf"` needs `kerascnn.transforms.organizer`)."""
    return tuple(x for x in LAYOUTS if x != "3drf" or _organize_fn() is not None)


def supported_kernel_types():
    """The kernel types available now (all but `"std"` need `kerascnn.transforms.decomposer`)."""
    return KERNEL_TYPES if _decompose_fn() is not None else ("std",)


def supported_efficiency_flags():
    """The efficiency flags the model builders accept now."""
    return tuple(f for f in EFFICIENCY_FLAGS if _accepts(zoo.build, f) or _accepts(build_model, f))


def _count_cost(model):
    """Returns `(params, macs)` of a built model (`macs` None without `kerascnn.observe.summary`)."""
    summarize = _optional("kerascnn.observe.summary", "summarize")
    if summarize is None:
        return int(model.count_params()), None
    s = summarize(model)
    return int(s.params), int(s.macs)


def _choices(value, allowed, arg, default):
    """Validates a sequence of choices (strings or numbers) -> tuple."""
    if value is None:
        return tuple(default)
    if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
        value = [value]
    value = tuple(value)
    if not value:
        raise ValueError(f"{arg} must not be empty. Received: {arg}={value!r}")
    if allowed is not None:
        bad = [v for v in value if v not in allowed]
        if bad:
            raise ValueError(
                f"Unknown or unavailable {arg} {bad}; expected some of {tuple(allowed)}. "
                f"Received: {arg}={value!r}"
            )
    if len(set(value)) != len(value):
        raise ValueError(f"{arg} has duplicates. Received: {arg}={value!r}")
    return value


def _positive_or_none(value, arg):
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ValueError(f"{arg} must be a positive number or None. Received: {arg}={value!r}")
    if not math.isfinite(value):
        raise ValueError(f"{arg} must be finite. Received: {arg}={value!r}")
    return value


class CNNHyperModel(keras_tuner.HyperModel):
    """A keras-tuner search space over kerascnn's zoo and its techniques.

    Hyperparameters (names): `family`; `<family>_model`; `template`;
    `width_multiplier`; `stage_layout` with, under `"free"`,
    `depth_1`..`depth_K` (K: the most body stages of the searched models; a
    model with n body stages uses the first n); `kernel_type`; one boolean per efficiency flag;
    `optimizer`; `learning_rate`.

    Args:
        input_shape: `(height, width, channels)` of the images. Required.
        classes: number of classes (integer labels). Required.
        families: zoo families to search. Defaults to `DEFAULT_FAMILIES`.
        models: zoo model names to search; overrides `families` (the
            families are those of the models). Defaults to `DEFAULT_MODELS`
            of each family.
        templates: filter-distribution templates. Defaults to all
            `kerascnn.transforms.templates.TEMPLATES`.
        width_multipliers: width multiplier choices. Defaults to
            `(0.25, 0.5, 1.0)`.
        layouts: stage layouts among `"base"`, `"3drf"`, `"free"`. Defaults
            to the available ones (`supported_layouts()`).
        depth_range: `(min, max)` units per body stage for `"free"`.
            Defaults to `(1, 3)`.
        kernel_types: among `"std"`, `"dw_pw"`, `"dw_gpw"`, `"dw_rpw"`.
            Defaults to the available ones (`supported_kernel_types()`).
        efficiency_flags: among `"blurpool"`, `"squeeze_excite"`, each a
            boolean hyperparameter. Defaults to the ones the builders accept.
        optimizers: among `OPTIMIZERS`. Defaults to `("adam", "sgd")`.
        learning_rate_range: `(min, max)`, log-sampled. Defaults to
            `(1e-4, 1e-2)`.
        max_params: reject models with more parameters. Defaults to None.
        max_macs: reject models with more MACs (batch of one). Defaults to
            None.
        stability_stopping: add `StabilityStopping` to every trial's `fit`.
            Defaults to None: True when the callback is available.
        stability_kwargs: keyword arguments of `StabilityStopping`. Defaults
            to None (its defaults).
        organizer_kwargs: keyword arguments of `kerascnn.transforms.organizer.organize`
            for `"3drf"` (e.g. `theta`). Defaults to None (its defaults).
        decomposer_kwargs: keyword arguments of `kerascnn.transforms.decomposer.decompose`
            (e.g. `groups`, `overlap`). Defaults to None (its defaults). For
            `"dw_gpw"` and `"dw_rpw"` the templated channel counts are first
            rounded up to a multiple of `groups`, so that every sampled model
            can be decomposed; a model that still cannot (a non-templated
            layer's channels) fails that trial with the reason.
        loss: the loss. Defaults to `"sparse_categorical_crossentropy"`.
        metrics: compile metrics. Defaults to `["accuracy"]`.
        name: the hypermodel name. Defaults to None.
        tunable: see `keras_tuner.HyperModel`. Defaults to True.

    Example:

    >>> import keras_tuner
    >>> from kerascnn.tuning.space import CNNHyperModel
    >>> hypermodel = CNNHyperModel((28, 28, 1), 10, families=["compact"])
    >>> model = hypermodel.build(keras_tuner.HyperParameters())
    """

    def __init__(
        self,
        input_shape,
        classes,
        *,
        families=None,
        models=None,
        templates=None,
        width_multipliers=(0.25, 0.5, 1.0),
        layouts=None,
        depth_range=(1, 3),
        kernel_types=None,
        efficiency_flags=None,
        optimizers=("adam", "sgd"),
        learning_rate_range=(1e-4, 1e-2),
        max_params=None,
        max_macs=None,
        stability_stopping=None,
        stability_kwargs=None,
        organizer_kwargs=None,
        decomposer_kwargs=None,
        loss="sparse_categorical_crossentropy",
        metrics=("accuracy",),
        name=None,
        tunable=True,
    ):
        super().__init__(name=name, tunable=tunable)
        if (
            isinstance(input_shape, (str, bytes))
            or not hasattr(input_shape, "__len__")
            or len(input_shape) != 3
            or any(isinstance(d, bool) or not isinstance(d, int) or d < 1 for d in input_shape)
        ):
            raise ValueError(
                "input_shape must be three positive integers (height, width, channels). "
                f"Received: input_shape={input_shape!r}"
            )
        if isinstance(classes, bool) or not isinstance(classes, int) or classes < 2:
            raise ValueError(f"classes must be an integer >= 2. Received: classes={classes!r}")
        self.input_shape = tuple(input_shape)
        self.classes = classes

        # Families and models.
        explicit_families = families is not None
        if models is not None:
            models = _choices(models, None, "models", ())
            infos = [zoo.get_info(m) for m in models]
            self.models = {}
            for info in infos:
                self.models.setdefault(info.family, [])
                if info.name not in self.models[info.family]:
                    self.models[info.family].append(info.name)
            self.models = {f: tuple(m) for f, m in self.models.items()}
            if families is not None:
                families = _choices(families, tuple(DEFAULT_MODELS), "families", ())
                extra = [f for f in self.models if f not in families]
                if extra:
                    raise ValueError(
                        f"models of families {extra} are outside families={families!r}. "
                        f"Received: models={models!r}"
                    )
        else:
            families = _choices(families, tuple(DEFAULT_MODELS), "families", DEFAULT_FAMILIES)
            self.models = {}
            for fam in families:
                fits = tuple(m for m in DEFAULT_MODELS[fam] if self._fits(m))
                if fits:
                    self.models[fam] = fits
                elif explicit_families:
                    raise ValueError(
                        f"No {fam} model fits input_shape={self.input_shape} (too small for "
                        f"{DEFAULT_MODELS[fam]}); use a larger input or other families. "
                        f"Received: families={families!r}"
                    )
        too_small = [m for ms in self.models.values() for m in ms if not self._fits(m)]
        if too_small or not self.models:
            raise ValueError(
                f"Models {too_small} need a larger input than input_shape={self.input_shape}. "
                f"Received: models={models!r}, families={families!r}"
            )
        self.families = tuple(self.models)

        self.templates = tuple(
            _templates.canonical_template(t)
            for t in _choices(templates, None, "templates", _templates.TEMPLATES)
        )
        self.width_multipliers = _choices(width_multipliers, None, "width_multipliers", ())
        for w in self.width_multipliers:
            _templates.check_width_multiplier(w)
        default_layouts = supported_layouts()
        if self.input_shape[0] != self.input_shape[1]:
            # The organizer works on square inputs.
            default_layouts = tuple(x for x in default_layouts if x != "3drf")
        self.layouts = _choices(layouts, supported_layouts(), "layouts", default_layouts)
        if (
            not isinstance(depth_range, (tuple, list))
            or len(depth_range) != 2
            or any(isinstance(d, bool) or not isinstance(d, int) for d in depth_range)
            or not 1 <= depth_range[0] <= depth_range[1]
        ):
            raise ValueError(
                "depth_range must be (min, max) integers with 1 <= min <= max. "
                f"Received: depth_range={depth_range!r}"
            )
        self.depth_range = tuple(depth_range)
        self.kernel_types = _choices(
            kernel_types, supported_kernel_types(), "kernel_types", supported_kernel_types()
        )
        if efficiency_flags is not None and not isinstance(efficiency_flags, str):
            efficiency_flags = tuple(efficiency_flags)
        if efficiency_flags == ():
            self.efficiency_flags = ()
        else:
            self.efficiency_flags = _choices(
                efficiency_flags,
                supported_efficiency_flags(),
                "efficiency_flags",
                supported_efficiency_flags(),
            )
        self.optimizers = _choices(optimizers, OPTIMIZERS, "optimizers", ())
        if (
            not isinstance(learning_rate_range, (tuple, list))
            or len(learning_rate_range) != 2
            or not 0 < learning_rate_range[0] <= learning_rate_range[1]
        ):
            raise ValueError(
                "learning_rate_range must be (min, max) with 0 < min <= max. "
                f"Received: learning_rate_range={learning_rate_range!r}"
            )
        self.learning_rate_range = tuple(float(v) for v in learning_rate_range)
        self.max_params = _positive_or_none(max_params, "max_params")
        self.max_macs = _positive_or_none(max_macs, "max_macs")
        if self.max_macs is not None and _optional("kerascnn.observe.summary", "summarize") is None:
            raise ValueError("max_macs needs kerascnn.observe.summary, which is not importable.")
        available = stability_stopping_class() is not None
        if stability_stopping is None:
            stability_stopping = available
        if stability_stopping and not available:
            raise ValueError(
                "stability_stopping=True needs kerascnn.callbacks.StabilityStopping, "
                "which is not importable. Received: stability_stopping=True"
            )
        self.stability_stopping = bool(stability_stopping)
        self.stability_kwargs = dict(stability_kwargs or {})
        self.organizer_kwargs = dict(organizer_kwargs or {})
        self.decomposer_kwargs = dict(decomposer_kwargs or {})
        self.loss = loss
        self.metrics = list(metrics or [])
        self._costs = weakref.WeakKeyDictionary()
        # Body-stage counts, for the "free" depth hyperparameters.
        self._body_stages = {}
        for family_models in self.models.values():
            for m in family_models:
                spec = zoo.get_spec(m, input_shape=self.input_shape)
                self._body_stages[m] = len(spec.body_stage_indices())
        self._max_body_stages = max(self._body_stages.values())

    def _fits(self, model):
        spec = zoo.get_spec(model, input_shape=self.input_shape)
        smallest = minimum_input_size(spec)
        return smallest is not None and min(self.input_shape[:2]) >= smallest

    # ------------------------------------------------------------ the space
    def sample(self, hp):
        """Declares the hyperparameters in `hp` and returns the active config dict."""
        family = hp.Choice("family", list(self.families))
        config = {"family": family}
        for fam in self.families:
            with hp.conditional_scope("family", [fam]):
                model = hp.Choice(f"{fam}_model", list(self.models[fam]))
            if fam == family:
                config["model"] = model
        config["template"] = hp.Choice("template", list(self.templates))
        config["width_multiplier"] = hp.Choice("width_multiplier", list(self.width_multipliers))
        layout = hp.Choice("stage_layout", list(self.layouts))
        config["stage_layout"] = layout
        config["depths"] = None
        if "free" in self.layouts:
            # keras-tuner only nests a scope under a parent declared in the
            # enclosing scope, so the depths depend on "stage_layout" alone:
            # a model with n body stages uses depth_1..depth_n.
            lo, hi = self.depth_range
            with hp.conditional_scope("stage_layout", ["free"]):
                depths = [hp.Int(f"depth_{k}", lo, hi) for k in range(1, self._max_body_stages + 1)]
            if layout == "free":
                config["depths"] = tuple(depths[: self._body_stages[config["model"]]])
        config["kernel_type"] = hp.Choice("kernel_type", list(self.kernel_types))
        for flag in self.efficiency_flags:
            config[flag] = hp.Boolean(flag, default=False)
        config["optimizer"] = hp.Choice("optimizer", list(self.optimizers))
        lo, hi = self.learning_rate_range
        config["learning_rate"] = (
            hp.Float("learning_rate", lo, hi, sampling="log") if hi > lo else lo
        )
        return config

    # ---------------------------------------------------------- the models
    def build_from_config(self, config):
        """Builds (uncompiled) the Keras model of a config dict from `sample`."""
        name = config["model"]
        input_shape = self.input_shape
        flags = {f: True for f in self.efficiency_flags if config.get(f)}
        layout, kernel = config["stage_layout"], config["kernel_type"]
        spec = zoo.get_spec(name, input_shape=input_shape, stages=config["depths"])
        if layout == "3drf":
            organize = _organize_fn()
            if organize is None:
                raise ValueError(
                    "stage_layout='3drf' needs kerascnn.transforms.organizer (not importable)."
                )
            result = organize(spec, input_shape=input_shape, **self.organizer_kwargs)
            spec = getattr(result, "spec", result)
        spec = _templates.apply_template(spec, config["template"], config["width_multiplier"])
        if kernel != "std":
            decompose = _decompose_fn()
            if decompose is None:
                raise ValueError(
                    f"kernel_type={kernel!r} needs kerascnn.transforms.decomposer (not importable)."
                )
            kwargs = dict(self.decomposer_kwargs)
            if kernel in ("dw_gpw", "dw_rpw"):
                # GPW/RPW need channel counts divisible by the groups; round
                # the templated widths up (as MobileNet's width rounding does)
                # rather than waste the trial on an infeasible point.
                groups = int(kwargs.get("groups", 2))
                spec = spec.with_filters([-(-f // groups) * groups for f in spec.filters()])
            if _accepts(decompose, "input_shape"):
                kwargs.setdefault("input_shape", input_shape)
            try:
                spec = decompose(spec, kernel, **kwargs)
            except ValueError as e:
                # e.g. groups not dividing the templated channel counts: an
                # infeasible point of the space, not a bug.
                raise kt_errors.FailedTrialError(f"kernel_type={kernel!r}: {e}") from e
        return build_model(spec, input_shape=input_shape, classes=self.classes, **flags)

    def make_optimizer(self, config):
        """Returns the Keras optimizer of a config dict."""
        lr = config["learning_rate"]
        kind = config["optimizer"]
        if kind == "sgd":
            return keras.optimizers.SGD(lr, momentum=0.9)
        if kind == "rmsprop":
            return keras.optimizers.RMSprop(lr)
        if kind == "adamw":
            return keras.optimizers.AdamW(lr)
        return keras.optimizers.Adam(lr)

    def build(self, hp):
        """Declares the space in `hp` and returns the compiled model of its values."""
        config = self.sample(hp)
        model = self.build_from_config(config)
        model.compile(
            optimizer=self.make_optimizer(config), loss=self.loss, metrics=list(self.metrics)
        )
        return model

    def cost(self, model):
        """Returns `{"params": int, "macs": int or None}` of a model (cached)."""
        if model not in self._costs:
            params, macs = _count_cost(model)
            self._costs[model] = {"params": params, "macs": macs}
        return dict(self._costs[model])

    def check_limits(self, model):
        """Raises `keras_tuner.errors.FailedTrialError` if `model` is over a limit."""
        if self.max_params is None and self.max_macs is None:
            return
        cost = self.cost(model)
        if self.max_params is not None and cost["params"] > self.max_params:
            raise kt_errors.FailedTrialError(
                f"Rejected: {model.name} has {cost['params']:,} parameters "
                f"> max_params={self.max_params:,}."
            )
        if self.max_macs is not None and cost["macs"] > self.max_macs:
            raise kt_errors.FailedTrialError(
                f"Rejected: {model.name} has {cost['macs']:,} MACs > max_macs={self.max_macs:,}."
            )

    def make_callbacks(self, callbacks=None):
        """Returns `callbacks` plus a fresh `StabilityStopping` when enabled."""
        callbacks = list(callbacks or [])
        if self.stability_stopping:
            cls = stability_stopping_class()
            if not any(isinstance(c, cls) for c in callbacks):
                callbacks.append(cls(**self.stability_kwargs))
        return callbacks

    def fit(self, hp, model, *args, **kwargs):
        """Trains `model` inside a trial (limits, stability stopping, cost metrics).

        Returns the `History`, with the constant per-epoch entries
        `"params"`, `"macs"` (when known) and `"epochs_trained"` added so that
        keras-tuner records them as trial metrics.
        """
        self.check_limits(model)
        kwargs["callbacks"] = self.make_callbacks(kwargs.get("callbacks"))
        history = model.fit(*args, **kwargs)
        n = len(history.epoch)
        if n:
            cost = self.cost(model)
            history.history["params"] = [float(cost["params"])] * n
            if cost["macs"] is not None:
                history.history["macs"] = [float(cost["macs"])] * n
            history.history["epochs_trained"] = [float(n)] * n
        return history


# --------------------------------------------------------------------------
# Tuners and the search function.
# --------------------------------------------------------------------------
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
    """
    if not isinstance(tuner, str) or tuner.lower() not in TUNERS:
        raise ValueError(f"tuner must be one of {TUNERS}. Received: tuner={tuner!r}")
    tuner = tuner.lower()
    for arg, value in (("max_trials", max_trials), ("epochs", epochs)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{arg} must be a positive integer. Received: {arg}={value!r}")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise ValueError(f"seed must be an integer or None. Received: seed={seed!r}")
    if tuner == "bayesian":
        missing = [m for m in ("scipy", "sklearn") if importlib.util.find_spec(m) is None]
        if missing:
            raise ValueError(
                "tuner='bayesian' needs scipy and scikit-learn (missing: "
                f"{', '.join(missing)}); install them with `pip install scipy scikit-learn`."
            )
    if _dist.has_chief_oracle() and not _dist.is_chief_oracle():
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


def _role():
    if not _dist.has_chief_oracle():
        return "local"
    return "chief" if _dist.is_chief_oracle() else "worker"


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
    if isinstance(num_best, bool) or not isinstance(num_best, int) or num_best < 1:
        raise ValueError(f"num_best must be a positive integer. Received: num_best={num_best!r}")
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
    role = _role()
    start = time.perf_counter()
    kt.search(*args, **fit_kwargs)
    wall = time.perf_counter() - start
    if role == "worker":
        return SearchResult(kt, [], [], 0, wall, role)
    trials = [kt.oracle.trials[t] for t in kt.oracle.start_order]
    reports = [trial_report(t) for t in trials]
    best = [
        trial_report(t)
        for t in kt.oracle.get_best_trials(num_best)
        if t.status == TrialStatus.COMPLETED
    ]
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
    best = [
        t for t in tuner.oracle.get_best_trials(num_trials) if t.status == TrialStatus.COMPLETED
    ]
    n_done = sum(t.status == TrialStatus.COMPLETED for t in tuner.oracle.trials.values())
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
