"""`TrainConfig`: every option of `kerascnn.training.run.train`, as data.

One dataclass field per keyword argument of `train`, in the order of
`kerascnn train --help`. Each field's metadata says how the command line
exposes it (`kerascnn.cli.train` generates the `train` subcommand's options
from it: nothing is restated by hand):

- `help`: the option's help text (None: none);
- `flag`: the option string (default `--<name with dashes>`), `aliases`
  (e.g. `--width-multiplier`), `dest` (the argparse attribute, default the
  flag's name);
- `type`, `choices`, `metavar`, `nargs`/`const` (optional-value flags such
  as `--cutout [SIZE]`), `action` (`"store_true"` for switches);
- `group`: `"techniques"` for the "efficiency techniques" group;
- `cli_default`: the option's default when it differs from the field's;
- `cli=False`: an API-only option (`callbacks`, `jit_compile`, `plots`).

`TrainConfig.validate()` checks every argument before anything heavy runs
(with `kerascnn._checks`, messages ending in `Received: name=value`) and
returns a normalized copy.

This module imports neither TensorFlow nor Keras: the command line reads it
to build its parser.

Example:

```python
from kerascnn.training.config import TrainConfig

config = TrainConfig(model="compact_mnist_1k5_dw", epochs=2, cutout=True).validate()
config.cutout  # -> 10 (the paper's square)
```
"""

from __future__ import annotations

import dataclasses

from kerascnn import _checks
from kerascnn.training.presets import RECIPES, recipe_options
from kerascnn.training.recipe import LR_SCHEDULES, OPTIMIZERS, STRATEGIES
from kerascnn.transforms.decomposer import KERNELS as _KERNEL_BLOCKS

#: Defaults of the main job (a ~1 minute demo on 2 CPU cores).
DEFAULT_MODEL = "compact_mnist_25k"
DEFAULT_DATASET = "embedded"
DEFAULT_EPOCHS = 15
DEFAULT_BATCH_SIZE = 64
#: Kernel decompositions (`kerascnn.transforms.decomposer.KERNELS`).
KERNELS = tuple(_KERNEL_BLOCKS)
#: Defaults of the efficiency techniques (the efficient-CNN paper's / Composer's values).
DEFAULT_CUTOUT_SIZE = 10
DEFAULT_MIXUP_ALPHA = 0.2
DEFAULT_SAM_RHO = 0.05
DEFAULT_SWA_START = 0.75
#: Mixed-precision policies `mixed_precision` accepts by name (True: the first).
PRECISION_POLICIES = ("mixed_float16", "mixed_bfloat16")
#: The group of the "efficiency techniques" options.
TECHNIQUES = "techniques"


def _option(default, help=None, **cli):
    """A dataclass field whose metadata describes its command-line option."""
    return dataclasses.field(default=default, metadata=dict(cli, help=help))


def _switch(help, **cli):
    return _option(False, help, action="store_true", **cli)


def _optional_value(default_value, help, metavar, type, off=None):
    """A technique off by default, on with `--flag` (default value) or `--flag VALUE`.

    `off` is the field's default (`train`'s); the option's default is None.
    """
    return _option(
        off,
        help,
        type=type,
        nargs="?",
        const=default_value,
        metavar=metavar,
        group=TECHNIQUES,
        cli_default=None,
    )


