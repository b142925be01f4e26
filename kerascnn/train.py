"""The main job: train a zoo model on a dataset and write a report.

`train(...)` builds a zoo model for the dataset's shape and classes, trains
it with Keras' `fit` (progress bars with `verbose=1`), evaluates it on the
test split and writes, into `output_dir`:

- `report.json`: planned and trained epochs, wall time, time saved,
  test accuracy and loss, parameters, forward MACs and the training MACs,
  the per-epoch history, the data source, the versions and the arguments;
- `logs/`: TensorBoard logs (`tensorboard --logdir <output_dir>/logs`);
- `model.keras`: the trained model (`keras.saving.load_model` reloads it and
  evaluates to the reported accuracy);
- `filters_per_layer.png` (filters per layer under every template, from
  `kerascnn.plots`), `training_curves.png` and, with stability stopping,
  `stability.png`.

Extension points (for stopping, layer dropping, freezing...):

- `callbacks=[...]`: extra Keras callbacks, run after kerascnn's own.
- A callback may define `report_fields() -> dict`: its entries are merged
  into the report under the callback's class name (snake case); callbacks
  with a `stopped_epoch` attribute (EarlyStopping, StabilityStopping) fill
  the report's `stopped_epoch` (1-based, None when not stopped).
- `CALLBACK_FACTORIES`: `name -> (flag_kwarg, factory(config) -> callback,
  report(callback, report) -> None)`; `train(**{flag_kwarg: True})` adds
  the callback and lets `report` add fields. `stability_stopping` is
  registered here; layer dropping can register the same way.

The default command finishes in about a minute on 2 CPU cores:

    kerascnn train            # compact_mnist_25k on the embedded Fashion-MNIST subset

Example:

>>> from kerascnn.train import train
>>> report = train("compact_mnist_1k5_dw", epochs=1, output_dir="/tmp/run", verbose=0)
>>> sorted(report)[:3]
['args', 'batch_size', 'data_source']
"""

from __future__ import annotations

import datetime
import json
import math
import os
import platform
import re
import time

import numpy as np

#: Defaults of the main job (a ~1 minute demo on 2 CPU cores).
DEFAULT_MODEL = "compact_mnist_25k"
DEFAULT_DATASET = "embedded"
DEFAULT_EPOCHS = 15
DEFAULT_BATCH_SIZE = 64
OPTIMIZERS = ("sgd", "adam", "adamw", "rmsprop")
DEFAULT_LEARNING_RATES = {"sgd": 0.05, "adam": 3e-3, "adamw": 3e-3, "rmsprop": 1e-3}
LR_SCHEDULES = ("constant", "cosine")


def _stability_factory(config):
    from kerascnn.callbacks import StabilityStopping

    return StabilityStopping(verbose=1 if config.get("verbose") else 0)


def _stability_report(callback, report):
    stopped = bool(callback.stopped_epoch)
    report["stability"] = {
        "stopped": stopped,
        "stop_epoch": callback.stopped_epoch + 1 if stopped else None,
        "epochs_run": callback.epochs_run,
        "planned_epochs": callback.planned_epochs,
        "epochs_saved": callback.epochs_saved,
        "fraction_saved": callback.fraction_saved,
        "decimals": callback.decimals,
        "patience": callback.patience,
        "monitored_layers": list(callback.monitored_layers),
    }
    report["stability_history"] = [
        {k: float(v) for k, v in epoch.items()} for epoch in callback.history
    ]


#: Pluggable callbacks: name -> (keyword argument of `train`, factory, reporter).
CALLBACK_FACTORIES = {
    "stability_stopping": ("stability_stopping", _stability_factory, _stability_report),
}


def _snake(name):
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def _check_positive_int(value, arg):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{arg} must be a positive integer. Received: {arg}={value!r}")
    return int(value)


def _jsonable(value):
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating, float)):
        value = float(value)
        return value if math.isfinite(value) else None
    if isinstance(value, (str, int, bool)) or value is None:
        return value
    return str(value)


