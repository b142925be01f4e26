"""The main job: train a zoo model on a dataset and write a report.

`train(...)` builds a zoo model for the dataset's shape and classes, trains
it with Keras' `fit` (progress bars with `verbose=1`), evaluates it on the
test split and writes, into `output_dir`:

- `report.json`: planned and trained epochs, wall time, time saved,
  test accuracy and loss, parameters, forward MACs and the training MACs,
  the per-epoch history, the data source, the versions and the arguments;
  `per_epoch`: one record per epoch (elapsed training seconds, MACs trained
  so far, Learn&Drop's dropped convolutions, train and test accuracy; see
  `kerascnn.training.report`), drawn by `kerascnn plot-savings`;
- `logs/`: TensorBoard logs (`tensorboard --logdir <output_dir>/logs`);
- `model.keras`: the trained model (`keras.saving.load_model` reloads it and
  evaluates to the reported accuracy);
- `filters_per_layer.png` (filters per layer under every template, from
  `kerascnn.observe.plots`), `training_curves.png` and `stability.png` (μ per
  monitored layer: without `stability_stopping` the rule still watches the
  run, never stopping it, and the report gives the epoch at which it would
  have stopped; not with `layer_dropping`);
- `run_config.json` (at the start: the arguments, read back by
  `train(resume=...)` / `kerascnn train --resume RUN_DIR`) and, while the
  run trains, `checkpoint/` (the last finished epoch, removed at the end).
  Ctrl-C writes `model.keras` of the last finished epoch and a partial
  `report.json` (`"interrupted": true`), prints `resume with: kerascnn
  train --resume <output_dir>` and exits with status 130; see `train`'s
  `resume` argument.

Extension points (for stopping, layer dropping, freezing...):

- `callbacks=[...]`: extra Keras callbacks, run after kerascnn's own.
- A callback may define `report_fields() -> dict`: its entries are merged
  into the report under the callback's class name (snake case); callbacks
  with a `stopped_epoch` attribute (EarlyStopping, StabilityStopping) fill
  the report's `stopped_epoch` (1-based, None when not stopped).
- `CALLBACK_FACTORIES` (`kerascnn.training.plugins`): `name -> (flag_kwarg,
  factory(config) -> callback, report(callback, report) -> None)`;
  `train(**{flag_kwarg: True})` adds the callback and lets `report` add
  fields. `stability_stopping`, `layer_dropping` and `layer_freezing` are
  registered there.

The phases of a run, each a short function below: validate
(`TrainConfig.validate`, `kerascnn.training.config`), prepare (dataset
info, the model spec through the one transform pipeline
`kerascnn.transforms.pipeline.transform`, callbacks, data source, strategy),
open the output directory (`kerascnn.training.checkpoint`), data, model
(`kerascnn.training.recipe`: optimizer, loss), callbacks, fit (with the
interrupt handling), evaluate, report (`kerascnn.training.report`), files.

Efficiency techniques (each recorded under the report's `"techniques"`):
architecture flags (`blurpool`, `squeeze_excite`, `gap_head`, `kernel`,
`organize` with `theta`), batch augmentation in the tf.data pipeline
(`cutout`, `mixup`), `label_smoothing`, the `one_cycle` schedule, `swa`,
`sam` and `layer_metrics` (TensorBoard, `logs/layers`).

Distribution: `strategy="mirrored"` (or any `tf.distribute.Strategy`)
builds and compiles the model in the strategy's scope; `batch_size` is the
global batch; the report's `num_replicas` says how many replicas trained.
`strategy="multi_worker"` (`kerascnn train --strategy multi_worker`, one
process per worker, each with its `TF_CONFIG`; `kerascnn launch` starts them
on one host) trains with a `tf.distribute.MultiWorkerMirroredStrategy`:
every worker reads its shard of the input, only the chief writes into
`output_dir` (the others write into a temporary directory they remove), and
a dead peer stops the others with `WorkerFailure` (see
`kerascnn.training.workers`). See docs/distributed.md.

The default command finishes in about a minute on 2 CPU cores:

    kerascnn train            # compact_mnist_25k on the embedded Fashion-MNIST subset

Example:

>>> from kerascnn.training.run import train
>>> report = train("compact_mnist_1k5_dw", epochs=1, output_dir="/tmp/run", verbose=0)
>>> sorted(report)[:3]
['args', 'batch_size', 'data_source']
"""

from __future__ import annotations

import dataclasses
import datetime
import math
import os
import time

from kerascnn.training import checkpoint as ckpt
from kerascnn.training import recipe, workers
from kerascnn.training import report as report_lib
from kerascnn.training.config import (  # noqa: F401  (re-exported: the defaults of `train`)
    DEFAULT_BATCH_SIZE,
    DEFAULT_CUTOUT_SIZE,
    DEFAULT_DATASET,
    DEFAULT_EPOCHS,
    DEFAULT_MIXUP_ALPHA,
    DEFAULT_MODEL,
    DEFAULT_SAM_RHO,
    DEFAULT_SWA_START,
    KERNELS,
    TrainConfig,
)
from kerascnn.training.plugins import CALLBACK_FACTORIES, make_plugin_callbacks
from kerascnn.training.recipe import DEFAULT_LEARNING_RATES, LR_SCHEDULES, OPTIMIZERS  # noqa: F401
from kerascnn.training.report import format_report, summary_line  # noqa: F401
from kerascnn.training.workers import WorkerFailure

