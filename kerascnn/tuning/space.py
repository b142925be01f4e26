"""The search space: `CNNHyperModel`, a keras-tuner `HyperModel` over the zoo.

The search space covers the zoo (model family and model), the
filter-distribution template, the width multiplier, the stage layout, the
kernel type, the efficiency flags and the optimizer. Stage layouts are
conditional scopes of the `"stage_layout"` hyperparameter:

- `"base"`: the zoo model's own stage depths;
- `"3drf"`: the stages reorganised by `kerascnn.transforms.organizer` (3D
  receptive field);
- `"free"`: one `hp.Int` depth per body stage (`"depth_<k>"`), active only
  with `stage_layout="free"`.

The spec of a point of the space goes through the one transform pipeline,
`kerascnn.transforms.pipeline.transform`, as in `kerascnn.zoo.get_spec`,
`kerascnn train` and `kerascnn optimize`; `CNNHyperModel.spec_for(hp)` returns
it without building a model.

Every trial trains with `kerascnn.callbacks.StabilityStopping` (unless
disabled) so that a trial ends when its layers stop learning, and records the
model's parameters, MACs (`kerascnn.observe.summary`) and the epochs it trained
as trial metrics `"params"`, `"macs"` and `"epochs_trained"`.

Limits (`max_params`, `max_macs`) are checked at the start of `fit()`: an
oversized model raises `keras_tuner.errors.FailedTrialError`, the trial is
marked FAILED and the search goes on. They are not checked in `build()`
because keras-tuner builds the default hyperparameters once while creating a
tuner (to discover the conditional scopes), where a raise would abort the
tuner's creation; `fit()` only runs inside trials.

Example:

>>> import keras_tuner
>>> from kerascnn.tuning import CNNHyperModel
>>> hypermodel = CNNHyperModel((28, 28, 1), 10, families=["compact"])
>>> spec = hypermodel.spec_for(keras_tuner.HyperParameters())
>>> model = hypermodel.build(keras_tuner.HyperParameters())
"""

from __future__ import annotations

import weakref

import keras_tuner
from keras_tuner import errors as kt_errors

from kerascnn import _checks, zoo
from kerascnn.builder.model import build_model, minimum_input_size
from kerascnn.callbacks.stability_stopping import StabilityStopping
from kerascnn.observe.summary import summarize
from kerascnn.training import recipe
from kerascnn.transforms import templates as _templates
from kerascnn.transforms.decomposer import KERNELS
from kerascnn.transforms.pipeline import transform

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
KERNEL_TYPES = ("std", *KERNELS)
EFFICIENCY_FLAGS = ("blurpool", "squeeze_excite")
#: Optimizer names (`kerascnn.training.recipe.OPTIMIZERS`).
OPTIMIZERS = recipe.OPTIMIZERS
#: `decomposer_kwargs` keys -> `kerascnn.transforms.pipeline.transform` arguments.
_DECOMPOSER_OPTIONS = {
    "groups": "kernel_groups",
    "overlap": "kernel_overlap",
    "shuffle": "kernel_shuffle",
}


def _choices(value, allowed, arg, default):
    """Validates a sequence of choices (strings or numbers) -> tuple."""
    if value is None:
        return tuple(default)
    if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
        value = [value]
    value = tuple(value)
    if not value:
        raise ValueError(f"{arg} must not be empty. {_checks.received(arg, value)}")
    if allowed is not None:
        bad = [v for v in value if v not in allowed]
        if bad:
            raise ValueError(
                f"Unknown {arg} {bad}; expected some of {tuple(allowed)}. "
                f"{_checks.received(arg, value)}"
            )
    if len(set(value)) != len(value):
        raise ValueError(f"{arg} has duplicates. {_checks.received(arg, value)}")
    return value


def _check_range(value, name, *, integer):
    """Checks a `(min, max)` pair with `0 < min <= max` (integers >= 1 if `integer`)."""
    kind = "integers with 1 <= min <= max" if integer else "with 0 < min <= max"
    ok = isinstance(value, (tuple, list)) and len(value) == 2
    if ok and integer:
        ok = all(isinstance(d, int) and not isinstance(d, bool) for d in value)
        ok = ok and 1 <= value[0] <= value[1]
    elif ok:
        ok = 0 < value[0] <= value[1]
    if not ok:
        raise ValueError(f"{name} must be (min, max) {kind}. {_checks.received(name, value)}")
    return tuple(value) if integer else tuple(float(v) for v in value)


def _limit(value, name):
    """Checks a positive (finite) limit or None; returns it unchanged."""
    _checks.check_positive_number(value, name, allow_none=True)
    return value


def _fits(model, input_shape):
    """Whether zoo model `model` accepts images of `input_shape`."""
    smallest = minimum_input_size(zoo.get_spec(model, input_shape=input_shape))
    return smallest is not None and min(input_shape[:2]) >= smallest


