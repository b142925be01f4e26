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
- `CALLBACK_FACTORIES`: `name -> (flag_kwarg, factory(config) -> callback,
  report(callback, report) -> None)`; `train(**{flag_kwarg: True})` adds
  the callback and lets `report` add fields. `stability_stopping`,
  `layer_dropping` and `layer_freezing` are registered here (the last two
  raise a one-line ValueError when `kerascnn.callbacks` lacks them).

Efficiency techniques (each recorded under the report's `"techniques"`):
architecture flags (`blurpool`, `squeeze_excite`, `gap_head`, `kernel`,
`organize` with `theta`), batch augmentation in the tf.data pipeline
(`cutout`, `mixup`), `label_smoothing`, the `one_cycle` schedule, `swa`,
`sam` and `layer_metrics` (TensorBoard, `logs/layers`).

Distribution: `strategy="mirrored"` (or any `tf.distribute.Strategy`)
builds and compiles the model in the strategy's scope; `batch_size` is the
global batch; the report's `num_replicas` says how many replicas trained.
See docs/distributed.md.

The default command finishes in about a minute on 2 CPU cores:

    kerascnn train            # compact_mnist_25k on the embedded Fashion-MNIST subset

Example:

>>> from kerascnn.training.run import train
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
LR_SCHEDULES = ("constant", "cosine", "one_cycle")
KERNELS = ("dw_pw", "dw_gpw", "dw_rpw")
#: Defaults of the efficiency techniques (the efficient-CNN paper's / Composer's values).
DEFAULT_CUTOUT_SIZE = 10
DEFAULT_MIXUP_ALPHA = 0.2
DEFAULT_SAM_RHO = 0.05
DEFAULT_SWA_START = 0.75


def _stability_factory(config):
    from kerascnn.callbacks import StabilityStopping

    return StabilityStopping(
        verbose=1 if config.get("verbose") else 0,
        monitor_only=bool(config.get("monitor_only", False)),
    )


def _stability_report(callback, report):
    stopped = bool(callback.stopped_epoch)
    report["stability"] = {
        "stopped": stopped,
        "stop_epoch": callback.stopped_epoch + 1 if stopped else None,
        "epochs_run": callback.epochs_run,
        "planned_epochs": callback.planned_epochs,
        "epochs_saved": callback.epochs_saved,
        "fraction_saved": callback.fraction_saved,
        "monitor_only": callback.monitor_only,
        "stable_epoch": None if callback.stable_epoch is None else callback.stable_epoch + 1,
        "predicted_epochs_saved": callback.predicted_epochs_saved,
        "predicted_fraction_saved": callback.predicted_fraction_saved,
        "decimals": callback.decimals,
        "patience": callback.patience,
        "start_from_epoch": callback.start_from_epoch,
        "monitored_layers": list(callback.monitored_layers),
    }
    report["stability_history"] = [
        {k: float(v) for k, v in epoch.items()} for epoch in callback.history
    ]


def _learn_drop_class(name):
    """`kerascnn.callbacks.<name>`, or a one-line ValueError if it is not importable."""
    try:
        from kerascnn import callbacks
    except ImportError as error:
        raise ValueError(f"{name} is not available in this installation: {error}") from None
    cls = getattr(callbacks, name, None)
    if cls is None:
        raise ValueError(
            f"{name} is not available in this installation (kerascnn.callbacks.{name} "
            "cannot be imported)."
        )
    return cls


def _layer_dropping_factory(config):
    return _learn_drop_class("LayerDropping")(verbose=1 if config.get("verbose") else 0)


def _layer_freezing_factory(config):
    return _learn_drop_class("LayerFreezing")(verbose=1 if config.get("verbose") else 0)


def _learn_drop_report(key):
    def report_fn(callback, report):
        report[key] = {
            "warmup_epochs": getattr(callback, "warmup_epochs", None),
            "dropped_convs": getattr(callback, "dropped", None),
            "cut": getattr(callback, "cut", None),
        }

    return report_fn


#: Pluggable callbacks: name -> (keyword argument of `train`, factory, reporter).
#: `factory(config)` gets `{"verbose", "epochs", "seed", "monitor_only"}` (`monitor_only`:
#: the flag is off and the callback only watches, as the stability monitor does).
CALLBACK_FACTORIES = {
    "stability_stopping": ("stability_stopping", _stability_factory, _stability_report),
    "layer_dropping": (
        "layer_dropping",
        _layer_dropping_factory,
        _learn_drop_report("layer_dropping"),
    ),
    "layer_freezing": (
        "layer_freezing",
        _layer_freezing_factory,
        _learn_drop_report("layer_freezing"),
    ),
}


def _snake(name):
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def _check_positive_int(value, arg):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{arg} must be a positive integer. Received: {arg}={value!r}")
    return int(value)


def _check_bool(value, arg):
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{arg} must be a bool. Received: {arg}={value!r}")
    return bool(value)


def _optional_number(
    value, arg, default, *, integer=False, low=None, high=None, low_open=False, message=""
):
    """None/False -> None (off); True -> `default`; a number -> the checked number."""
    if value is None or value is False:
        return None
    if value is True:
        return default
    kinds = (int, np.integer) if integer else (int, float, np.integer, np.floating)
    ok = isinstance(value, kinds) and not isinstance(value, bool) and math.isfinite(value)
    if ok and low is not None:
        ok = value > low if low_open else value >= low
    if ok and high is not None:
        ok = value < high
    if not ok:
        raise ValueError(f"{arg} must be None, a bool or {message}. Received: {arg}={value!r}")
    return int(value) if integer else float(value)


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
    elif lr_schedule == "one_cycle":
        from kerascnn.training.schedules import OneCycle

        # The rate peaks at `lr` (PyTorch OneCycleLR's defaults otherwise).
        lr = OneCycle(lr, total_steps=int(decay_steps))
    if optimizer == "sgd":
        return keras.optimizers.SGD(lr, momentum=0.9, nesterov=True)
    if optimizer == "adam":
        return keras.optimizers.Adam(lr)
    if optimizer == "adamw":
        return keras.optimizers.AdamW(lr, weight_decay=1e-4)
    return keras.optimizers.RMSprop(lr)


_MIRRORED_STRATEGIES = {}


def _make_strategy(strategy):
    import tensorflow as tf

    if strategy is None or strategy == "default":
        return None
    if isinstance(strategy, tf.distribute.Strategy):
        return strategy
    if strategy == "mirrored":
        # One MirroredStrategy per process and device set: two instances in one
        # process allocate the same collective group and instance keys, and
        # the second one's all-reduces then collide with the first's in
        # TensorFlow's process-wide collective executor ("Shape mismatch in
        # the collective instance ..."). Reusing the strategy is what
        # TensorFlow recommends and makes `train(strategy="mirrored")` safe to
        # call repeatedly (notebooks, tuner trials).
        devices = tuple(d.name for d in tf.config.list_logical_devices())
        compute = tuple(d for d in devices if "GPU" in d) or tuple(d for d in devices if "CPU" in d)
        cached = _MIRRORED_STRATEGIES.get(compute)
        if cached is None:
            cached = _MIRRORED_STRATEGIES[compute] = tf.distribute.MirroredStrategy()
        return cached
    raise ValueError(
        "strategy must be None, 'mirrored' or a tf.distribute.Strategy. "
        f"Received: strategy={strategy!r}"
    )


def _one_hot(ds, classes):
    import tensorflow as tf

    return ds.map(lambda x, y: (x, tf.one_hot(y, classes)), num_parallel_calls=2)


def _batch_techniques(ds, classes, cutout_size, mixup_alpha, one_hot, seed):
    """Cutout, one-hot labels and MixUp on the batches of a training pipeline."""
    if cutout_size is not None:
        from kerascnn.layers import Cutout

        cutout = Cutout(cutout_size, seed=seed)
        ds = ds.map(lambda x, y: (cutout(x), y), num_parallel_calls=2)
    if one_hot:
        ds = _one_hot(ds, classes)
    if mixup_alpha is not None:
        import keras

        mixup = keras.layers.MixUp(alpha=mixup_alpha, seed=seed)

        def mix(x, y):
            out = mixup({"images": x, "labels": y})
            return out["images"], out["labels"]

        ds = ds.map(mix, num_parallel_calls=2)
    return ds


def _count_layers(model, class_names):
    return sum(
        type(layer).__name__ in class_names
        for layer in model._flatten_layers(include_self=False, recursive=True)
    )


def _model_macs(model):
    """Forward MACs (batch 1) from `kerascnn.observe.summary`, or `(None, note)`."""
    try:
        from kerascnn.observe import summary
    except ImportError:
        return None, "kerascnn.observe.summary is not available: MACs not computed"
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


# --------------------------------------------------------------------------
# Interrupting and resuming a run (see `train(resume=...)`).
# --------------------------------------------------------------------------
#: Written when a run starts: the arguments `train(resume=...)` reads back.
RUN_CONFIG_FILE = "run_config.json"
#: Sub-directory of the run holding the checkpoint of the last finished epoch.
CHECKPOINT_DIR = "checkpoint"
CHECKPOINT_STATE = "state.json"
#: `kerascnn.callbacks.learn_drop.dropping.STATE_FILE`, kept with the checkpoint.
_LEARN_DROP_STATE = "learn_drop_state.json"
#: Arguments that may differ from the run's when resuming (nothing they change is trained).
RESUME_SAFE_ARGS = ("verbose", "data_dir", "plots")


class _Resume:
    """A run being resumed: its directory and checkpoint state (None: from epoch 0)."""

    def __init__(self, run_dir, state):
        self.run_dir, self.state = run_dir, state


def _read_json(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError) as error:
        raise ValueError(f"Cannot read {path!r}: {error}") from None


def _recorded_args(args):
    """The arguments as recorded in run_config.json and the report."""
    recorded = dict(args)
    if not isinstance(recorded.get("optimizer"), str):
        recorded["optimizer"] = f"custom:{type(recorded['optimizer']).__name__}"
    if not isinstance(recorded.get("strategy"), (str, type(None))):
        recorded["strategy"] = "custom"
    return recorded


def _read_checkpoint(run_dir):
    """The state of the last committed checkpoint of a run, or None."""
    path = os.path.join(run_dir, CHECKPOINT_DIR, CHECKPOINT_STATE)
    if not os.path.exists(path):
        return None
    state = _read_json(path)
    state = state if isinstance(state, dict) else {}
    weights = os.path.join(run_dir, CHECKPOINT_DIR, str(state.get("weights")))
    if not isinstance(state.get("epoch"), int) or not os.path.exists(weights):
        raise ValueError(f"The checkpoint {path!r} is incomplete (no weights file {weights!r}).")
    return state


def _same_arg(a, b):
    off = (None, False)
    if any(a is v for v in off) and any(b is v for v in off):
        return True
    return _jsonable(a) == _jsonable(b)


def _resume_arguments(resume, given, callbacks):
    """The `train` keyword arguments continuing the run in directory `resume`."""
    import inspect

    run_dir = os.path.abspath(os.path.expanduser(os.fspath(resume)))
    received = f"Received: resume={os.fspath(resume)!r}"
    if not os.path.isdir(run_dir):
        raise ValueError(f"resume must be a run directory of `kerascnn train`. {received}")
    report_path = os.path.join(run_dir, "report.json")
    if os.path.exists(report_path):
        report = _read_json(report_path)
        if not report.get("interrupted"):
            raise ValueError(
                f"The run in {run_dir} is finished ({report.get('trained_epochs')} of "
                f"{report.get('planned_epochs')} planned epochs, see its report.json): nothing "
                f"to resume; start a new run instead. {received}"
            )
    config_path = os.path.join(run_dir, RUN_CONFIG_FILE)
    if not os.path.exists(config_path):
        raise ValueError(f"{run_dir} has no {RUN_CONFIG_FILE}: not a resumable run. {received}")
    stored = _read_json(config_path)
    stored = stored.get("args", {}) if isinstance(stored, dict) else {}
    if stored.get("optimizer") not in OPTIMIZERS or stored.get("strategy") == "custom":
        raise ValueError(
            f"The run in {run_dir} used an optimizer or strategy object, which cannot be "
            f"recorded: it cannot be resumed. {received}"
        )
    defaults = {n: p.default for n, p in inspect.signature(train).parameters.items()}
    kwargs = {k: v for k, v in stored.items() if k in defaults and k != "resume"}
    for name, value in given.items():
        if name in RESUME_SAFE_ARGS:
            if not _same_arg(value, defaults[name]):
                kwargs[name] = value
        elif name == "output_dir" and value is not None:
            if os.path.abspath(os.path.expanduser(os.fspath(value))) != run_dir:
                raise ValueError(f"output_dir must be the resumed run's ({run_dir}). {received}")
        elif not (_same_arg(value, defaults[name]) or _same_arg(value, stored.get(name))):
            raise ValueError(
                f"A resumed run keeps the options it was started with: {name} cannot be "
                f"changed (the run has {name}={stored.get(name)!r}; only "
                f"{', '.join(RESUME_SAFE_ARGS)} may change). Received: {name}={value!r}"
            )
    state = _read_checkpoint(run_dir)
    return dict(kwargs, output_dir=run_dir, callbacks=callbacks, resume=_Resume(run_dir, state))


def _remove_checkpoint(output_dir):
    """Removes the checkpoint files of a run (only those this module writes)."""
    directory = os.path.join(output_dir, CHECKPOINT_DIR)
    if not os.path.isdir(directory):
        return
    for name in os.listdir(directory):
        ours = name in (CHECKPOINT_STATE, _LEARN_DROP_STATE) or name.endswith(
            (".weights.h5", ".tmp")
        )
        if ours:
            os.remove(os.path.join(directory, name))
    if not os.listdir(directory):
        os.rmdir(directory)


def _start_run(output_dir, args, resume):
    """Returns the checkpoint state to resume from, or records a new run's arguments."""
    if isinstance(resume, _Resume):
        return resume.state
    # A new run in a reused directory: nothing of a previous run there may be resumed.
    _remove_checkpoint(output_dir)
    report_path = os.path.join(output_dir, "report.json")
    if os.path.exists(report_path):
        os.remove(report_path)
    config = {"version": 1, "args": _recorded_args(args)}
    _write_json(os.path.join(output_dir, RUN_CONFIG_FILE), config)
    return None


def _commit_checkpoint(model, directory, epoch, logs, times, previous):
    """Writes the checkpoint of `epoch` finished epochs; returns its state.

    The weights (with the optimizer's variables) go to a temporary file
    renamed to `epoch-NNNN.weights.h5`; then `state.json` (epochs, history,
    LayerDropping's state) is replaced atomically: a process killed at any
    point leaves the previous checkpoint or the new one, never a mix.
    """
    os.makedirs(directory, exist_ok=True)
    weights = f"epoch-{epoch:04d}.weights.h5"
    tmp = os.path.join(directory, f"tmp-{os.getpid()}.weights.h5")
    model.save_weights(tmp, overwrite=True)
    os.replace(tmp, os.path.join(directory, weights))
    history = {k: list(v) for k, v in (previous or {}).get("history", {}).items()}
    for key, value in (logs or {}).items():
        try:
            history.setdefault(key, []).append(float(value))
        except (TypeError, ValueError):
            continue
    learn_drop = os.path.join(directory, _LEARN_DROP_STATE)
    state = {
        "version": 1,
        "epoch": int(epoch),
        "weights": weights,
        "history": history,
        "epoch_times_s": list(times),
        "learn_drop_state": _read_json(learn_drop) if os.path.exists(learn_drop) else None,
    }
    _write_json(os.path.join(directory, CHECKPOINT_STATE), state)
    for name in os.listdir(directory):
        if name.startswith("epoch-") and name != weights:
            os.remove(os.path.join(directory, name))
    return state


class _RunCheckpoint:
    """Keras callback committing a checkpoint at every epoch end (built lazily)."""

    @staticmethod
    def create(output_dir, state, timer):
        import keras

        class RunCheckpoint(keras.callbacks.Callback):
            def __init__(self):
                super().__init__()
                self.directory = os.path.join(output_dir, CHECKPOINT_DIR)
                self.state = state  # the last committed one
                self._previous_times = list((state or {}).get("epoch_times_s", []))

            def on_epoch_end(self, epoch, logs=None):
                times = self._previous_times + list(timer.times)
                self.state = _commit_checkpoint(
                    self.model, self.directory, epoch + 1, logs, times, self.state
                )

        return RunCheckpoint()


def _attach_backup(callbacks, directory):
    """Lets callbacks with a `backup_dir` (LayerDropping) keep their state there."""
    for callback in callbacks:
        if hasattr(callback, "backup_dir") and callback.backup_dir is None:
            callback.backup_dir = directory


def _restore_checkpoint(net, state, output_dir, epochs, verbose):
    """Loads the checkpoint's weights and optimizer variables into `net`."""
    directory = os.path.join(output_dir, CHECKPOINT_DIR)
    if not net.optimizer.built:
        net.optimizer.build(net.trainable_variables)
    net.load_weights(os.path.join(directory, state["weights"]))
    if state.get("learn_drop_state") is not None:
        _write_json(os.path.join(directory, _LEARN_DROP_STATE), state["learn_drop_state"])
    if verbose:
        print(f"kerascnn train: resuming {output_dir} after epoch {state['epoch']} of {epochs}")


def _merge_resumed(history, timer, state):
    """Prepends the epochs of earlier sessions to `history` and `timer`; returns their time."""
    if not state:
        return 0.0
    previous = state.get("history", {})
    for key in set(previous) | set(history.history):
        before = [float("nan") if v is None else v for v in previous.get(key, [])]
        history.history[key] = before + list(history.history.get(key, []))
    history.epoch = list(range(state["epoch"])) + list(history.epoch)
    earlier = list(state.get("epoch_times_s", []))[: state["epoch"]]
    timer.times = earlier + list(timer.times)
    return float(sum(earlier))


def _resume_notes(state, plugin_callbacks, swa_callback):
    """Report notes on what a resumed run did not carry over."""
    if not state:
        return []
    restarted = [k for k in ("stability_stopping", "layer_freezing") if k in plugin_callbacks]
    restarted += ["swa"] if swa_callback is not None else []
    note = f"resumed after epoch {state['epoch']}"
    if restarted:
        note += f" ({', '.join(restarted)} restarted their state at that epoch)"
    return [note]


def _resume_command(output_dir):
    import shlex

    path = os.path.relpath(output_dir)
    if path.startswith(os.pardir):
        path = output_dir
    return f"kerascnn train --resume {shlex.quote(path)}"


def _on_interrupt(net, checkpoint, output_dir, partial):
    """Writes model.keras (last finished epoch) and a partial report; prints how to resume."""
    import signal
    import sys
    import threading

    main = threading.current_thread() is threading.main_thread()
    handler = signal.signal(signal.SIGINT, signal.SIG_IGN) if main else None
    try:
        state = checkpoint.state
        model_path = os.path.join(output_dir, "model.keras")
        notes = []
        if state is not None and net is not None:
            try:
                net.load_weights(os.path.join(checkpoint.directory, state["weights"]))
                tmp = os.path.join(output_dir, f"model.{os.getpid()}.tmp.keras")
                net.save(tmp)
                os.replace(tmp, model_path)
            except Exception as error:  # still write the report and the resume line
                notes.append(f"model.keras not written: {error}")
        command = _resume_command(output_dir)
        report = dict(
            partial,
            interrupted=True,
            trained_epochs=state["epoch"] if state else 0,
            history=(state or {}).get("history", {}),
            epoch_times_s=(state or {}).get("epoch_times_s", []),
            resume_command=command,
            notes=notes,
            files={
                "model": model_path if os.path.exists(model_path) else None,
                "checkpoint": checkpoint.directory if state else None,
                "logs": os.path.join(output_dir, "logs"),
            },
        )
        _write_json(os.path.join(output_dir, "report.json"), report)
        print(f"resume with: {command}", file=sys.stderr, flush=True)
    finally:
        if main:
            signal.signal(signal.SIGINT, handler)


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
    blurpool=False,
    squeeze_excite=False,
    se_min_channels=None,
    se_latent_channels=None,
    gap_head=False,
    kernel=None,
    kernel_groups=2,
    kernel_overlap=0.5,
    organize=False,
    theta=0.0,
    cutout=None,
    mixup=None,
    label_smoothing=0.0,
    one_cycle=False,
    swa=False,
    sam=None,
    layer_metrics=False,
    layer_dropping=False,
    layer_freezing=False,
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
        theta: the organizer's threshold. Defaults to 0.0.
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
        sam: None/False (off), True (rho 0.05) or rho:
            `kerascnn.training.sam.enable_sam`. Each step costs two forward and two
            backward passes.
        layer_metrics: write per-layer metrics
            (`kerascnn.callbacks.LayerMetrics`) to `logs/layers`. Defaults to
            False.
        layer_dropping: add `kerascnn.callbacks.LayerDropping` (a ValueError
            if it is not available). Defaults to False.
        layer_freezing: add `kerascnn.callbacks.LayerFreezing`. Defaults to False.
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
    of StabilityStopping, LayerFreezing's decisions and SWA's average start
    afresh at the resumed epoch (a note in the report says so). The
    checkpoint is removed when the run finishes.

    With mixup or label smoothing the labels are one-hot during `fit`
    (validation included). The reported `test_loss` and `test_accuracy` are
    always the plain (sparse) cross-entropy and accuracy on the test split:
    the model is recompiled with `"sparse_categorical_crossentropy"` after
    training, so the saved model evaluates on the integer-label test data.

    Returns:
        The report dict (also written to `output_dir/report.json`).
    """
    wall_start = time.perf_counter()
    args = {k: v for k, v in locals().items() if k not in ("callbacks", "wall_start", "resume")}
    if resume is not None and not isinstance(resume, _Resume):
        return train(**_resume_arguments(resume, args, callbacks))
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
    plugins = {
        "stability_stopping": stability_stopping,
        "layer_dropping": layer_dropping,
        "layer_freezing": layer_freezing,
    }
    for key, enabled in plugins.items():
        _check_bool(enabled, key)
    if layer_dropping and layer_freezing:
        raise ValueError(
            "layer_dropping and layer_freezing cannot be combined. "
            "Received: layer_dropping=True, layer_freezing=True"
        )
    for arg, value in (
        ("blurpool", blurpool),
        ("squeeze_excite", squeeze_excite),
        ("gap_head", gap_head),
        ("organize", organize),
        ("one_cycle", one_cycle),
        ("layer_metrics", layer_metrics),
    ):
        _check_bool(value, arg)
    if kernel is not None and kernel not in KERNELS:
        raise ValueError(f"kernel must be None or one of {KERNELS}. Received: kernel={kernel!r}")
    cutout_size = _optional_number(
        cutout, "cutout", DEFAULT_CUTOUT_SIZE, integer=True, low=1, message="a positive integer"
    )
    mixup_alpha = _optional_number(
        mixup, "mixup", DEFAULT_MIXUP_ALPHA, low=0, low_open=True, message="a positive number"
    )
    swa_start = _optional_number(
        swa, "swa", DEFAULT_SWA_START, low=0, high=1, message="a number in [0, 1)"
    )
    sam_rho = _optional_number(sam, "sam", DEFAULT_SAM_RHO, low=0, message="a number >= 0")
    if (
        isinstance(label_smoothing, bool)
        or not isinstance(label_smoothing, (int, float))
        or not 0 <= label_smoothing < 1
    ):
        raise ValueError(
            "label_smoothing must be a number in [0, 1). "
            f"Received: label_smoothing={label_smoothing!r}"
        )
    label_smoothing = float(label_smoothing)
    if one_cycle:
        lr_schedule = "one_cycle"
    if lr_schedule == "one_cycle" and not isinstance(optimizer, str):
        raise ValueError(
            "one_cycle needs an optimizer name (the schedule is built for it). "
            f"Received: optimizer={type(optimizer).__name__}"
        )
    one_hot = mixup_alpha is not None or label_smoothing > 0
    ds_info = data.info(dataset)
    check_model_fits_dataset(model_name, dataset, ds_info)
    organized = None
    if organize:
        from kerascnn.transforms import organizer

        theta = organizer.check_theta(theta)
        base_spec = zoo.get_spec(model_name, input_shape=ds_info["shape"], stages=stages)
        result = organizer.organize(base_spec, theta=theta, input_shape=ds_info["shape"])
        depths = [int(d) for d in organizer.body_depths(result.spec)]
        organized = {
            "theta": theta,
            "depths_before": [int(d) for d in organizer.body_depths(base_spec)],
            "depths_after": depths,
            "steps": [step.describe() for step in result.steps],
        }
        stages = depths
    model_kwargs = dict(
        template=template,
        width_multiplier=width_multiplier,
        stages=stages,
        kernel=kernel,
        kernel_groups=kernel_groups,
        kernel_overlap=kernel_overlap,
    )
    # Resolve the model spec now so that a bad template / width / stages fails fast.
    zoo.get_spec(model_name, input_shape=ds_info["shape"], **model_kwargs)
    build_kwargs = dict(model_kwargs, blurpool=blurpool, squeeze_excite=squeeze_excite)
    if gap_head:
        build_kwargs["head"] = "gap"
    if se_min_channels is not None:
        build_kwargs["se_min_channels"] = se_min_channels
    if se_latent_channels is not None:
        build_kwargs["se_latent_channels"] = se_latent_channels
    plugin_callbacks = {}
    plugin_config = {"verbose": verbose, "epochs": epochs, "seed": int(seed)}
    # Without --stability-stopping the rule still watches the run (it never
    # stops it) so that the report says when training became stable. Not with
    # layer dropping: once layers are dropped only the head's step runs.
    monitor_stability = not stability_stopping and not layer_dropping
    for key, enabled in plugins.items():
        if enabled or (key == "stability_stopping" and monitor_stability):
            _, factory, _ = CALLBACK_FACTORIES[key]
            config = dict(plugin_config, monitor_only=not enabled)
            try:
                plugin_callbacks[key] = factory(config)
            except ImportError as error:
                raise ValueError(f"{key} is not available in this installation: {error}") from None
    source_obj = sources.resolve(dataset, data_dir, source)
    train_examples = source_obj.num_examples("train")
    if limit is not None:
        train_examples = min(train_examples, limit)
    steps_per_epoch = math.ceil(train_examples / batch_size)
    if lr_schedule == "one_cycle":
        from kerascnn.training.schedules import OneCycle

        try:
            OneCycle(1.0, total_steps=epochs * steps_per_epoch)
        except ValueError as error:
            raise ValueError(
                f"one_cycle needs more optimizer steps ({epochs} epochs x "
                f"{steps_per_epoch} steps): {error}"
            ) from None
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
    resume_state = _start_run(output_dir, args, resume)
    _attach_backup(plugin_callbacks.values(), os.path.join(output_dir, CHECKPOINT_DIR))

    import keras

    keras.utils.set_random_seed(int(seed))
    replicas = strategy_obj.num_replicas_in_sync if strategy_obj is not None else 1

    # ---- data ------------------------------------------------------------
    load_kwargs = dict(data_dir=data_dir, source=source, autotune=False)
    train_ds = data.load(
        dataset, "train", batch_size, augment=augment, seed=int(seed), limit=limit, **load_kwargs
    )
    test_ds = data.load(dataset, "test", batch_size, shuffle=False, **load_kwargs)
    train_ds = _batch_techniques(
        train_ds, ds_info["num_classes"], cutout_size, mixup_alpha, one_hot, int(seed)
    )
    fit_test_ds = _one_hot(test_ds, ds_info["num_classes"]) if one_hot else test_ds

    # ---- model -----------------------------------------------------------
    previous_policy = keras.mixed_precision.global_policy()
    timer = _EpochTimer.create()
    checkpoint = _RunCheckpoint.create(output_dir, resume_state, timer)
    net = None
    technique_callbacks = []
    swa_callback = None
    try:
        if policy_name:
            keras.mixed_precision.set_global_policy(policy_name)
        scope = strategy_obj.scope() if strategy_obj is not None else _NullScope()
        with scope:
            net = zoo.build(
                model_name,
                input_shape=ds_info["shape"],
                classes=ds_info["num_classes"],
                **build_kwargs,
            )
            if one_hot:
                loss = keras.losses.CategoricalCrossentropy(label_smoothing=label_smoothing)
            else:
                loss = "sparse_categorical_crossentropy"
            net.compile(
                optimizer=_make_optimizer(
                    optimizer, learning_rate, lr_schedule, epochs * steps_per_epoch
                ),
                loss=loss,
                metrics=["accuracy"],
                jit_compile=jit_compile,
            )
            if sam_rho is not None:
                from kerascnn.training.sam import enable_sam

                enable_sam(net, rho=sam_rho)
            if resume_state:
                _restore_checkpoint(net, resume_state, output_dir, epochs, verbose)
        log_dir = os.path.join(output_dir, "logs")
        if swa_start is not None:
            from kerascnn.callbacks import StochasticWeightAveraging

            # Batch-norm re-estimation data: the un-augmented training split
            # (passed explicitly: required under a tf.distribute strategy).
            bn_data = data.load(
                dataset, "train", batch_size, shuffle=False, limit=limit, **load_kwargs
            )
            swa_callback = StochasticWeightAveraging(
                start=swa_start, data=bn_data, verbose=1 if verbose else 0
            )
            technique_callbacks.append(swa_callback)
        if layer_metrics:
            from kerascnn.callbacks import LayerMetrics

            technique_callbacks.append(LayerMetrics(os.path.join(log_dir, "layers")))
        fit_callbacks = (
            [timer]
            + list(plugin_callbacks.values())
            + technique_callbacks
            + [checkpoint]
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
            initial_epoch=resume_state["epoch"] if resume_state else 0,
            validation_data=fit_test_ds,
            callbacks=fit_callbacks,
            verbose=verbose,
            shuffle=False,  # the pipeline shuffles (seeded)
        )
        earlier = _merge_resumed(history, timer, resume_state)  # epochs of earlier sessions
        train_time, wall_start = time.perf_counter() - fit_start + earlier, wall_start - earlier
        if one_hot:
            # Report (and save) the plain cross-entropy on integer labels.
            with strategy_obj.scope() if strategy_obj is not None else _NullScope():
                net.compile(
                    optimizer=net.optimizer,
                    loss="sparse_categorical_crossentropy",
                    metrics=["accuracy"],
                    jit_compile=jit_compile,
                )
        evaluation = net.evaluate(test_ds, verbose=0, return_dict=True)
    except KeyboardInterrupt:
        partial = dict(model=model_name, dataset=dataset, planned_epochs=epochs)
        partial.update(output_dir=output_dir, args=_recorded_args(args))
        _on_interrupt(net, checkpoint, output_dir, partial)
        raise
    finally:
        keras.mixed_precision.set_global_policy(previous_policy)

    # ---- report ----------------------------------------------------------
    trained_epochs = len(history.epoch)
    epoch_times = list(timer.times)
    mean_epoch = float(np.mean(epoch_times)) if epoch_times else 0.0
    macs, macs_note = _model_macs(net)
    notes = [macs_note] if macs_note else []
    notes += _resume_notes(resume_state, plugin_callbacks, swa_callback)
    techniques = {
        "blurpool": None,
        "squeeze_excite": None,
        "gap_head": bool(gap_head),
        "kernel": None
        if kernel is None
        else {"type": kernel, "groups": kernel_groups, "overlap": kernel_overlap},
        "organize": organized,
        "cutout": None if cutout_size is None else {"size": cutout_size},
        "mixup": None if mixup_alpha is None else {"alpha": mixup_alpha},
        "label_smoothing": label_smoothing,
        "one_cycle": None
        if lr_schedule != "one_cycle"
        else {"total_steps": epochs * steps_per_epoch, "pct_start": 0.3},
        "swa": None,
        "sam": None if sam_rho is None else {"rho": sam_rho},
        "layer_metrics": None
        if not layer_metrics
        else {"log_dir": os.path.join(log_dir, "layers")},
        "layer_dropping": bool(layer_dropping),
        "layer_freezing": bool(layer_freezing),
    }
    if blurpool:
        count = _count_layers(net, ("BlurPool2D", "BlurMaxPool2D", "BlurConv2D"))
        techniques["blurpool"] = {"layers": count}
        if not count:
            notes.append("blurpool added no layer (no strided conv / max-pool qualifies)")
    if squeeze_excite:
        count = _count_layers(net, ("SqueezeExcite",))
        techniques["squeeze_excite"] = {
            "blocks": count,
            "min_channels": se_min_channels,
            "latent_channels": se_latent_channels,
        }
        if not count:
            notes.append(
                "squeeze_excite added no block (no convolution reaches se_min_channels; "
                "lower it with --se-min-channels)"
            )
    if swa_callback is not None:
        techniques["swa"] = {"start": swa_start, "epochs_averaged": swa_callback.num_averaged}
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
        "num_replicas": replicas,
        "lr_schedule": lr_schedule,
        "training_loss": "categorical_crossentropy"
        if one_hot
        else "sparse_categorical_crossentropy",
        "techniques": techniques,
        "techniques_enabled": [k for k, v in techniques.items() if v],
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
        "notes": notes,
        "versions": {
            "python": platform.python_version(),
            "keras": keras.__version__,
            "tensorflow": __import__("tensorflow").__version__,
        },
        "args": _recorded_args(args),
        "interrupted": False,
        "resumed_from_epoch": resume_state["epoch"] if resume_state else None,
    }
    for cb in list(plugin_callbacks.values()) + technique_callbacks + extra_callbacks:
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
    _remove_checkpoint(output_dir)
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
        from kerascnn.observe import plots

        plots.plot_filter_distributions(
            model_name,
            path,
            input_shape=ds_info["shape"],
            width_multiplier=width_multiplier,
            stages=stages,
        )
        report["files"]["filters_per_layer"] = path
    except ImportError:
        report["notes"].append("kerascnn.observe.plots is not available: filters plot skipped")
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
    if report.get("techniques_enabled"):
        lines.append(f"techniques:       {', '.join(report['techniques_enabled'])}")
    stability = report.get("stability")
    if stability and stability.get("monitor_only"):
        if stability["stable_epoch"]:
            lines.append(
                f"stability:        stable at epoch {stability['stable_epoch']} (predicted; "
                f"stopping there would save {stability['predicted_epochs_saved']} epochs, "
                f"{100 * stability['predicted_fraction_saved']:.1f}%; --stability-stopping stops)"
            )
        else:
            lines.append(
                f"stability:        not stable within {stability['epochs_run']} epochs "
                f"(r={stability['decimals']}, patience {stability['patience']})"
            )
    elif stability:
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


def _parse_stages(text):
    from kerascnn.cli.core import parse_int_list

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
    parser.add_argument(
        "--width",
        "--width-multiplier",
        dest="width",
        type=float,
        default=1.0,
        help="width multiplier (default: 1)",
    )
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
    techniques = parser.add_argument_group(
        "efficiency techniques",
        "architecture flags, augmentation, schedules and training procedures",
    )
    techniques.add_argument("--blurpool", action="store_true", help="anti-aliased downsampling")
    techniques.add_argument(
        "--squeeze-excite",
        action="store_true",
        help="squeeze-excite blocks (Composer's thresholds)",
    )
    techniques.add_argument(
        "--se-min-channels", type=int, default=None, help="SE threshold (default: 128)"
    )
    techniques.add_argument(
        "--se-latent-channels", type=int, default=None, help="SE bottleneck (default: 64)"
    )
    techniques.add_argument(
        "--gap-head", action="store_true", help="global-average-pooling head + one dense layer"
    )
    techniques.add_argument(
        "--kernel", default=None, choices=KERNELS, help="kernel decomposition (3DRF decomposer)"
    )
    techniques.add_argument("--kernel-groups", type=int, default=2, help="GPW/RPW groups")
    techniques.add_argument("--kernel-overlap", type=float, default=0.5, help="RPW overlap")
    techniques.add_argument(
        "--organize", action="store_true", help="reorganize the stages with the 3DRF organizer"
    )
    techniques.add_argument(
        "--theta", type=float, default=0.0, help="organizer threshold (default: 0)"
    )
    techniques.add_argument(
        "--cutout",
        type=int,
        nargs="?",
        const=DEFAULT_CUTOUT_SIZE,
        default=None,
        metavar="SIZE",
        help=f"cutout of a SIZE x SIZE square (default size: {DEFAULT_CUTOUT_SIZE})",
    )
    techniques.add_argument(
        "--mixup",
        type=float,
        nargs="?",
        const=DEFAULT_MIXUP_ALPHA,
        default=None,
        metavar="ALPHA",
        help=f"keras.layers.MixUp (default alpha: {DEFAULT_MIXUP_ALPHA})",
    )
    techniques.add_argument(
        "--label-smoothing", type=float, default=0.0, metavar="EPS", help="label smoothing"
    )
    techniques.add_argument(
        "--one-cycle", action="store_true", help="one-cycle LR schedule peaking at --lr"
    )
    techniques.add_argument(
        "--swa",
        type=float,
        nargs="?",
        const=DEFAULT_SWA_START,
        default=None,
        metavar="START",
        help=f"stochastic weight averaging from START of the epochs (default {DEFAULT_SWA_START})",
    )
    techniques.add_argument(
        "--sam",
        type=float,
        nargs="?",
        const=DEFAULT_SAM_RHO,
        default=None,
        metavar="RHO",
        help=f"sharpness-aware minimisation (default rho: {DEFAULT_SAM_RHO})",
    )
    techniques.add_argument(
        "--layer-metrics", action="store_true", help="per-layer metrics in logs/layers"
    )
    parser.add_argument("--layer-dropping", action="store_true", help="Learn&Drop layer dropping")
    parser.add_argument("--layer-freezing", action="store_true", help="Learn&Drop layer freezing")
    parser.add_argument("--output-dir", default=None, help="default: runs/<timestamp>")
    parser.add_argument(
        "--resume",
        default=None,
        metavar="RUN_DIR",
        help="continue an interrupted or killed run with its own options (only --verbose, "
        "--data-dir may be given too)",
    )
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
        report = train(
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
            layer_dropping=args.layer_dropping,
            layer_freezing=args.layer_freezing,
            blurpool=args.blurpool,
            squeeze_excite=args.squeeze_excite,
            se_min_channels=args.se_min_channels,
            se_latent_channels=args.se_latent_channels,
            gap_head=args.gap_head,
            kernel=args.kernel,
            kernel_groups=args.kernel_groups,
            kernel_overlap=args.kernel_overlap,
            organize=args.organize,
            theta=args.theta,
            cutout=args.cutout,
            mixup=args.mixup,
            label_smoothing=args.label_smoothing,
            one_cycle=args.one_cycle,
            swa=args.swa,
            sam=args.sam,
            layer_metrics=args.layer_metrics,
            output_dir=args.output_dir,
            data_dir=args.data_dir,
            source=args.data_source,
            limit=args.limit,
            seed=args.seed,
            verbose=args.verbose,
            resume=args.resume,
        )
    except FileNotFoundError as error:
        raise ValueError(str(error)) from None
    if args.verbose == 0 and isinstance(report, dict):
        print(summary_line(report))
    return 0


def summary_line(report):
    """One line for `--verbose 0`: where the run was written and its test accuracy."""
    accuracy = report.get("test_accuracy")
    accuracy = "n/a" if accuracy is None else f"{accuracy:.4f}"
    return f"kerascnn train: wrote {report.get('output_dir')} (test accuracy {accuracy})"


def main(argv=None):
    """`python -m kerascnn.training.run [options]`: the same as `kerascnn train`."""
    import sys

    from kerascnn import cli

    return cli.main(["train"] + list(sys.argv[1:] if argv is None else argv))


if __name__ == "__main__":
    raise SystemExit(main())