#: Names kept from the flat `kerascnn.train` module.
RUN_CONFIG_FILE = ckpt.RUN_CONFIG_FILE
CHECKPOINT_DIR = ckpt.CHECKPOINT_DIR
RESUME_SAFE_ARGS = ckpt.RESUME_SAFE_ARGS
#: The keyword arguments of `train` that are recorded in run_config.json and the report.
_UNRECORDED = ("callbacks", "resume")

__all__ = [
    "CALLBACK_FACTORIES",
    "TrainConfig",
    "WorkerFailure",
    "batch_techniques",
    "check_model_fits_dataset",
    "format_report",
    "model_spec",
    "run_training",
    "summary_line",
    "train",
]


def train(
    model=DEFAULT_MODEL,
    dataset=DEFAULT_DATASET,
    epochs=DEFAULT_EPOCHS,
    batch_size=DEFAULT_BATCH_SIZE,
    template="base",
    width_multiplier=1.0,
    stages=None,
    optimizer="adam",
    learning_rate=None,
    augment=False,
    mixed_precision=False,
    strategy=None,
    output_dir=None,
    data_dir=None,
    seed=0,
    verbose=1,
    callbacks=None,
    *,
    collective_timeout=None,
    stability_stopping=False,
    lr_schedule="cosine",
    limit=None,
    source="auto",
    jit_compile=False,
    plots=True,
    blurpool=False,
    squeeze_excite=False,
    se_min_channels=None,
    se_latent_channels=None,
    gap_head=False,
    kernel=None,
    kernel_groups=2,
    kernel_overlap=0.5,
    organize=False,
    theta=None,
    cutout=None,
    mixup=None,
    label_smoothing=0.0,
    one_cycle=False,
    swa=False,
    swa_lr=None,
    swa_anneal_epochs=0,
    swa_cycle_epochs=None,
    sam=None,
    layer_metrics=False,
    layer_dropping=False,
    layer_freezing=False,
    force_drop=None,
    recipe=None,
    validation_split=None,
    resume=None,
):
    """Trains a zoo model on a dataset and writes the report, logs, model and plots.

    Args:
        model: a zoo model name (`kerascnn.zoo.list_models()`). Defaults to
            `"compact_mnist_25k"`.
        dataset: a `kerascnn.data` name. Defaults to `"embedded"` (shipped).
        epochs: planned epochs, a positive int. Defaults to 15.
        batch_size: positive int. Defaults to 64.
        template: filter template. Defaults to `"base"`.
        width_multiplier: positive float. Defaults to 1.0.
        stages: optional units per stage, e.g. `(2, 2, 2, 2)`.
        optimizer: `"sgd"` (momentum 0.9, Nesterov), `"adam"`, `"adamw"`,
            `"rmsprop"` or a `keras.optimizers.Optimizer`. Defaults to `"adam"`.
        learning_rate: defaults to 0.05 for SGD, 3e-3 for Adam/AdamW, 1e-3 for
            RMSprop.
        augment: the dataset's augmentation (`kerascnn.data.load`). Defaults
            to False.
        mixed_precision: False, True (`"mixed_float16"`) or a policy name such
            as `"mixed_bfloat16"`. Defaults to False.
        strategy: None, `"mirrored"` (the devices of this machine),
            `"multi_worker"` (the workers of the `TF_CONFIG` environment
            variable: run the same call in every worker process, see below)
            or a `tf.distribute.Strategy`. Defaults to None.
        output_dir: where everything is written. Defaults to
            `runs/<YYYYmmdd-HHMMSS>`.
        data_dir: dataset folder (`kerascnn.data.load`). Defaults to
            `$KERASCNN_DATA_DIR`.
        seed: seeds Python, NumPy, TensorFlow and the data pipeline.
            Defaults to 0.
        verbose: Keras' verbosity (1: progress bars). Defaults to 1.
        callbacks: extra Keras callbacks (see the module docstring).
        collective_timeout: with `strategy="multi_worker"`, the seconds a
            collective (all-reduce) may wait for a peer before the run fails
            with `WorkerFailure`. Defaults to None (120 s).
        stability_stopping: add `kerascnn.callbacks.StabilityStopping`.
            Defaults to False.
        lr_schedule: `"cosine"` (decay to 0 over the planned epochs, the
            default), `"constant"` or `"one_cycle"` (same as `one_cycle=True`).
        limit: use only the first `limit` training examples.
        source: data source kind (`kerascnn.data.sources`). Defaults to "auto".
        jit_compile: XLA compilation (slower on small CPUs). Defaults to False.
        plots: write the PNG plots. Defaults to True.
        blurpool: anti-aliased downsampling (`kerascnn.zoo.build(blurpool=True)`,
            Composer's thresholds). Defaults to False.
        squeeze_excite: squeeze-excite blocks after convolutions with at
            least `se_min_channels` input and output channels. Defaults to False.
        se_min_channels: SE threshold; None keeps the builder's 128
            (Composer's), which adds no block to the small MNIST nets.
        se_latent_channels: SE bottleneck width; None keeps the builder's 64.
        gap_head: replace the model's head by global average pooling and one
            dense layer (`head="gap"`). Defaults to False.
        kernel: None or a kernel decomposition of `kerascnn.transforms.decomposer`
            (`"dw_pw"`, `"dw_gpw"`, `"dw_rpw"`). Defaults to None.
        kernel_groups: groups of GPW/RPW. Defaults to 2.
        kernel_overlap: overlap of RPW. Defaults to 0.5.
        organize: reorganize the stages with the 3DRF organizer
            (`kerascnn.transforms.organizer.organize(spec, theta=theta)` on the base
            spec, before the template); the model is then built with the
            organized units per stage. Defaults to False.
        theta: the organizer's threshold. Defaults to None: the model's
            default (`kerascnn.transforms.organizer.default_settings`: 0 with
            the paper's rule for VGG, 0.1 with the saturated rule otherwise).
        cutout: None/False (off), True (a 10x10 square, the paper's) or the
            square's side; `kerascnn.layers.Cutout` on the training batches.
        mixup: None/False (off), True (alpha 0.2) or alpha:
            `keras.layers.MixUp` on the training batches (one-hot labels).
        label_smoothing: in [0, 1); > 0 trains with
            `CategoricalCrossentropy(label_smoothing=...)` on one-hot labels.
            Defaults to 0.
        one_cycle: the one-cycle schedule `kerascnn.training.schedules.OneCycle`
            peaking at the learning rate (replaces `lr_schedule`). Defaults
            to False.
        swa: False, True (average from 75% of the planned epochs) or the
            start fraction: `kerascnn.callbacks.StochasticWeightAveraging`,
            batch norm re-estimated on the (un-augmented) training data.
        swa_lr: None (the SWA phase keeps `lr_schedule`, the efficient-CNN
            paper's setting) or the SWA-phase learning rate (SWA paper's
            constant schedule). Defaults to None.
        swa_anneal_epochs: epochs over which the rate anneals (cosine) to
            `swa_lr` when the phase starts. Defaults to 0 (at once).
        swa_cycle_epochs: None (constant) or the SWA paper's cyclical
            schedule with cycles of this many epochs, from the current rate
            down to `swa_lr`, averaged at the cycle ends. Defaults to None.
        sam: None/False (off), True (rho 0.05) or rho:
            `kerascnn.training.sam.enable_sam`. Each step costs two forward and two
            backward passes.
        layer_metrics: write per-layer metrics
            (`kerascnn.callbacks.LayerMetrics`) to `logs/layers`. Defaults to
            False.
        layer_dropping: add `kerascnn.callbacks.LayerDropping` (a ValueError
            if it is not available). Defaults to False.
        layer_freezing: add `kerascnn.callbacks.LayerFreezing`. Defaults to False.
        force_drop: with `layer_dropping`, a drop forced at the end of an
            epoch whatever the scores say: `"EPOCH:CUT"` (`"0:4"`: after
            epoch 0 (0-based), drop 4 convolutions; `"1:conv_3"`: up to that
            layer) or LayerDropping's `force_drops` dict `{epoch: cut}`
            (`kerascnn train --force-drop 0:4`). Defaults to None.
        recipe: None or a named recipe of `kerascnn.training.presets.RECIPES`:
            `"efficient"` = `organize=True, blurpool=True,
            stability_stopping=True, layer_dropping=True` (with the `"base"`
            template), set on the options left at their defaults (options
            given explicitly win). The report's `"recipe"` entry lists what
            it set, and `"savings"` breaks the MACs saved down by source
            (architecture, Learn&Drop, stability stopping) against the plain
            model at the planned epochs. Defaults to None.
        validation_split: None, or a fraction in (0, 1): the last
            `validation_split` of the (first `limit`) training examples are
            held out, `fit` validates on them every epoch instead of on the
            test split (the report's `validation_accuracy` /
            `validation_loss`, and `per_epoch` records' `validation_accuracy`),
            and the test split is evaluated once at the end. For choosing
            settings without looking at the test split. Defaults to None.
        resume: None, or the directory of an interrupted (Ctrl-C) or killed
            run to continue up to its planned epochs (`kerascnn train
            --resume RUN_DIR`). The run's arguments are read back from its
            `run_config.json`; other arguments must be left at their
            defaults or equal the run's (a ValueError otherwise), except
            `verbose`, `data_dir`, `plots` and `callbacks`. A finished run
            is a ValueError. Defaults to None.

    Interrupting and resuming: at every epoch end the weights and optimizer
    variables of the finished epoch are written to `checkpoint/` in
    `output_dir` (a temporary file renamed, then `checkpoint/state.json`
    replaced atomically: the epoch count, the history, LayerDropping's
    state). On KeyboardInterrupt (Ctrl-C, SIGINT) `train` writes
    `model.keras` from that checkpoint (the last finished epoch, never a
    half-trained one) and a partial `report.json` with `"interrupted": true`,
    prints `resume with: kerascnn train --resume <output_dir>` to stderr and
    re-raises (the CLI exits with status 130). A run killed outright
    (SIGKILL) resumes from its last checkpoint the same way. A resumed run
    restarts its epoch at the beginning of the data pipeline, restores
    LayerDropping's cut (the feature cache is rebuilt from raw data) and
    the learning-rate schedule (the optimizer's step count); the histories
    of StabilityStopping and LayerFreezing's decisions start afresh at the
    resumed epoch (a note in the report says so); SWA's running average is
    kept in the checkpoint and carries over. The
    checkpoint is removed when the run finishes.

    Multi-worker (`strategy="multi_worker"`): every worker process runs
    the same `train(...)` (or `kerascnn train --strategy multi_worker`) with
    its own `TF_CONFIG`; the strategy is created first, before any other
    TensorFlow work. `batch_size` is the global batch: each worker's step
    takes `batch_size / num_workers` examples of its shard (auto-shard by
    DATA for in-memory data, so the global batches are a single process's;
    by FILE for tfds data with a file per worker; the report's
    `input_sharding` says which). The chief (task `"chief"`, else worker 0)
    writes `output_dir`; the other workers write the same files into a
    temporary directory that they remove, and their report (returned, and
    written to `$KERASCNN_WORKER_REPORT` when set) describes their own run.
    Resuming works the same across workers: run `train(resume=RUN_DIR)` in
    every worker (the others read the chief's checkpoint). If a peer dies,
    its collectives fail within `collective_timeout` and every surviving
    worker raises `WorkerFailure` ("worker 1 of 2 stopped responding ...
    resume with: <command>"; the CLI exits with status 3), the chief leaving
    a partial `report.json` and the checkpoint of the last finished epoch.

    With mixup or label smoothing the labels are one-hot during `fit`
    (validation included). The reported `test_loss` and `test_accuracy` are
    always the plain (sparse) cross-entropy and accuracy on the test split:
    the model is recompiled with `"sparse_categorical_crossentropy"` after
    training, so the saved model evaluates on the integer-label test data.

    Returns:
        The report dict (also written to `output_dir/report.json`).
    """
    wall_start = time.perf_counter()
    args = {k: v for k, v in locals().items() if k not in ("wall_start", *_UNRECORDED)}
    if resume is not None and not isinstance(resume, ckpt.Resume):
        return train(**ckpt.resume_arguments(resume, args, callbacks))
    config = TrainConfig(**args, callbacks=callbacks, resume=resume)
    return run_training(config, wall_start=wall_start)