@dataclasses.dataclass
class TrainConfig:
    """Every option of `kerascnn.training.run.train` (see its docstring).

    The fields are `train`'s keyword arguments with the same defaults;
    their metadata describes the command-line options (module docstring).

    Example:

    >>> TrainConfig(epochs=3).epochs
    3
    """

    model: str = _option(DEFAULT_MODEL, f"zoo model (default: {DEFAULT_MODEL})")
    dataset: str = _option(
        DEFAULT_DATASET,
        "mnist, fashion_mnist, cifar10, cifar100, svhn, imagenette or embedded "
        f"(default: {DEFAULT_DATASET})",
    )
    epochs: int = _option(DEFAULT_EPOCHS, "planned epochs", type=int)
    recipe: str | None = _option(
        None,
        "a named recipe: efficient = --organize --blurpool --stability-stopping "
        "--layer-dropping (options given explicitly win; see kerascnn.training.presets)",
        choices=list(RECIPES),
    )
    batch_size: int = _option(DEFAULT_BATCH_SIZE, type=int)
    template: str = _option("base", "filter template (default: base)")
    width_multiplier: float = _option(
        1.0,
        "width multiplier (default: 1)",
        flag="--width",
        aliases=("--width-multiplier",),
        dest="width",
        type=float,
    )
    stages: object = _option(None, "units per stage", metavar="N,N,...", parse="int_list")
    optimizer: object = _option("adam", choices=OPTIMIZERS)
    learning_rate: float | None = _option(None, "learning rate", flag="--lr", type=float)
    lr_schedule: str = _option("cosine", choices=LR_SCHEDULES)
    augment: bool = _switch("the dataset's augmentation")
    mixed_precision: object = _switch("mixed_float16")
    strategy: object = _option(
        None,
        "mirrored: the devices of this machine; multi_worker: the workers of TF_CONFIG "
        "(see `kerascnn launch`); batch_size is the global batch",
        choices=list(STRATEGIES),
    )
    collective_timeout: float | None = _option(
        None,
        "multi_worker: seconds a collective may wait for a peer before the run fails "
        "(default: 120)",
        type=float,
        metavar="SECONDS",
    )
    stability_stopping: bool = _switch("stop when every monitored layer's output spread is stable")
    blurpool: bool = _switch("anti-aliased downsampling", group=TECHNIQUES)
    squeeze_excite: bool = _switch(
        "squeeze-excite blocks (Composer's thresholds)", group=TECHNIQUES
    )
    se_min_channels: int | None = _option(
        None, "SE threshold (default: 128)", type=int, group=TECHNIQUES
    )
    se_latent_channels: int | None = _option(
        None, "SE bottleneck (default: 64)", type=int, group=TECHNIQUES
    )
    gap_head: bool = _switch("global-average-pooling head + one dense layer", group=TECHNIQUES)
    kernel: str | None = _option(
        None, "kernel decomposition (3DRF decomposer)", choices=KERNELS, group=TECHNIQUES
    )
    kernel_groups: int = _option(2, "GPW/RPW groups", type=int, group=TECHNIQUES)
    kernel_overlap: float = _option(0.5, "RPW overlap", type=float, group=TECHNIQUES)
    organize: bool = _switch("reorganize the stages with the 3DRF organizer", group=TECHNIQUES)
    theta: float = _option(
        None,
        "organizer threshold (default: the model's: 0 with the paper's rule for VGG, "
        "0.1 with the saturated rule otherwise)",
        type=float,
        group=TECHNIQUES,
    )
    cutout: object = _optional_value(
        DEFAULT_CUTOUT_SIZE,
        f"cutout of a SIZE x SIZE square (default size: {DEFAULT_CUTOUT_SIZE})",
        "SIZE",
        int,
    )
    mixup: object = _optional_value(
        DEFAULT_MIXUP_ALPHA,
        f"keras.layers.MixUp (default alpha: {DEFAULT_MIXUP_ALPHA})",
        "ALPHA",
        float,
    )
    label_smoothing: float = _option(
        0.0, "label smoothing", type=float, metavar="EPS", group=TECHNIQUES
    )
    one_cycle: bool = _switch("one-cycle LR schedule peaking at --lr", group=TECHNIQUES)
    swa: object = _optional_value(
        DEFAULT_SWA_START,
        f"stochastic weight averaging from START of the epochs (default {DEFAULT_SWA_START})",
        "START",
        float,
        off=False,
    )
    swa_lr: float | None = _option(
        None,
        "SWA-phase learning rate (SWA paper / Composer; default: keep the schedule)",
        type=float,
        metavar="LR",
        group=TECHNIQUES,
    )
    swa_anneal_epochs: int = _option(
        0, "epochs annealing (cos) to --swa-lr (default: 0)", type=int, group=TECHNIQUES
    )
    swa_cycle_epochs: int | None = _option(
        None,
        "cyclical SWA schedule: cycles of C epochs ending at --swa-lr, averaged at their ends",
        type=int,
        metavar="C",
        group=TECHNIQUES,
    )
    sam: object = _optional_value(
        DEFAULT_SAM_RHO,
        f"sharpness-aware minimisation (default rho: {DEFAULT_SAM_RHO})",
        "RHO",
        float,
    )
    layer_metrics: bool = _switch("per-layer metrics in logs/layers", group=TECHNIQUES)
    layer_dropping: bool = _switch("Learn&Drop layer dropping")
    layer_freezing: bool = _switch("Learn&Drop layer freezing")
    force_drop: object = _option(
        None,
        "with --layer-dropping: drop at the end of epoch EPOCH (0-based) up to CUT (a number "
        "of convolutions or a layer name), whatever the scores say",
        metavar="EPOCH:CUT",
    )
    output_dir: object = _option(None, "default: runs/<timestamp>")
    resume: object = _option(
        None,
        "continue an interrupted or killed run with its own options (only --verbose, "
        "--data-dir may be given too)",
        metavar="RUN_DIR",
    )
    data_dir: object = _option(None, "default: $KERASCNN_DATA_DIR")
    source: str = _option(
        "auto", "auto, tfds, idx, jpeg_zip, npz...", flag="--data-source", dest="data_source"
    )
    limit: int | None = _option(None, "first N training examples", type=int)
    validation_split: float | None = _option(
        None,
        "hold out this fraction of the training examples (the last ones) as a validation "
        "split that fit validates on every epoch instead of the test split",
        type=float,
        metavar="FRACTION",
    )
    seed: int = _option(0, type=int)
    verbose: int = _option(1, type=int, choices=[0, 1, 2])
    # API-only options (no command-line flag).
    callbacks: object = _option(None, "extra Keras callbacks", cli=False)
    jit_compile: bool = _option(False, "XLA compilation", cli=False)
    plots: bool = _option(True, "write the PNG plots", cli=False)

    def validate(self):
        """Checks every option (no file is written); returns a normalized copy.

        The copy has the canonical model and dataset names, Python numbers,
        `mixed_precision` as a policy name or None, `cutout` / `mixup` /
        `swa` / `sam` as their value or None (off), `lr_schedule="one_cycle"`
        with `one_cycle=True` and a float `label_smoothing`.

        Raises:
            ValueError: a bad value (the message names the argument and ends
                with `Received: name=value`).
            TypeError: a value of the wrong type.
        """
        from kerascnn import zoo
        from kerascnn.data import sources

        if not isinstance(self.model, str):
            raise TypeError(
                f"model must be a zoo model name. {_checks.received('model', self.model)}"
            )
        config = self.with_recipe()
        if config is not self:
            return config.validate()
        changes = dict(model=zoo.get_info(self.model).name)
        changes["dataset"] = sources.canonical_name(self.dataset)
        changes.update(self._checked_numbers())
        changes.update(self._checked_strategy())
        changes.update(self._checked_switches())
        changes.update(self._checked_techniques())
        return dataclasses.replace(self, **changes)

    def _checked_numbers(self):
        if isinstance(self.optimizer, str):
            _checks.check_one_of(self.optimizer, "optimizer", OPTIMIZERS)
        _checks.check_one_of(self.lr_schedule, "lr_schedule", LR_SCHEDULES)
        precision = self.mixed_precision
        if precision is True:
            precision = PRECISION_POLICIES[0]
        elif precision in (False, None):
            precision = None
        elif precision not in PRECISION_POLICIES:
            raise ValueError(
                "mixed_precision must be a bool, 'mixed_float16' or 'mixed_bfloat16'. "
                f"{_checks.received('mixed_precision', self.mixed_precision)}"
            )
        return dict(
            epochs=_checks.check_positive_int(self.epochs, "epochs"),
            batch_size=_checks.check_positive_int(self.batch_size, "batch_size"),
            limit=_checks.check_positive_int(self.limit, "limit", allow_none=True),
            validation_split=_checks.check_fraction(
                self.validation_split, "validation_split", include_zero=False, allow_none=True
            ),
            seed=_checks.check_int(self.seed, "seed"),
            learning_rate=_checks.check_positive_number(
                self.learning_rate, "learning_rate", allow_none=True
            ),
            mixed_precision=precision,
        )

    def _checked_strategy(self):
        """`strategy` and `collective_timeout`; TF_CONFIG for `"multi_worker"`."""
        if isinstance(self.strategy, str) and self.strategy != "default":
            _checks.check_one_of(self.strategy, "strategy", STRATEGIES)
        timeout = _checks.check_positive_number(
            self.collective_timeout, "collective_timeout", allow_none=True
        )
        if self.strategy == "multi_worker":
            from kerascnn.training import workers

            workers.read_tf_config()
        return dict(collective_timeout=timeout)

    def _checked_switches(self):
        names = ("stability_stopping", "layer_dropping", "layer_freezing", "blurpool")
        names += ("squeeze_excite", "gap_head", "organize", "one_cycle", "layer_metrics")
        switches = {name: _checks.check_bool(getattr(self, name), name) for name in names}
        switches["force_drop"] = parse_force_drop(self.force_drop)
        if switches["force_drop"] is not None and not switches["layer_dropping"]:
            raise ValueError(
                "force_drop needs layer_dropping. Received: layer_dropping="
                f"{self.layer_dropping!r}, force_drop={self.force_drop!r}"
            )
        if switches["layer_dropping"] and switches["layer_freezing"]:
            raise ValueError(
                "layer_dropping and layer_freezing cannot be combined. "
                "Received: layer_dropping=True, layer_freezing=True"
            )
        return switches

    def _checked_techniques(self):
        _checks.check_one_of(self.kernel, "kernel", KERNELS, allow_none=True)
        lr_schedule = "one_cycle" if self.one_cycle else self.lr_schedule
        if lr_schedule == "one_cycle" and not isinstance(self.optimizer, str):
            raise ValueError(
                "one_cycle needs an optimizer name (the schedule is built for it). "
                f"Received: optimizer={type(self.optimizer).__name__}"
            )
        theta = self.theta
        if self.organize and theta is not None:
            from kerascnn.transforms import organizer

            theta = organizer.check_theta(theta)
        return dict(
            theta=theta,
            cutout=_switch_or_value(
                self.cutout, "cutout", DEFAULT_CUTOUT_SIZE, _checks.check_positive_int
            ),
            mixup=_switch_or_value(
                self.mixup, "mixup", DEFAULT_MIXUP_ALPHA, _checks.check_positive_number
            ),
            swa=_switch_or_value(self.swa, "swa", DEFAULT_SWA_START, _checks.check_fraction),
            sam=_switch_or_value(
                self.sam, "sam", DEFAULT_SAM_RHO, _checks.check_non_negative_number
            ),
            label_smoothing=_checks.check_fraction(self.label_smoothing, "label_smoothing"),
            lr_schedule=lr_schedule,
            **self._checked_swa_schedule(),
        )

    def _checked_swa_schedule(self):
        """`swa_lr` / `swa_anneal_epochs` / `swa_cycle_epochs` (need `swa`; see the callback)."""
        checked = dict(
            swa_lr=_checks.check_positive_number(self.swa_lr, "swa_lr", allow_none=True),
            swa_anneal_epochs=_checks.check_non_negative_int(
                self.swa_anneal_epochs, "swa_anneal_epochs"
            ),
            swa_cycle_epochs=_checks.check_positive_int(
                self.swa_cycle_epochs, "swa_cycle_epochs", allow_none=True
            ),
        )
        given = [
            name
            for name, value in (
                ("swa_lr", self.swa_lr),
                ("swa_anneal_epochs", self.swa_anneal_epochs or None),
                ("swa_cycle_epochs", self.swa_cycle_epochs),
            )
            if value is not None
        ]
        if given and self.swa in (None, False):
            raise ValueError(
                f"{given[0]} needs swa. Received: swa={self.swa!r}, "
                f"{given[0]}={getattr(self, given[0])!r}"
            )
        if given and self.swa_lr is None:
            raise ValueError(f"{given[0]} needs swa_lr (the SWA-phase rate). Received: swa_lr=None")
        if self.swa_cycle_epochs is not None and self.swa_anneal_epochs:
            raise ValueError(
                "swa_anneal_epochs applies to the constant SWA schedule only (not with "
                f"swa_cycle_epochs). Received: swa_anneal_epochs={self.swa_anneal_epochs!r}"
            )
        return checked

    def with_recipe(self):
        """This config with its recipe's options applied (itself without a recipe).

        The recipe (`kerascnn.training.presets.RECIPES`) sets the options left
        at their defaults; the returned copy's `recipe` is kept, so applying
        it again changes nothing.

        Example:

        >>> TrainConfig(recipe="efficient").with_recipe().blurpool
        True
        """
        fields = {f.name: getattr(self, f.name) for f in self.fields()}
        applied, _ = recipe_options(self.recipe, fields, self.defaults())
        changed = {k: v for k, v in applied.items() if fields[k] != v}
        return dataclasses.replace(self, **changed) if changed else self

    @property
    def one_hot(self):
        """Whether training uses one-hot labels (MixUp or label smoothing)."""
        return self.mixup is not None or self.label_smoothing > 0

    @classmethod
    def fields(cls):
        """The dataclass fields, in the order of `kerascnn train --help`."""
        return dataclasses.fields(cls)

    @classmethod
    def cli_fields(cls):
        """The fields with a command-line option (all but the API-only ones)."""
        return [f for f in cls.fields() if f.metadata.get("cli", True)]

    @classmethod
    def defaults(cls):
        """`{name: default}` of every field (`train`'s defaults)."""
        return {f.name: f.default for f in cls.fields()}