def _write_json(path, payload):
    tmp = f"{path}.{os.getpid()}.tmp"
    try:
        with open(tmp, "w") as f:
            json.dump(_jsonable(payload), f, indent=2)
            f.write("\n")
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def _make_optimizer(optimizer, learning_rate, lr_schedule, decay_steps):
    import keras

    if isinstance(optimizer, keras.optimizers.Optimizer):
        return optimizer
    if optimizer not in OPTIMIZERS:
        raise ValueError(
            f"optimizer must be one of {OPTIMIZERS}. Received: optimizer={optimizer!r}"
        )
    lr = DEFAULT_LEARNING_RATES[optimizer] if learning_rate is None else learning_rate
    if lr_schedule == "cosine":
        lr = keras.optimizers.schedules.CosineDecay(lr, decay_steps=max(1, decay_steps))
    if optimizer == "sgd":
        return keras.optimizers.SGD(lr, momentum=0.9, nesterov=True)
    if optimizer == "adam":
        return keras.optimizers.Adam(lr)
    if optimizer == "adamw":
        return keras.optimizers.AdamW(lr, weight_decay=1e-4)
    return keras.optimizers.RMSprop(lr)


def _make_strategy(strategy):
    import tensorflow as tf

    if strategy is None or strategy == "default":
        return None
    if isinstance(strategy, tf.distribute.Strategy):
        return strategy
    if strategy == "mirrored":
        return tf.distribute.MirroredStrategy()
    raise ValueError(
        "strategy must be None, 'mirrored' or a tf.distribute.Strategy. "
        f"Received: strategy={strategy!r}"
    )


def _model_macs(model):
    """Forward MACs (batch 1) from `kerascnn.summary`, or `(None, note)`."""
    try:
        from kerascnn import summary
    except ImportError:
        return None, "kerascnn.summary is not available: MACs not computed"
    try:
        return int(summary.summarize(model).macs), None
    except Exception as error:  # the report must not fail on a counting problem
        return None, f"MACs not computed: {error}"


def _plot_curves(history, path, title):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(9, 3.6))
    FigureCanvasAgg(figure)
    for i, metric in enumerate(("loss", "accuracy")):
        axes = figure.add_subplot(1, 2, i + 1)
        for key in (metric, f"val_{metric}"):
            if key in history:
                epochs = range(1, len(history[key]) + 1)
                label = "test" if key.startswith("val_") else "train"
                axes.plot(epochs, history[key], marker="o", markersize=3, label=label)
        axes.set_xlabel("Epoch")
        axes.set_ylabel(metric)
        axes.grid(True, alpha=0.3)
        axes.legend(fontsize="small")
    figure.suptitle(title)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    return path


def _plot_stability(stability_history, path, title):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(7, 4))
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    names = list(stability_history[0]) if stability_history else []
    for name in names:
        values = [epoch[name] for epoch in stability_history]
        axes.plot(range(1, len(values) + 1), values, marker="o", markersize=3, label=name)
    axes.set_xlabel("Epoch")
    axes.set_ylabel("μ (mean std of the layer output)")
    axes.set_title(title)
    axes.grid(True, alpha=0.3)
    if names:
        axes.legend(fontsize="x-small")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    return path