@dataclasses.dataclass
class _Run:
    """What the phases before `fit` resolved (the report reads it too)."""

    ds_info: dict
    spec: object
    stages: object
    organized: dict | None
    build_kwargs: dict
    plugin_callbacks: dict
    source: object
    train_examples: int
    steps_per_epoch: int
    validation_examples: int = 0  # held out of the training split (`validation_split`)
    strategy: object = None
    replicas: int = 1
    workers: dict | None = None  # `kerascnn.training.workers.read_tf_config`'s dict
    input_sharding: dict | None = None
    run_dir: str | None = None  # the chief's output directory
    output_dir: str | None = None  # where this process writes (a temp dir off the chief)
    log_dir: str | None = None
    resume_state: dict | None = None
    technique_callbacks: list = dataclasses.field(default_factory=list)
    swa_callback: object = None


@dataclasses.dataclass
class _Fit:
    """The outcome of `fit` and the evaluation."""

    net: object
    history: object
    timer: object
    evaluation: dict
    train_time: float
    earlier_time: float
    extra_callbacks: list
    notes: list


def run_training(config, *, wall_start=None):
    """Runs the main job for a `TrainConfig` (what `train` does with its arguments).

    Args:
        config: a `kerascnn.training.config.TrainConfig`; its `resume` may be
            None or a `kerascnn.training.checkpoint.Resume` (`train` resolves a
            run directory into one).
        wall_start: `time.perf_counter()` when the run started. Defaults to now.

    Returns:
        The report dict (also written to `output_dir/report.json`).

    Example:

    >>> config = TrainConfig(model="compact_mnist_1k5_dw", epochs=1, verbose=0)
    >>> report = run_training(config)
    """
    wall_start = time.perf_counter() if wall_start is None else wall_start
    recorded = ckpt.recorded_args(
        {f.name: getattr(config, f.name) for f in TrainConfig.fields() if f.name not in _UNRECORDED}
    )
    config = config.validate()
    run = _prepare(config)
    try:
        _open_output(config, run, recorded)
        fit = _fit(config, run, recorded)
        report = report_lib.build_report(config, run, fit, recorded)
        _write_files(config, run, fit, report, wall_start)
        workers.write_worker_report(report)
    finally:
        if run.workers is not None and run.output_dir is not None:
            workers.remove_worker_dir(run.output_dir, run.run_dir)
    return report


