"""Interrupting and resuming a `kerascnn train` run.

A run records its arguments in `run_config.json` when it starts and, at
every epoch end, commits a checkpoint of the finished epoch to `checkpoint/`
(weights with the optimizer's variables, then `state.json` replaced
atomically: a process killed at any point leaves the previous checkpoint or
the new one, never a mix). Ctrl-C writes `model.keras` from that checkpoint
and a partial `report.json` (`"interrupted": true`) and prints
`resume with: kerascnn train --resume <output_dir>`; `train(resume=RUN_DIR)`
reads the arguments back (`resume_arguments`) and continues from the
checkpoint. The checkpoint is removed when the run finishes.

Example:

```python
from kerascnn.training import checkpoint

state = checkpoint.read_checkpoint("runs/20260101-120000")  # None: from epoch 0
```
"""

from __future__ import annotations

import json
import os
import time

from kerascnn.training.config import TrainConfig
from kerascnn.training.recipe import OPTIMIZERS
from kerascnn.training.report import REPORT_FILE, jsonable, write_json

#: Written when a run starts: the arguments `train(resume=...)` reads back.
RUN_CONFIG_FILE = "run_config.json"
#: Sub-directory of the run holding the checkpoint of the last finished epoch.
CHECKPOINT_DIR = "checkpoint"
CHECKPOINT_STATE = "state.json"
#: `kerascnn.callbacks.learn_drop.dropping.STATE_FILE`, kept with the checkpoint.
LEARN_DROP_STATE = "learn_drop_state.json"
#: `kerascnn.callbacks.swa` state files (`swa_state_<epoch>.npz`), kept with the checkpoint.
SWA_STATE_PREFIX = "swa_state_"
#: Arguments that may differ from the run's when resuming (nothing they change is trained).
RESUME_SAFE_ARGS = ("verbose", "data_dir", "plots", "collective_timeout")


class Resume:
    """A run being resumed: its directory and checkpoint state (None: from epoch 0)."""

    def __init__(self, run_dir, state):
        self.run_dir, self.state = run_dir, state


def read_json(path):
    """The JSON document at `path`, or a ValueError naming the file."""
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError) as error:
        raise ValueError(f"Cannot read {path!r}: {error}") from None


def recorded_args(args):
    """The arguments as recorded in run_config.json and the report."""
    recorded = dict(args)
    if not isinstance(recorded.get("optimizer"), str):
        recorded["optimizer"] = f"custom:{type(recorded['optimizer']).__name__}"
    if not isinstance(recorded.get("strategy"), (str, type(None))):
        recorded["strategy"] = "custom"
    return recorded


def read_checkpoint(run_dir):
    """The state of the last committed checkpoint of a run, or None."""
    path = os.path.join(run_dir, CHECKPOINT_DIR, CHECKPOINT_STATE)
    if not os.path.exists(path):
        return None
    state = read_json(path)
    state = state if isinstance(state, dict) else {}
    weights = os.path.join(run_dir, CHECKPOINT_DIR, str(state.get("weights")))
    if not isinstance(state.get("epoch"), int) or not os.path.exists(weights):
        raise ValueError(f"The checkpoint {path!r} is incomplete (no weights file {weights!r}).")
    return state


def _same_arg(a, b):
    off = (None, False)
    if any(a is v for v in off) and any(b is v for v in off):
        return True
    return jsonable(a) == jsonable(b)


def _stored_args(run_dir, received):
    """The recorded arguments of the resumable run in `run_dir`."""
    if not os.path.isdir(run_dir):
        raise ValueError(f"resume must be a run directory of `kerascnn train`. {received}")
    report_path = os.path.join(run_dir, REPORT_FILE)
    if os.path.exists(report_path):
        report = read_json(report_path)
        if not report.get("interrupted"):
            raise ValueError(
                f"The run in {run_dir} is finished ({report.get('trained_epochs')} of "
                f"{report.get('planned_epochs')} planned epochs, see its report.json): nothing "
                f"to resume; start a new run instead. {received}"
            )
    config_path = os.path.join(run_dir, RUN_CONFIG_FILE)
    if not os.path.exists(config_path):
        raise ValueError(f"{run_dir} has no {RUN_CONFIG_FILE}: not a resumable run. {received}")
    stored = read_json(config_path)
    stored = stored.get("args", {}) if isinstance(stored, dict) else {}
    if stored.get("optimizer") not in OPTIMIZERS or stored.get("strategy") == "custom":
        raise ValueError(
            f"The run in {run_dir} used an optimizer or strategy object, which cannot be "
            f"recorded: it cannot be resumed. {received}"
        )
    return stored


def resume_arguments(resume, given, callbacks):
    """The `train` keyword arguments continuing the run in directory `resume`.

    Args:
        resume: the run directory.
        given: the other arguments `train` received (`{name: value}`).
        callbacks: the extra callbacks `train` received.
    """
    run_dir = os.path.abspath(os.path.expanduser(os.fspath(resume)))
    received = f"Received: resume={os.fspath(resume)!r}"
    stored = _stored_args(run_dir, received)
    defaults = TrainConfig.defaults()
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
    state = read_checkpoint(run_dir)
    return dict(kwargs, output_dir=run_dir, callbacks=callbacks, resume=Resume(run_dir, state))