class _EpochTimer:
    """Keras callback recording the wall time of every epoch (built lazily)."""

    @staticmethod
    def create():
        import keras

        class EpochTimer(keras.callbacks.Callback):
            def __init__(self):
                super().__init__()
                self.times = []
                self._start = None

            def on_epoch_begin(self, epoch, logs=None):
                self._start = time.perf_counter()

            def on_epoch_end(self, epoch, logs=None):
                self.times.append(time.perf_counter() - self._start)

        return EpochTimer()


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
    stability_stopping=False,
    lr_schedule="cosine",
    limit=None,
    source="auto",
    jit_compile=False,
    plots=True,
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
        strategy: None, `"mirrored"` or a `tf.distribute.Strategy`.
        output_dir: where everything is written. Defaults to
            `runs/<YYYYmmdd-HHMMSS>`.
        data_dir: dataset folder (`kerascnn.data.load`). Defaults to
            `$KERASCNN_DATA_DIR`.
        seed: seeds Python, NumPy, TensorFlow and the data pipeline.
            Defaults to 0.
        verbose: Keras' verbosity (1: progress bars). Defaults to 1.
        callbacks: extra Keras callbacks (see the module docstring).
        stability_stopping: add `kerascnn.callbacks.StabilityStopping`.
            Defaults to False.
        lr_schedule: `"cosine"` (decay to 0 over the planned epochs, the
            default) or `"constant"`.
        limit: use only the first `limit` training examples.
        source: data source kind (`kerascnn.data.sources`). Defaults to "auto".
        jit_compile: XLA compilation (slower on small CPUs). Defaults to False.
        plots: write the PNG plots. Defaults to True.

    Returns:
        The report dict (also written to `output_dir/report.json`).
    """
    wall_start = time.perf_counter()
    args = {k: v for k, v in locals().items() if k not in ("callbacks", "wall_start")}
    from kerascnn import data, zoo
    from kerascnn.data import sources

    # ---- validation (before anything heavy) --------------------------------
    if isinstance(model, str):
        model_name = zoo.get_info(model).name
    else:
        raise TypeError(f"model must be a zoo model name. Received: model={model!r}")
    dataset = sources.canonical_name(dataset)
    epochs = _check_positive_int(epochs, "epochs")
    batch_size = _check_positive_int(batch_size, "batch_size")
    if limit is not None:
        limit = _check_positive_int(limit, "limit")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"seed must be an int. Received: seed={seed!r}")
    if lr_schedule not in LR_SCHEDULES:
        raise ValueError(f"lr_schedule must be one of {LR_SCHEDULES}. Received: {lr_schedule!r}")
    if learning_rate is not None and (
        isinstance(learning_rate, bool)
        or not isinstance(learning_rate, (int, float))
        or not math.isfinite(learning_rate)
        or learning_rate <= 0
    ):
        raise ValueError(
            f"learning_rate must be a positive number. Received: learning_rate={learning_rate!r}"
        )
    if isinstance(optimizer, str) and optimizer not in OPTIMIZERS:
        raise ValueError(
            f"optimizer must be one of {OPTIMIZERS}. Received: optimizer={optimizer!r}"
        )
    if mixed_precision is True:
        policy_name = "mixed_float16"
    elif mixed_precision in (False, None):
        policy_name = None
    elif mixed_precision in ("mixed_float16", "mixed_bfloat16"):
        policy_name = mixed_precision
    else:
        raise ValueError(
            "mixed_precision must be a bool, 'mixed_float16' or 'mixed_bfloat16'. "
            f"Received: mixed_precision={mixed_precision!r}"
        )
    extra_callbacks = list(callbacks or [])
    plugins = {"stability_stopping": stability_stopping}
    ds_info = data.info(dataset)
    # Resolve the model spec now so that a bad template / width / stages fails fast.
    zoo.get_spec(
        model_name,
        input_shape=ds_info["shape"],
        template=template,
        width_multiplier=width_multiplier,
        stages=stages,
    )
    source_obj = sources.resolve(dataset, data_dir, source)
    strategy_obj = _make_strategy(strategy)
    if output_dir is None:
        output_dir = os.path.join("runs", datetime.datetime.now().strftime("%Y%m%d-%H%M%S"))
    output_dir = os.path.abspath(os.path.expanduser(os.fspath(output_dir)))
    try:
        os.makedirs(output_dir, exist_ok=True)
    except OSError as error:
        raise ValueError(f"Cannot create output_dir {output_dir!r}: {error.strerror}") from None
    if not os.access(output_dir, os.W_OK):
        raise ValueError(f"output_dir is not writable. Received: output_dir={output_dir!r}")

    import keras

    keras.utils.set_random_seed(int(seed))
    replicas = strategy_obj.num_replicas_in_sync if strategy_obj is not None else 1

    # ---- data ------------------------------------------------------------
    load_kwargs = dict(data_dir=data_dir, source=source, autotune=False)
    train_ds = data.load(
        dataset, "train", batch_size, augment=augment, seed=int(seed), limit=limit, **load_kwargs
    )
    test_ds = data.load(dataset, "test", batch_size, shuffle=False, **load_kwargs)
    train_examples = source_obj.num_examples("train")
    if limit is not None:
        train_examples = min(train_examples, limit)
    steps_per_epoch = math.ceil(train_examples / batch_size)

    # ---- model -----------------------------------------------------------
    previous_policy = keras.mixed_precision.global_policy()
    timer = _EpochTimer.create()
    plugin_callbacks = {}
    try:
        if policy_name:
            keras.mixed_precision.set_global_policy(policy_name)
        scope = strategy_obj.scope() if strategy_obj is not None else _NullScope()
        with scope:
            net = zoo.build(
                model_name,
                input_shape=ds_info["shape"],
                classes=ds_info["num_classes"],
                template=template,
                width_multiplier=width_multiplier,
                stages=stages,
            )
            net.compile(
                optimizer=_make_optimizer(
                    optimizer, learning_rate, lr_schedule, epochs * steps_per_epoch
                ),
                loss="sparse_categorical_crossentropy",
                metrics=["accuracy"],
                jit_compile=jit_compile,
            )
        for key, enabled in plugins.items():
            if enabled:
                _, factory, _ = CALLBACK_FACTORIES[key]
                try:
                    plugin_callbacks[key] = factory({"verbose": verbose})
                except ImportError as error:
                    raise ValueError(
                        f"{key} is not available in this installation: {error}"
                    ) from None
        log_dir = os.path.join(output_dir, "logs")
        fit_callbacks = (
            [timer]
            + list(plugin_callbacks.values())
            + [keras.callbacks.TensorBoard(log_dir=log_dir, write_graph=False, profile_batch=0)]
            + extra_callbacks
        )
        if verbose:
            print(
                f"kerascnn train: {model_name} on {dataset} ({source_obj.describe()}), "
                f"{train_examples} training examples, {epochs} epochs, batch {batch_size}, "
                f"{replicas} replica(s); writing to {output_dir}"
            )
        fit_start = time.perf_counter()
        history = net.fit(
            train_ds,
            epochs=epochs,
            validation_data=test_ds,
            callbacks=fit_callbacks,
            verbose=verbose,
            shuffle=False,  # the pipeline shuffles (seeded)
        )
        train_time = time.perf_counter() - fit_start
        evaluation = net.evaluate(test_ds, verbose=0, return_dict=True)
    finally:
        keras.mixed_precision.set_global_policy(previous_policy)

    # ---- report ----------------------------------------------------------
    trained_epochs = len(history.epoch)
    epoch_times = list(timer.times)
    mean_epoch = float(np.mean(epoch_times)) if epoch_times else 0.0
    macs, macs_note = _model_macs(net)
    report = {
        "model": model_name,
        "dataset": dataset,
        "data_source": source_obj.describe(),
        "template": template,
        "width_multiplier": width_multiplier,
        "stages": list(stages) if stages is not None else None,
        "optimizer": optimizer if isinstance(optimizer, str) else type(optimizer).__name__,
        "learning_rate": learning_rate
        if learning_rate is not None
        else DEFAULT_LEARNING_RATES.get(optimizer),
        "batch_size": batch_size,
        "augment": bool(augment),
        "mixed_precision": policy_name,
        "strategy": type(strategy_obj).__name__ if strategy_obj is not None else None,
        "replicas": replicas,
        "seed": int(seed),
        "train_examples": train_examples,
        "planned_epochs": epochs,
        "trained_epochs": trained_epochs,
        "stopped_epoch": None,
        "epoch_times_s": epoch_times,
        "train_time_s": train_time,
        "time_saved_estimate_s": (epochs - trained_epochs) * mean_epoch,
        "test_accuracy": float(evaluation["accuracy"]),
        "test_loss": float(evaluation["loss"]),
        "params": int(net.count_params()),
        "trainable_params": int(sum(int(np.prod(w.shape)) for w in net.trainable_weights)),
        "macs": macs,
        # Training compute estimate: forward + backward ~ 3x the forward MACs
        # per example seen.
        "training_macs_estimate": 3 * macs * train_examples * trained_epochs if macs else None,
        "history": {k: [float(v) for v in vals] for k, vals in history.history.items()},
        "output_dir": output_dir,
        "files": {},
        "notes": [macs_note] if macs_note else [],
        "versions": {
            "python": platform.python_version(),
            "keras": keras.__version__,
            "tensorflow": __import__("tensorflow").__version__,
        },
        "args": {k: v for k, v in args.items() if k != "strategy"}
        | {"strategy": strategy if isinstance(strategy, (str, type(None))) else "custom"},
    }
    for cb in list(plugin_callbacks.values()) + extra_callbacks:
        stopped = getattr(cb, "stopped_epoch", None)
        if isinstance(stopped, (int, np.integer)) and stopped > 0:
            report["stopped_epoch"] = int(stopped) + 1
    for key, cb in plugin_callbacks.items():
        CALLBACK_FACTORIES[key][2](cb, report)
    for cb in extra_callbacks:
        fields = getattr(cb, "report_fields", None)
        if callable(fields):
            report[_snake(type(cb).__name__)] = fields()

    # ---- files -----------------------------------------------------------
    model_path = os.path.join(output_dir, "model.keras")
    net.save(model_path)
    report["files"]["model"] = model_path
    report["files"]["logs"] = log_dir
    if plots:
        _write_plots(report, model_name, ds_info, template, width_multiplier, stages)
    report["wall_time_s"] = time.perf_counter() - wall_start
    report_path = os.path.join(output_dir, "report.json")
    report["files"]["report"] = report_path
    _write_json(report_path, report)
    if verbose:
        print(format_report(report))
    return report


def _write_plots(report, model_name, ds_info, template, width_multiplier, stages):
    out = report["output_dir"]
    path = os.path.join(out, "training_curves.png")
    try:
        _plot_curves(report["history"], path, f"{model_name} on {report['dataset']}")
        report["files"]["training_curves"] = path
    except Exception as error:  # plots are a convenience: never fail the run
        report["notes"].append(f"training curves not plotted: {error}")
    path = os.path.join(out, "filters_per_layer.png")
    try:
        from kerascnn import plots

        plots.plot_filter_distributions(
            model_name,
            path,
            input_shape=ds_info["shape"],
            width_multiplier=width_multiplier,
            stages=stages,
        )
        report["files"]["filters_per_layer"] = path
    except ImportError:
        report["notes"].append("kerascnn.plots is not available: filters plot skipped")
    except Exception as error:
        report["notes"].append(f"filters plot skipped: {error}")
    if report.get("stability_history"):
        path = os.path.join(out, "stability.png")
        try:
            _plot_stability(report["stability_history"], path, f"{model_name}: layer stability")
            report["files"]["stability"] = path
        except Exception as error:
            report["notes"].append(f"stability plot skipped: {error}")


class _NullScope:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def format_report(report):
    """Formats the report's main figures as a few lines of text."""
    lines = ["", f"=== kerascnn train report: {report['model']} on {report['dataset']} ==="]
    lines.append(f"data:             {report['data_source']} ({report['train_examples']} train)")
    epochs = f"{report['trained_epochs']} trained of {report['planned_epochs']} planned"
    if report.get("stopped_epoch"):
        epochs += f" (stopped at epoch {report['stopped_epoch']})"
    lines.append(f"epochs:           {epochs}")
    stability = report.get("stability")
    if stability:
        stop = stability["stop_epoch"] or "not reached"
        lines.append(
            f"stability:        stable epoch {stop}, {stability['epochs_saved']} epochs saved "
            f"({100 * stability['fraction_saved']:.1f}%)"
        )
    lines.append(
        f"time:             {report['wall_time_s']:.1f} s wall, {report['train_time_s']:.1f} s "
        f"training, ~{report['time_saved_estimate_s']:.1f} s saved"
    )
    lines.append(
        f"test accuracy:    {report['test_accuracy']:.4f} (loss {report['test_loss']:.4f})"
    )
    lines.append(
        f"parameters:       {report['params']:,} ({report['trainable_params']:,} trainable)"
    )
    if report.get("macs") is not None:
        lines.append(
            f"MACs:             {report['macs']:,} per image forward; "
            f"~{report['training_macs_estimate']:.3g} trained (3 x forward x examples seen)"
        )
    for note in report.get("notes", []):
        lines.append(f"note:             {note}")
    lines.append(
        f"written:          {', '.join(os.path.basename(p) for p in report['files'].values())}"
    )
    lines.append(f"                  in {report['output_dir']}")
    return "\n".join(lines)