def model_spec(config, input_shape):
    """The spec `train` builds: the model's spec through the one transform pipeline.

    The model is built from the spec `kerascnn.transforms.pipeline.transform`
    returns (the one pipeline order: stages, organizer, template, width,
    kernel). A bad template, width or stage layout fails here, before
    anything heavy.

    Args:
        config: a validated `TrainConfig`.
        input_shape: the dataset's `(height, width, channels)`.

    Returns:
        `(spec, stages, organized)`: the final spec, the units per stage
        (None unless given or organized) and the organizer's report entry.

    Example:

    >>> config = TrainConfig(model="mobilenet", organize=True, theta=0.1).validate()
    >>> spec, stages, _ = model_spec(config, (32, 32, 3))
    >>> stages
    [4, 4, 2, 2, 1]
    """
    from kerascnn import zoo
    from kerascnn.transforms import organizer
    from kerascnn.transforms.pipeline import transform

    shape = tuple(input_shape)
    spec, transformed = transform(
        zoo.get_spec(config.model, input_shape=shape),
        stages=config.stages,
        organize=config.organize,
        theta=config.theta,
        input_shape=shape,
        template=config.template,
        width_multiplier=config.width_multiplier,
        kernel=config.kernel,
        kernel_groups=config.kernel_groups,
        kernel_overlap=config.kernel_overlap,
        return_report=True,
    )
    if not config.organize:
        return spec, config.stages, None
    result = transformed.organizer
    depths = [int(d) for d in organizer.body_depths(result.spec)]
    organized = {
        "theta": config.theta,
        "depths_before": [int(d) for d in organizer.body_depths(transformed.before)],
        "depths_after": depths,
        "steps": [step.describe() for step in result.steps],
    }
    return spec, depths, organized