def _models_by_family(models, families, input_shape):
    """`{family: (model, ...)}` of the searched models (see `CNNHyperModel`)."""
    if models is not None:
        models = _choices(models, None, "models", ())
        by_family = {}
        for info in (zoo.get_info(m) for m in models):
            names = by_family.setdefault(info.family, [])
            if info.name not in names:
                names.append(info.name)
        by_family = {f: tuple(m) for f, m in by_family.items()}
        if families is not None:
            families = _choices(families, tuple(DEFAULT_MODELS), "families", ())
            extra = [f for f in by_family if f not in families]
            if extra:
                raise ValueError(
                    f"models of families {extra} are outside families={families!r}. "
                    f"{_checks.received('models', models)}"
                )
    else:
        explicit = families is not None
        families = _choices(families, tuple(DEFAULT_MODELS), "families", DEFAULT_FAMILIES)
        by_family = {}
        for fam in families:
            fits = tuple(m for m in DEFAULT_MODELS[fam] if _fits(m, input_shape))
            if fits:
                by_family[fam] = fits
            elif explicit:
                raise ValueError(
                    f"No {fam} model fits input_shape={input_shape} (too small for "
                    f"{DEFAULT_MODELS[fam]}); use a larger input or other families. "
                    f"{_checks.received('families', families)}"
                )
    too_small = [m for ms in by_family.values() for m in ms if not _fits(m, input_shape)]
    if too_small or not by_family:
        raise ValueError(
            f"Models {too_small} need a larger input than input_shape={input_shape}. "
            f"Received: models={models!r}, families={families!r}"
        )
    return by_family


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
            to all of them (without `"3drf"` for a non-square input: the
            organizer works on square inputs).
        depth_range: `(min, max)` units per body stage for `"free"`.
            Defaults to `(1, 3)`.
        kernel_types: among `"std"`, `"dw_pw"`, `"dw_gpw"`, `"dw_rpw"`.
            Defaults to all of them.
        efficiency_flags: among `"blurpool"`, `"squeeze_excite"`, each a
            boolean hyperparameter. Defaults to both.
        optimizers: among `OPTIMIZERS`, built by
            `kerascnn.training.recipe.make_optimizer` (SGD: momentum 0.9,
            Nesterov). Defaults to `("adam", "sgd")`.
        learning_rate_range: `(min, max)`, log-sampled. Defaults to
            `(1e-4, 1e-2)`.
        max_params: reject models with more parameters. Defaults to None.
        max_macs: reject models with more MACs (batch of one). Defaults to
            None.
        stability_stopping: add `StabilityStopping` to every trial's `fit`.
            Defaults to None (True).
        stability_kwargs: keyword arguments of `StabilityStopping`. Defaults
            to None (its defaults).
        organizer_kwargs: the organizer's arguments of
            `kerascnn.transforms.pipeline.transform` for `"3drf"` (`theta`,
            `alpha`, `rule`). Defaults to None (their defaults).
        decomposer_kwargs: the decomposer's arguments (`groups`, `overlap`,
            `shuffle`: `transform`'s `kernel_groups`, `kernel_overlap`,
            `kernel_shuffle`). Defaults to None (their defaults). For
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
        self.input_shape = _checks.check_int_sequence(input_shape, "input_shape", length=3)
        self.classes = _checks.check_int(classes, "classes", min_value=2)
        self.models = _models_by_family(models, families, self.input_shape)
        self.families = tuple(self.models)
        self._set_architecture_space(templates, width_multipliers, layouts, depth_range)
        self._set_technique_space(kernel_types, efficiency_flags, optimizers, learning_rate_range)
        self.max_params = _limit(max_params, "max_params")
        self.max_macs = _limit(max_macs, "max_macs")
        self.stability_stopping = bool(True if stability_stopping is None else stability_stopping)
        self.stability_kwargs = dict(stability_kwargs or {})
        self.organizer_kwargs = dict(organizer_kwargs or {})
        self.decomposer_kwargs = dict(decomposer_kwargs or {})
        self.loss = loss
        self.metrics = list(metrics or [])
        self._costs = weakref.WeakKeyDictionary()
        # Body-stage counts, for the "free" depth hyperparameters.
        self._body_stages = {
            m: len(zoo.get_spec(m, input_shape=self.input_shape).body_stage_indices())
            for family_models in self.models.values()
            for m in family_models
        }
        self._max_body_stages = max(self._body_stages.values())

    def _set_architecture_space(self, templates, width_multipliers, layouts, depth_range):
        """Validates and sets the templates, widths, stage layouts and depth range."""
        self.templates = tuple(
            _templates.canonical_template(t)
            for t in _choices(templates, None, "templates", _templates.TEMPLATES)
        )
        self.width_multipliers = _choices(width_multipliers, None, "width_multipliers", ())
        for w in self.width_multipliers:
            _templates.check_width_multiplier(w)
        default_layouts = LAYOUTS
        if self.input_shape[0] != self.input_shape[1]:
            # The organizer works on square inputs.
            default_layouts = tuple(x for x in LAYOUTS if x != "3drf")
        self.layouts = _choices(layouts, LAYOUTS, "layouts", default_layouts)
        self.depth_range = _check_range(depth_range, "depth_range", integer=True)

    def _set_technique_space(self, kernel_types, efficiency_flags, optimizers, lr_range):
        """Validates and sets the kernel types, efficiency flags and optimizers."""
        self.kernel_types = _choices(kernel_types, KERNEL_TYPES, "kernel_types", KERNEL_TYPES)
        if efficiency_flags is not None and not isinstance(efficiency_flags, str):
            efficiency_flags = tuple(efficiency_flags)
        self.efficiency_flags = (
            ()
            if efficiency_flags == ()
            else _choices(efficiency_flags, EFFICIENCY_FLAGS, "efficiency_flags", EFFICIENCY_FLAGS)
        )
        self.optimizers = _choices(optimizers, OPTIMIZERS, "optimizers", ())
        self.learning_rate_range = _check_range(lr_range, "learning_rate_range", integer=False)

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
    def spec_for(self, hp):
        """Returns the `ArchSpec` of the hyperparameter values in `hp` (no model is built).

        The values not set in `hp` take their defaults (they are declared in
        `hp`, as `build` does).

        Args:
            hp: a `keras_tuner.HyperParameters`.

        Returns:
            A `kerascnn.arch.spec.ArchSpec`.

        Example:

        >>> hp = keras_tuner.HyperParameters()
        >>> hp.Fixed("template", "reverse")
        >>> hypermodel.spec_for(hp).name
        """
        return self.spec_from_config(self.sample(hp))

    def spec_from_config(self, config):
        """Returns the `ArchSpec` of a config dict from `sample`.

        The zoo model's base spec goes through
        `kerascnn.transforms.pipeline.transform` (stages, 3DRF organizer,
        template and width, kernel decomposition), as in `kerascnn.zoo.get_spec`.
        For `"dw_gpw"` and `"dw_rpw"` the templated channel counts are rounded
        up to a multiple of the groups (`round_to_groups=True`); a spec that
        still cannot be decomposed raises `keras_tuner.errors.FailedTrialError`.
        """
        kernel = None if config["kernel_type"] == "std" else config["kernel_type"]
        spec = zoo.get_spec(config["model"], input_shape=self.input_shape)
        options = dict(
            stages=config["depths"],
            organize=config["stage_layout"] == "3drf",
            template=config["template"],
            width_multiplier=config["width_multiplier"],
            kernel=kernel,
            round_to_groups=True,
            input_shape=self.input_shape,
            **self.organizer_kwargs,
        )
        for key, value in self.decomposer_kwargs.items():
            options[_DECOMPOSER_OPTIONS.get(key, key)] = value
        if kernel is None:
            return transform(spec, **options)
        try:
            return transform(spec, **options)
        except ValueError as e:
            # e.g. groups not dividing a non-templated layer's channels: an
            # infeasible point of the space, not a bug.
            raise kt_errors.FailedTrialError(f"kernel_type={kernel!r}: {e}") from e

    def build_from_config(self, config):
        """Builds (uncompiled) the Keras model of a config dict from `sample`."""
        flags = {f: True for f in self.efficiency_flags if config.get(f)}
        spec = self.spec_from_config(config)
        return build_model(spec, input_shape=self.input_shape, classes=self.classes, **flags)

    def build(self, hp):
        """Declares the space in `hp` and returns the compiled model of its values."""
        config = self.sample(hp)
        model = self.build_from_config(config)
        optimizer = recipe.make_optimizer(config["optimizer"], config["learning_rate"])
        model.compile(optimizer=optimizer, loss=self.loss, metrics=list(self.metrics))
        return model

    def cost(self, model):
        """Returns `{"params": int, "macs": int}` of a model (cached)."""
        if model not in self._costs:
            s = summarize(model)
            self._costs[model] = {"params": int(s.params), "macs": int(s.macs)}
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
        if self.stability_stopping and not any(isinstance(c, StabilityStopping) for c in callbacks):
            callbacks.append(StabilityStopping(**self.stability_kwargs))
        return callbacks

    def fit(self, hp, model, *args, **kwargs):
        """Trains `model` inside a trial (limits, stability stopping, cost metrics).

        Returns the `History`, with the constant per-epoch entries
        `"params"`, `"macs"` and `"epochs_trained"` added so that keras-tuner
        records them as trial metrics.
        """
        self.check_limits(model)
        kwargs["callbacks"] = self.make_callbacks(kwargs.get("callbacks"))
        history = model.fit(*args, **kwargs)
        n = len(history.epoch)
        if n:
            cost = self.cost(model)
            history.history["params"] = [float(cost["params"])] * n
            history.history["macs"] = [float(cost["macs"])] * n
            history.history["epochs_trained"] = [float(n)] * n
        return history