def remove_checkpoint(output_dir):
    """Removes the checkpoint files of a run (only those this module writes)."""
    directory = os.path.join(output_dir, CHECKPOINT_DIR)
    if not os.path.isdir(directory):
        return
    for name in os.listdir(directory):
        ours = name in (CHECKPOINT_STATE, LEARN_DROP_STATE) or name.endswith(
            (".weights.h5", ".tmp")
        )
        ours = ours or name.startswith(SWA_STATE_PREFIX)
        if ours:
            os.remove(os.path.join(directory, name))
    if not os.listdir(directory):
        os.rmdir(directory)


def start_run(output_dir, args, resume):
    """Returns the checkpoint state to resume from, or records a new run's arguments."""
    if isinstance(resume, Resume):
        return resume.state
    # A new run in a reused directory: nothing of a previous run there may be resumed.
    remove_checkpoint(output_dir)
    report_path = os.path.join(output_dir, REPORT_FILE)
    if os.path.exists(report_path):
        os.remove(report_path)
    write_json(os.path.join(output_dir, RUN_CONFIG_FILE), {"version": 1, "args": args})
    return None


def commit_checkpoint(model, directory, epoch, logs, times, previous):
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
    learn_drop = os.path.join(directory, LEARN_DROP_STATE)
    state = {
        "version": 1,
        "epoch": int(epoch),
        "weights": weights,
        "history": history,
        "epoch_times_s": list(times),
        "learn_drop_state": read_json(learn_drop) if os.path.exists(learn_drop) else None,
    }
    write_json(os.path.join(directory, CHECKPOINT_STATE), state)
    for name in os.listdir(directory):
        if name.startswith("epoch-") and name != weights:
            os.remove(os.path.join(directory, name))
    return state


def epoch_timer():
    """A Keras callback recording the wall time of every epoch in `.times`."""
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


def run_checkpoint(output_dir, state, timer):
    """A Keras callback committing a checkpoint at every epoch end (`.state`: the last one)."""
    import keras

    class RunCheckpoint(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.directory = os.path.join(output_dir, CHECKPOINT_DIR)
            self.state = state  # the last committed one
            self._previous_times = list((state or {}).get("epoch_times_s", []))

        def on_epoch_end(self, epoch, logs=None):
            times = self._previous_times + list(timer.times)
            self.state = commit_checkpoint(
                self.model, self.directory, epoch + 1, logs, times, self.state
            )

    return RunCheckpoint()


def attach_backup(callbacks, directory):
    """Lets callbacks with a `backup_dir` (LayerDropping) keep their state there."""
    for callback in callbacks:
        if hasattr(callback, "backup_dir") and callback.backup_dir is None:
            callback.backup_dir = directory


def restore_checkpoint(net, state, output_dir, epochs, verbose):
    """Loads the checkpoint's weights and optimizer variables into `net`."""
    directory = os.path.join(output_dir, CHECKPOINT_DIR)
    if not net.optimizer.built:
        net.optimizer.build(net.trainable_variables)
    net.load_weights(os.path.join(directory, state["weights"]))
    if state.get("learn_drop_state") is not None:
        write_json(os.path.join(directory, LEARN_DROP_STATE), state["learn_drop_state"])
    if verbose:
        print(f"kerascnn train: resuming {output_dir} after epoch {state['epoch']} of {epochs}")


def merge_resumed(history, timer, state):
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


def resume_notes(state, plugin_callbacks, swa_callback):
    """Report notes on what a resumed run did not carry over."""
    if not state:
        return []
    restarted = [k for k in ("stability_stopping", "layer_freezing") if k in plugin_callbacks]
    restarted += ["swa"] if swa_callback is not None and not swa_callback.backup_dir else []
    note = f"resumed after epoch {state['epoch']}"
    if restarted:
        note += f" ({', '.join(restarted)} restarted their state at that epoch)"
    return [note]


def resume_command(output_dir):
    """`kerascnn train --resume <output_dir>` (relative when below the working directory)."""
    import shlex

    path = os.path.relpath(output_dir)
    if path.startswith(os.pardir):
        path = output_dir
    return f"kerascnn train --resume {shlex.quote(path)}"


def _save_last_epoch(net, checkpoint, model_path):
    """Writes `model.keras` from the checkpoint's weights; returns notes."""
    try:
        net.load_weights(os.path.join(checkpoint.directory, checkpoint.state["weights"]))
        tmp = os.path.join(os.path.dirname(model_path), f"model.{os.getpid()}.tmp.keras")
        net.save(tmp)
        os.replace(tmp, model_path)
    except Exception as error:  # still write the report and the resume line
        return [f"model.keras not written: {error}"]
    return []


def on_interrupt(net, checkpoint, output_dir, partial, *, command=None, announce=True):
    """Writes model.keras (last finished epoch) and a partial report; prints how to resume.

    Args:
        net: the model, or None (no `model.keras`: a multi-worker run, whose
            saving needs the peers).
        checkpoint: the run's `run_checkpoint` callback.
        output_dir: where this process writes.
        partial: the report's entries known so far.
        command: the resume command. Defaults to None: `resume_command(output_dir)`.
        announce: print `resume with: <command>` to stderr. Defaults to True.
    """
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
            notes = _save_last_epoch(net, checkpoint, model_path)
        command = resume_command(output_dir) if command is None else command
        if net is None and state is not None:
            notes.append("model.keras not written (multi-worker: resume the run to finish it)")
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
        write_json(os.path.join(output_dir, REPORT_FILE), report)
        if announce:
            print(f"resume with: {command}", file=sys.stderr, flush=True)
    finally:
        if main:
            signal.signal(signal.SIGINT, handler)