# --------------------------------------------------------------------------
# Command line.
# --------------------------------------------------------------------------
def _parse_stages(text):
    from kerascnn.cli import parse_int_list

    return parse_int_list(text, "--stages", example="2,2,2,2")


def add_train_parser(subparsers):
    """Registers `kerascnn train` on an argparse `subparsers` object."""
    parser = subparsers.add_parser(
        "train",
        help="train a zoo model and write a report, logs, the model and plots",
        description=(
            "Train a zoo model on a dataset (default: the embedded Fashion-MNIST subset, "
            "no network needed) and write report.json, TensorBoard logs, model.keras "
            "and PNG plots to --output-dir."
        ),
    )
    parser.add_argument(
        "--model", default=DEFAULT_MODEL, help=f"zoo model (default: {DEFAULT_MODEL})"
    )
    parser.add_argument(
        "--dataset",
        default=DEFAULT_DATASET,
        help="mnist, fashion_mnist, cifar10, cifar100, svhn, imagenette or embedded "
        f"(default: {DEFAULT_DATASET})",
    )
    parser.add_argument("--epochs", type=int, default=DEFAULT_EPOCHS, help="planned epochs")
    parser.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE)
    parser.add_argument("--template", default="base", help="filter template (default: base)")
    parser.add_argument("--width", type=float, default=1.0, help="width multiplier (default: 1)")
    parser.add_argument("--stages", default=None, metavar="N,N,...", help="units per stage")
    parser.add_argument("--optimizer", default="adam", choices=OPTIMIZERS)
    parser.add_argument("--lr", type=float, default=None, help="learning rate")
    parser.add_argument("--lr-schedule", default="cosine", choices=LR_SCHEDULES)
    parser.add_argument("--augment", action="store_true", help="the dataset's augmentation")
    parser.add_argument("--mixed-precision", action="store_true", help="mixed_float16")
    parser.add_argument("--strategy", default=None, choices=["mirrored"])
    parser.add_argument(
        "--stability-stopping",
        action="store_true",
        help="stop when every monitored layer's output spread is stable",
    )
    parser.add_argument("--output-dir", default=None, help="default: runs/<timestamp>")
    parser.add_argument("--data-dir", default=None, help="default: $KERASCNN_DATA_DIR")
    parser.add_argument("--data-source", default="auto", help="auto, tfds, idx, jpeg_zip, npz...")
    parser.add_argument("--limit", type=int, default=None, help="first N training examples")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--verbose", type=int, default=1, choices=[0, 1, 2])
    parser.set_defaults(func=run_train_command)
    return parser