def _build_kwargs(config):
    """The `kerascnn.builder.build_model` keyword arguments of the model's techniques."""
    kwargs = dict(blurpool=config.blurpool, squeeze_excite=config.squeeze_excite)
    if config.se_min_channels is not None:
        kwargs["se_min_channels"] = config.se_min_channels
    if config.se_latent_channels is not None:
        kwargs["se_latent_channels"] = config.se_latent_channels
    return kwargs


def _check_one_cycle_steps(config, steps_per_epoch):
    from kerascnn.training.schedules import OneCycle

    try:
        OneCycle(1.0, total_steps=config.epochs * steps_per_epoch)
    except ValueError as error:
        raise ValueError(
            f"one_cycle needs more optimizer steps ({config.epochs} epochs x "
            f"{steps_per_epoch} steps): {error}"
        ) from None


def _prepare(config):
    """Everything resolved before a file is written: a bad option fails here.

    The strategy comes first: a `MultiWorkerMirroredStrategy` must be created
    before the process runs any TensorFlow operation.
    """
    from kerascnn import data
    from kerascnn.data import sources

    strategy = recipe.make_strategy(config.strategy, collective_timeout=config.collective_timeout)
    ds_info = data.info(config.dataset)
    check_model_fits_dataset(config.model, config.dataset, ds_info)
    spec, stages, organized = model_spec(config, ds_info["shape"])
    plugin_callbacks = make_plugin_callbacks(config)
    source = sources.resolve(config.dataset, config.data_dir, config.source)
    train_examples = source.num_examples("train")
    if config.limit is not None:
        train_examples = min(train_examples, config.limit)
    train_examples, validation_examples = _held_out(config, train_examples)
    steps_per_epoch = math.ceil(train_examples / config.batch_size)
    if config.lr_schedule == "one_cycle":
        _check_one_cycle_steps(config, steps_per_epoch)
    cluster = workers.strategy_workers(strategy)
    return _Run(
        ds_info=ds_info,
        spec=spec,
        stages=stages,
        organized=organized,
        build_kwargs=_build_kwargs(config),
        plugin_callbacks=plugin_callbacks,
        source=source,
        train_examples=train_examples,
        steps_per_epoch=steps_per_epoch,
        validation_examples=validation_examples,
        strategy=strategy,
        replicas=strategy.num_replicas_in_sync if strategy is not None else 1,
        workers=cluster,
        input_sharding=_input_sharding(config, source, cluster, train_examples),
    )


def _held_out(config, examples):
    """`(training, validation)` examples of the training split (`validation_split`)."""
    if config.validation_split is None:
        return examples, 0
    held_out = max(1, round(examples * config.validation_split))
    if held_out >= examples:
        raise ValueError(
            f"validation_split leaves no training example out of {examples}. "
            f"Received: validation_split={config.validation_split!r}"
        )
    return examples - held_out, held_out


def _train_limit(config, run):
    """The `limit` of the training pipelines: the examples before the held-out ones."""
    return run.train_examples if run.validation_examples else config.limit


def _input_sharding(config, source, cluster, train_examples):
    """`{"policy", "reason"}`: how the workers shard the input (`workers.shard_policy`)."""
    limit = train_examples if config.validation_split is not None else config.limit
    count = 1 if cluster is None else cluster["num_workers"]
    files = None
    if not source.in_memory and count > 1:
        files = _tfds_file_count(source, "train")
    policy, reason = workers.shard_policy(
        in_memory=source.in_memory, num_workers=count, num_files=files, limit=limit
    )
    return {"policy": policy, "reason": reason}


def _tfds_file_count(source, split):
    """The number of files of a tfds split, or None when it cannot be told."""
    try:
        import tensorflow_datasets as tfds

        from kerascnn.data.sources import CATALOG

        builder = tfds.builder(CATALOG[source.name].tfds_name, data_dir=source.location)
        return int(builder.info.splits[split].num_shards)
    except Exception:  # DATA sharding then (always correct)
        return None