def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def parse_force_drop(value):
    """`force_drop` as LayerDropping's `force_drops` dict `{epoch: cut}`, or None.

    Accepts None, `"EPOCH:CUT"` (`"0:4"`: at the end of epoch 0, 4
    convolutions; `"1:block2_conv"`: up to that layer) or a dict (keys may
    be digit strings, as read back from run_config.json).

    Example:

    >>> parse_force_drop("0:4")
    {0: 4}
    """
    if value is None or value is False:
        return None
    message = (
        "force_drop must be 'EPOCH:CUT' (EPOCH an integer >= 0, CUT a number of "
        f"convolutions >= 1 or a layer name), e.g. '0:4'. {_checks.received('force_drop', value)}"
    )
    if isinstance(value, str):
        epoch, sep, cut = value.partition(":")
        value = {epoch.strip(): cut.strip()} if sep else None
    if not isinstance(value, dict) or not value:
        raise ValueError(message)
    parsed = {}
    for epoch, cut in value.items():
        if isinstance(epoch, str) and epoch.isdigit():
            epoch = int(epoch)
        if isinstance(cut, str) and cut.isdigit():
            cut = int(cut)
        ok_cut = (isinstance(cut, str) and cut) or (_is_int(cut) and cut >= 1)
        if not (_is_int(epoch) and epoch >= 0 and ok_cut):
            raise ValueError(message)
        parsed[int(epoch)] = cut if isinstance(cut, str) else int(cut)
    return parsed


def _switch_or_value(value, name, default, check):
    """None/False -> None (off); True -> `default`; a value -> `check(value, name)`."""
    if value is None or value is False:
        return None
    if value is True:
        return default
    return check(value, name)