def run_train_command(args):
    """Handler of `kerascnn train`: returns 0, or raises ValueError/TypeError."""
    try:
        train(
            model=args.model,
            dataset=args.dataset,
            epochs=args.epochs,
            batch_size=args.batch_size,
            template=args.template,
            width_multiplier=args.width,
            stages=_parse_stages(args.stages) if args.stages else None,
            optimizer=args.optimizer,
            learning_rate=args.lr,
            lr_schedule=args.lr_schedule,
            augment=args.augment,
            mixed_precision=args.mixed_precision,
            strategy=args.strategy,
            stability_stopping=args.stability_stopping,
            output_dir=args.output_dir,
            data_dir=args.data_dir,
            source=args.data_source,
            limit=args.limit,
            seed=args.seed,
            verbose=args.verbose,
        )
    except FileNotFoundError as error:
        raise ValueError(str(error)) from None
    return 0


def main(argv=None):
    """`python -m kerascnn.train [options]`: the same as `kerascnn train`."""
    import argparse
    import sys

    parser = argparse.ArgumentParser(prog="kerascnn")
    add_train_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["train"] + list(sys.argv[1:] if argv is None else argv))
    try:
        return args.func(args)
    except (ValueError, TypeError, OSError) as error:
        print(f"kerascnn train: error: {' '.join(str(error).split())}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