def _sharded(ds, run):
    """`ds` with the run's auto-shard policy (`tf.data.Options`), set explicitly."""
    import tensorflow as tf

    options = tf.data.Options()
    policy = run.input_sharding["policy"] if run.input_sharding else "DATA"
    options.experimental_distribute.auto_shard_policy = getattr(
        tf.data.experimental.AutoShardPolicy, policy
    )
    return ds.with_options(options)


def _open_output(config, run, recorded):
    """Creates the output directory and records (or resumes) the run there."""
    output_dir = config.output_dir
    if output_dir is None:
        output_dir = os.path.join("runs", datetime.datetime.now().strftime("%Y%m%d-%H%M%S"))
    output_dir = run.run_dir = os.path.abspath(os.path.expanduser(os.fspath(output_dir)))
    chief = run.workers is None or run.workers["is_chief"]
    try:
        if chief:
            os.makedirs(output_dir, exist_ok=True)
    except OSError as error:
        raise ValueError(f"Cannot create output_dir {output_dir!r}: {error.strerror}") from None
    if chief and not os.access(output_dir, os.W_OK):
        raise ValueError(f"output_dir is not writable. Received: output_dir={output_dir!r}")
    # Off the chief: the same files, in a temporary directory removed at the end.
    write_dir = workers.worker_output_dir(output_dir, run.workers)
    run.output_dir, run.log_dir = write_dir, os.path.join(write_dir, "logs")
    if config.resume is not None and not chief:
        workers.copy_checkpoint(output_dir, write_dir, ckpt.CHECKPOINT_DIR)
    run.resume_state = ckpt.start_run(write_dir, recorded, config.resume)
    backup = os.path.join(write_dir, ckpt.CHECKPOINT_DIR)
    ckpt.attach_backup(run.plugin_callbacks.values(), backup)


def one_hot_labels(ds, classes):
    """Maps `(x, y)` batches to `(x, one_hot(y))`."""
    import tensorflow as tf

    return ds.map(lambda x, y: (x, tf.one_hot(y, classes)), num_parallel_calls=2)


def batch_techniques(ds, classes, cutout_size, mixup_alpha, one_hot, seed):
    """Cutout, one-hot labels and MixUp on the batches of a training pipeline.

    Args:
        ds: a `tf.data.Dataset` of `(images, integer labels)` batches.
        classes: the number of classes.
        cutout_size: the side of `kerascnn.layers.Cutout`'s square, or None (off).
        mixup_alpha: `keras.layers.MixUp`'s alpha, or None (off).
        one_hot: one-hot labels (required by MixUp and label smoothing).
        seed: the seed of Cutout and MixUp.
    """
    if cutout_size is not None:
        from kerascnn.layers import Cutout

        cutout = Cutout(cutout_size, seed=seed)
        ds = ds.map(lambda x, y: (cutout(x), y), num_parallel_calls=2)
    if one_hot:
        ds = one_hot_labels(ds, classes)
    if mixup_alpha is not None:
        import keras

        mixup = keras.layers.MixUp(alpha=mixup_alpha, seed=seed)

        def mix(x, y):
            out = mixup({"images": x, "labels": y})
            return out["images"], out["labels"]

        ds = ds.map(mix, num_parallel_calls=2)
    return ds


def _load_kwargs(config):
    return dict(data_dir=config.data_dir, source=config.source, autotune=False)


def _datasets(config, run):
    """The training pipeline, the test split, the split `fit` validates on and the held-out one.

    `fit` validates on the held-out split with `validation_split` (the last
    examples before `limit`), on the test split otherwise; the held-out
    split (plain labels) is None without `validation_split`.
    """
    from kerascnn import data

    classes, seed = run.ds_info["num_classes"], int(config.seed)
    train_ds = data.load(
        config.dataset,
        "train",
        config.batch_size,
        augment=config.augment,
        seed=seed,
        limit=_train_limit(config, run),
        **_load_kwargs(config),
    )
    test_ds = data.load(
        config.dataset, "test", config.batch_size, shuffle=False, **_load_kwargs(config)
    )
    held_out = None
    if run.validation_examples:
        held_out = data.load(
            config.dataset,
            "train",
            config.batch_size,
            shuffle=False,
            skip=run.train_examples,
            limit=run.validation_examples,
            **_load_kwargs(config),
        )
        held_out = _sharded(held_out, run)
    train_ds = batch_techniques(
        train_ds, classes, config.cutout, config.mixup, config.one_hot, seed
    )
    fit_val_ds = held_out if held_out is not None else _sharded(test_ds, run)
    if config.one_hot:
        fit_val_ds = one_hot_labels(fit_val_ds, classes)
    return _sharded(train_ds, run), _sharded(test_ds, run), fit_val_ds, held_out


def _build_model(config, run):
    """Builds and compiles the model in the strategy's scope (restoring a checkpoint)."""
    from kerascnn.builder.model import build_model, with_gap_head
    from kerascnn.training.sam import enable_sam

    spec = with_gap_head(run.spec) if config.gap_head else run.spec
    with recipe.strategy_scope(run.strategy):
        net = build_model(
            spec,
            input_shape=run.ds_info["shape"],
            classes=run.ds_info["num_classes"],
            **run.build_kwargs,
        )
        optimizer = recipe.make_optimizer(
            config.optimizer,
            config.learning_rate,
            schedule=config.lr_schedule,
            decay_steps=config.epochs * run.steps_per_epoch,
        )
        net.compile(
            optimizer=optimizer,
            loss=recipe.make_loss(config.label_smoothing, one_hot=config.one_hot),
            metrics=["accuracy"],
            jit_compile=config.jit_compile,
        )
        if config.sam is not None:
            enable_sam(net, rho=config.sam)
        if run.resume_state:
            ckpt.restore_checkpoint(
                net, run.resume_state, run.output_dir, config.epochs, config.verbose
            )
    return net


def _technique_callbacks(config, run):
    """SWA and per-layer metrics, as configured."""
    from kerascnn import data
    from kerascnn.callbacks import LayerMetrics, StochasticWeightAveraging

    if config.swa is not None:
        # Batch-norm re-estimation data: the un-augmented training split
        # (passed explicitly: required under a tf.distribute strategy).
        bn_data = data.load(
            config.dataset,
            "train",
            config.batch_size,
            shuffle=False,
            limit=_train_limit(config, run),
            **_load_kwargs(config),
        )
        bn_data = _sharded(bn_data, run)
        run.swa_callback = StochasticWeightAveraging(
            start=config.swa,
            data=bn_data,
            verbose=1 if config.verbose else 0,
            swa_lr=config.swa_lr,
            schedule="constant" if config.swa_cycle_epochs is None else "cyclical",
            anneal_epochs=config.swa_anneal_epochs,
            cycle_epochs=config.swa_cycle_epochs or 1,
            backup_dir=os.path.join(run.output_dir, ckpt.CHECKPOINT_DIR),
        )
        run.technique_callbacks.append(run.swa_callback)
    if config.layer_metrics:
        run.technique_callbacks.append(LayerMetrics(os.path.join(run.log_dir, "layers")))


def _fit_callbacks(config, run, timer, checkpoint):
    """Every callback of `fit`, in order: kerascnn's own, then the user's."""
    import keras

    _technique_callbacks(config, run)
    tensorboard = keras.callbacks.TensorBoard(
        log_dir=run.log_dir, write_graph=False, profile_batch=0
    )
    return (
        [timer]
        + list(run.plugin_callbacks.values())
        + run.technique_callbacks
        + [checkpoint, tensorboard]
        + list(config.callbacks or [])
    )


def _announce(config, run):
    if not config.verbose:
        return
    where = f"writing to {run.output_dir}"
    if run.workers is not None:
        w = run.workers
        role = (
            f"the chief, writing to {run.run_dir}"
            if w["is_chief"]
            else f"writing to a temporary directory; the chief writes {run.run_dir}"
        )
        where = (
            f"worker {w['worker_index']} of {w['num_workers']} (input sharded by "
            f"{run.input_sharding['policy']}), {role}"
        )
    print(
        f"kerascnn train: {config.model} on {config.dataset} ({run.source.describe()}), "
        f"{run.train_examples} training examples, {config.epochs} epochs, batch "
        f"{config.batch_size}, {run.replicas} replica(s); {where}"
    )


def _train_and_evaluate(config, run, timer, checkpoint, built):
    """`fit` (resuming at the checkpoint's epoch) and the evaluation on the test split."""
    train_ds, test_ds, fit_val_ds, held_out = _datasets(config, run)
    net = built[0] = _build_model(config, run)
    callbacks = _fit_callbacks(config, run, timer, checkpoint)
    _announce(config, run)
    fit_start = time.perf_counter()
    history = net.fit(
        train_ds,
        epochs=config.epochs,
        initial_epoch=run.resume_state["epoch"] if run.resume_state else 0,
        validation_data=fit_val_ds,
        callbacks=callbacks,
        verbose=config.verbose,
        shuffle=False,  # the pipeline shuffles (seeded)
    )
    earlier = ckpt.merge_resumed(history, timer, run.resume_state)  # earlier sessions' epochs
    if run.workers is not None:
        _average_batch_norm(net, run.strategy)
    train_time = time.perf_counter() - fit_start + earlier
    if config.one_hot:
        # Report (and save) the plain cross-entropy on integer labels.
        with recipe.strategy_scope(run.strategy):
            net.compile(
                optimizer=net.optimizer,
                loss=recipe.SPARSE_LOSS,
                metrics=["accuracy"],
                jit_compile=config.jit_compile,
            )
    evaluation = net.evaluate(test_ds, verbose=0, return_dict=True)
    if held_out is not None:
        held = net.evaluate(held_out, verbose=0, return_dict=True)
        evaluation.update(validation_accuracy=held["accuracy"], validation_loss=held["loss"])
    notes = ckpt.resume_notes(run.resume_state, run.plugin_callbacks, run.swa_callback)
    extra = list(config.callbacks or [])
    return _Fit(net, history, timer, evaluation, train_time, earlier, extra, notes)


def _average_batch_norm(net, strategy):
    """Averages the batch-norm moving statistics over the workers (every worker calls it).

    Keras 3 keeps them per worker (no aggregation): each worker's are
    estimated from its own shard. Their mean is what the chief saves, and
    the evaluation then runs the same model on every worker.
    """
    from kerascnn import _distribute

    variables = [
        v
        for layer in net._flatten_layers(include_self=False, recursive=True)
        if "BatchNormalization" in type(layer).__name__
        for v in layer.non_trainable_weights
    ]
    _distribute.average_variables(variables, strategy)


def _fit(config, run, recorded):
    """Trains and evaluates under the run's precision policy.

    Ctrl-C saves and re-raises; a dead peer of a multi-worker run raises
    `WorkerFailure` (after the same partial report, without `model.keras`:
    saving it would need the peers).
    """
    import keras

    keras.utils.set_random_seed(int(config.seed))
    previous_policy = keras.mixed_precision.global_policy()
    timer = ckpt.epoch_timer()
    checkpoint = ckpt.run_checkpoint(run.output_dir, run.resume_state, timer)
    built = [None]  # the model, once built (for the interrupt handler)
    partial = dict(model=config.model, dataset=config.dataset, planned_epochs=config.epochs)
    partial.update(output_dir=run.output_dir, args=recorded)
    multi = run.workers is not None
    command = workers.resume_command(run.run_dir, run.workers) if multi else None
    try:
        if config.mixed_precision:
            keras.mixed_precision.set_global_policy(config.mixed_precision)
        return _train_and_evaluate(config, run, timer, checkpoint, built)
    except KeyboardInterrupt:
        net = None if multi else built[0]
        ckpt.on_interrupt(net, checkpoint, run.output_dir, partial, command=command)
        raise
    except Exception as error:
        if not multi or not workers.is_peer_failure(error):
            raise
        epochs = checkpoint.state["epoch"] if checkpoint.state else 0
        worker, message = workers.failure_message(error, run.workers, epochs, run.run_dir)
        partial.update(failed_worker=worker, error=message)
        ckpt.on_interrupt(
            None, checkpoint, run.output_dir, partial, command=command, announce=False
        )
        raise WorkerFailure(message, worker) from None
    finally:
        keras.mixed_precision.set_global_policy(previous_policy)


def _write_files(config, run, fit, report, wall_start):
    """Writes model.keras, the plots and report.json; removes the checkpoint."""
    model_path = os.path.join(run.output_dir, "model.keras")
    fit.net.save(model_path)
    report["files"]["model"] = model_path
    report["files"]["logs"] = run.log_dir
    if config.plots:
        report_lib.write_plots(report, run.ds_info, config.width_multiplier, run.stages)
    report["wall_time_s"] = time.perf_counter() - wall_start + fit.earlier_time
    report_path = os.path.join(run.output_dir, report_lib.REPORT_FILE)
    report["files"]["report"] = report_path
    report_lib.write_json(report_path, report)
    ckpt.remove_checkpoint(run.output_dir)
    if config.verbose and (run.workers is None or run.workers["is_chief"]):
        print(format_report(report))


def check_model_fits_dataset(model_name, dataset, ds_info):
    """Raises a ValueError, naming the dataset first, if its images do not fit the model.

    The zoo picks a model's variant from the input size (ImageNet stem and
    head from 112 pixels), so a dataset can need a variant the model lacks
    (the MNIST-size compact nets on `imagenette`) or be smaller than the
    model's downsampling allows (`vgg11` on 28x28 MNIST).

    Args:
        model_name: a zoo model name.
        dataset: the dataset name, as the user gave it.
        ds_info: `kerascnn.data.info(dataset)` (its `"shape"` is used).
    """
    from kerascnn import zoo

    shape = tuple(int(d) for d in ds_info["shape"])
    problem = _dataset_problem(zoo, model_name, shape)
    if problem is None:
        return
    size = f"{shape[0]}x{shape[1]}"
    fits = [name for name in zoo.list_models() if _dataset_problem(zoo, name, shape) is None]
    # Models made for this image size first (the MNIST nets for MNIST).
    fits.sort(key=lambda name: tuple(zoo.get_info(name).default_input_shape) != shape)
    default = " (the default model)" if model_name == DEFAULT_MODEL else ""
    hint = f"e.g. {', '.join(fits[:4])}" if fits else "none of the zoo models does"
    raise ValueError(
        f"Dataset {dataset!r} has {size}x{shape[2]} images, which model {model_name!r}"
        f"{default} cannot take: {problem}. Choose a model for {size} inputs with "
        f"--model / model= ({hint}; see `kerascnn list`). "
        f"Received: dataset={dataset!r}, model={model_name!r}"
    )


def _dataset_problem(zoo, model_name, shape):
    """Why `shape` images do not fit `model_name` (a phrase), or None."""
    from kerascnn.builder.model import minimum_input_size

    info = zoo.get_info(model_name)
    try:
        variant = zoo.resolve_variant(info, "auto", shape)
    except ValueError:
        return (
            f"at {shape[0]}x{shape[1]} the zoo uses a model's ImageNet variant (stem and "
            f"head), and {info.name!r} has only the {', '.join(info.variants)} variant"
        )
    smallest = minimum_input_size(zoo.get_spec(info.name, input_shape=shape, variant=variant))
    if min(shape[:2]) < smallest:
        return f"its downsampling needs images of at least {smallest}x{smallest}"
    return None
