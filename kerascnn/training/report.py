"""The report of a `kerascnn train` run: its assembly, its text form, its files.

`build_report` assembles `report.json`'s dict from a finished run (its keys
are part of kerascnn's public interface), `format_report` prints its main
figures, `write_json` writes it atomically and `write_plots` draws the
training curves, the filters per layer (`kerascnn.observe.plots`) and the
stability μ curves (the stability paper's Figure 5).

`report["per_epoch"]` (`epoch_records`, kerascnn >= 0.1.0 with issue #17;
read by `kerascnn plot-savings`) has one record per trained epoch:
`epoch` (1-based), `elapsed_s` (training seconds at the epoch's end: the
running sum of `epoch_times_s`, validation included), `forward_macs` and
`trained_macs` (forward MACs per example of what ran in training and of the
part whose weights were trained: they differ after a Learn&Drop drop or
freeze), `dropped_convs` (convolutions dropped or frozen during the epoch,
0 without Learn&Drop), `macs_trained` (the epoch's training compute:
examples x (forward + 2 x trained), i.e. 3x the forward MACs per example
seen without a drop; x2 with SAM until a Learn&Drop head takes over),
`macs_trained_total` (their running sum; the last one is
`training_macs_estimate`), `train_accuracy` and `test_accuracy` (the
epoch's accuracy on the training batches and on the test split, from
`history`; None when not measured; with `validation_split` the held-out
split's accuracy is the record's `validation_accuracy` and `test_accuracy`
is None).

A run with a recipe (`train(recipe="efficient")`) also has `report["recipe"]`
(`name`, the options it `applied`, those the user `overridden`) and
`report["savings"]` (`kerascnn.training.breakdown.savings_breakdown`: the
MACs and estimated seconds saved against the plain model at the planned
epochs, by source).

Example:

```python
from kerascnn.training import report

report.write_json("/tmp/r.json", {"test_accuracy": 0.9})
print(report.summary_line({"output_dir": "/tmp/run", "test_accuracy": 0.9}))
```
"""

from __future__ import annotations

import json
import math
import os
import platform
import re

import numpy as np

from kerascnn.training.recipe import DEFAULT_LEARNING_RATES, ONE_HOT_LOSS, SPARSE_LOSS

REPORT_FILE = "report.json"


def jsonable(value):
    """`value` with JSON types only (NumPy scalars converted, NaN/inf as None)."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating, float)):
        value = float(value)
        return value if math.isfinite(value) else None
    if isinstance(value, (str, int, bool)) or value is None:
        return value
    return str(value)


def write_json(path, payload):
    """Writes `jsonable(payload)` to `path` atomically (a temporary file renamed)."""
    tmp = f"{path}.{os.getpid()}.tmp"
    try:
        with open(tmp, "w") as f:
            json.dump(jsonable(payload), f, indent=2)
            f.write("\n")
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def snake(name):
    """`"LayerDropping"` -> `"layer_dropping"`."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def count_layers(model, class_names):
    """How many (nested) layers of `model` are instances of the named classes."""
    return sum(
        type(layer).__name__ in class_names
        for layer in model._flatten_layers(include_self=False, recursive=True)
    )


def model_macs(model):
    """Forward MACs (batch 1) from `kerascnn.observe.summary`, or `(None, note)`."""
    from kerascnn.observe import summary

    try:
        return int(summary.summarize(model).macs), None
    except Exception as error:  # the report must not fail on a counting problem
        return None, f"MACs not computed: {error}"


def techniques(config, run, net, notes):
    """The report's `"techniques"` dict; appends a note for a technique that changed nothing."""
    found = {
        "blurpool": None,
        "squeeze_excite": None,
        "gap_head": bool(config.gap_head),
        "kernel": None
        if config.kernel is None
        else {
            "type": config.kernel,
            "groups": config.kernel_groups,
            "overlap": config.kernel_overlap,
        },
        "organize": run.organized,
        "cutout": None if config.cutout is None else {"size": config.cutout},
        "mixup": None if config.mixup is None else {"alpha": config.mixup},
        "label_smoothing": config.label_smoothing,
        "one_cycle": None
        if config.lr_schedule != "one_cycle"
        else {"total_steps": config.epochs * run.steps_per_epoch, "pct_start": 0.3},
        "swa": None,
        "sam": None if config.sam is None else {"rho": config.sam},
        "layer_metrics": None
        if not config.layer_metrics
        else {"log_dir": os.path.join(run.log_dir, "layers")},
        "layer_dropping": bool(config.layer_dropping),
        "layer_freezing": bool(config.layer_freezing),
    }
    if config.blurpool:
        count = count_layers(net, ("BlurPool2D", "BlurMaxPool2D", "BlurConv2D"))
        found["blurpool"] = {"layers": count}
        if not count:
            notes.append("blurpool added no layer (no strided conv / max-pool qualifies)")
    if config.squeeze_excite:
        count = count_layers(net, ("SqueezeExcite",))
        found["squeeze_excite"] = {
            "blocks": count,
            "min_channels": config.se_min_channels,
            "latent_channels": config.se_latent_channels,
        }
        if not count:
            notes.append(
                "squeeze_excite added no block (no convolution reaches se_min_channels; "
                "lower it with --se-min-channels)"
            )
    if run.swa_callback is not None:
        found["swa"] = {"start": config.swa, "epochs_averaged": run.swa_callback.num_averaged}
    return found


def _setup(config, run):
    """The report's entries describing the run's setup."""
    optimizer = config.optimizer
    return {
        "model": config.model,
        "dataset": config.dataset,
        "data_source": run.source.describe(),
        "template": config.template,
        "width_multiplier": config.width_multiplier,
        "stages": list(run.stages) if run.stages is not None else None,
        "optimizer": optimizer if isinstance(optimizer, str) else type(optimizer).__name__,
        "learning_rate": config.learning_rate
        if config.learning_rate is not None
        else DEFAULT_LEARNING_RATES.get(optimizer),
        "batch_size": config.batch_size,
        "augment": bool(config.augment),
        "mixed_precision": config.mixed_precision,
        "strategy": _strategy_name(run.strategy),
        "replicas": run.replicas,
        "num_replicas": run.replicas,
        **_worker_fields(config, run),
        "lr_schedule": config.lr_schedule,
        "training_loss": ONE_HOT_LOSS if config.one_hot else SPARSE_LOSS,
    }


def _strategy_name(strategy):
    """The strategy's public class name (None without one)."""
    if strategy is None:
        return None
    name = type(strategy).__name__
    # tf.distribute.MultiWorkerMirroredStrategy is CollectiveAllReduceStrategy's public name.
    return "MultiWorkerMirroredStrategy" if name == "CollectiveAllReduceStrategy" else name


def _worker_fields(config, run):
    """The report's multi-worker entries (one worker, no sharding without a cluster)."""
    cluster = getattr(run, "workers", None)
    if cluster is None:
        return {"num_workers": 1, "worker_index": 0, "is_chief": True, "input_sharding": None}
    from kerascnn.training.workers import DEFAULT_COLLECTIVE_TIMEOUT

    timeout = config.collective_timeout
    return {
        "num_workers": cluster["num_workers"],
        "worker_index": cluster["worker_index"],
        "is_chief": cluster["is_chief"],
        "input_sharding": run.input_sharding,
        "global_batch_size": config.batch_size,
        "per_worker_batch_size": config.batch_size / cluster["num_workers"],
        "collective_timeout_s": DEFAULT_COLLECTIVE_TIMEOUT if timeout is None else timeout,
        "run_dir": run.run_dir,
    }


def build_report(config, run, fit, recorded_args):
    """Assembles the report dict of a finished run (without `files` and `wall_time_s`).

    Args:
        config: the validated `TrainConfig`.
        run: the run's state (`kerascnn.training.run._Run`).
        fit: the fit's outcome (`kerascnn.training.run._Fit`).
        recorded_args: the arguments as recorded in `run_config.json`.
    """
    import keras

    net, history, epochs = fit.net, fit.history, config.epochs
    trained_epochs = len(history.epoch)
    epoch_times = list(fit.timer.times)
    mean_epoch = float(np.mean(epoch_times)) if epoch_times else 0.0
    macs, macs_note = model_macs(net)
    notes = ([macs_note] if macs_note else []) + list(fit.notes)
    found = techniques(config, run, net, notes)
    report = dict(_setup(config, run))
    report.update(
        techniques=found,
        techniques_enabled=[k for k, v in found.items() if v],
        seed=config.seed,
        train_examples=run.train_examples,
        planned_epochs=epochs,
        trained_epochs=trained_epochs,
        stopped_epoch=None,
        epoch_times_s=epoch_times,
        train_time_s=fit.train_time,
        time_saved_estimate_s=(epochs - trained_epochs) * mean_epoch,
        test_accuracy=float(fit.evaluation["accuracy"]),
        test_loss=float(fit.evaluation["loss"]),
        validation=_validation_entry(run),
        validation_accuracy=_maybe_float(fit.evaluation.get("validation_accuracy")),
        validation_loss=_maybe_float(fit.evaluation.get("validation_loss")),
        params=int(net.count_params()),
        trainable_params=int(sum(int(np.prod(w.shape)) for w in net.trainable_weights)),
        macs=macs,
        history={k: [float(v) for v in vals] for k, vals in history.history.items()},
        output_dir=run.output_dir,
        files={},
        notes=notes,
        versions={
            "python": platform.python_version(),
            "keras": keras.__version__,
            "tensorflow": __import__("tensorflow").__version__,
        },
        args=recorded_args,
        interrupted=False,
        resumed_from_epoch=run.resume_state["epoch"] if run.resume_state else None,
    )
    _callback_fields(report, run, fit.extra_callbacks)
    report["per_epoch"] = epoch_records(
        report["history"],
        epoch_times,
        run.train_examples,
        macs,
        head_macs=_learn_drop_head_macs(run, net),
        sam=config.sam is not None,
        held_out=bool(run.validation_examples),
    )
    # Training compute estimate: forward + backward ~ 3x the forward MACs per example seen
    # (only the part still trained after a Learn&Drop drop; see `epoch_records`).
    last = report["per_epoch"][-1] if report["per_epoch"] else {}
    report["training_macs_estimate"] = last.get("macs_trained_total") if macs else None
    if config.recipe is not None:
        _recipe_fields(report, config, run, recorded_args)
    return report


def _maybe_float(value):
    return None if value is None else float(value)


def _validation_entry(run):
    """What `fit` validated on: the test split or the held-out part of the training split."""
    if not run.validation_examples:
        return {"split": "test"}
    return {"split": "held_out", "examples": run.validation_examples}


def _recipe_fields(report, config, run, recorded_args):
    """`report["recipe"]` (what the recipe set) and `report["savings"]` (the breakdown)."""
    from kerascnn.training import breakdown, presets
    from kerascnn.training.config import TrainConfig

    applied, overridden = presets.recipe_options(
        config.recipe, dict(recorded_args), TrainConfig.defaults()
    )
    report["recipe"] = {"name": config.recipe, "applied": applied, "overridden": overridden}
    macs = report.get("macs")
    try:
        plain = breakdown.plain_forward_macs(
            config, run.ds_info["shape"], run.ds_info["num_classes"]
        )
    except Exception as error:  # the report must not fail on a counting problem
        plain, report["notes"] = None, report["notes"] + [f"savings not computed: {error}"]
    if not (macs and plain):
        report["savings"] = None
        return
    report["savings"] = dict(
        breakdown.savings_breakdown(
            report["per_epoch"], config.epochs, run.train_examples, macs, plain
        ),
        plain_model={"model": config.model, "forward_macs": plain},
    )


#: History keys of Learn&Drop: the convolutions not trained during an epoch.
_UNTRAINED_CONVS_KEYS = ("learn_drop/dropped_convs", "learn_drop/frozen_convs")


def _history_value(history, key, index):
    values = history.get(key) or []
    value = values[index] if index < len(values) else None
    return None if value is None or not math.isfinite(value) else float(value)


def epoch_records(history, epoch_times, examples, macs, head_macs=None, sam=False, held_out=False):
    """The report's `per_epoch` records: time, MACs trained and accuracy per epoch.

    The record keys are described in the module docstring.

    Args:
        history: the run's history, `{key: [value per epoch]}` (`loss` gives the epochs).
        epoch_times: seconds of every epoch (`epoch_times_s`).
        examples: training examples per epoch.
        macs: the full model's forward MACs per example, or None (MACs unknown).
        head_macs: a function `convs -> forward MACs per example` of the part still
            trained once `convs` convolutions are dropped or frozen (Learn&Drop).
            Defaults to None (no Learn&Drop).
        sam: SAM's step (two forward and backward passes) trained the model.
            Defaults to False.
        held_out: `fit` validated on a split held out of the training data
            (`validation_split`): its accuracy goes to `validation_accuracy`
            and `test_accuracy` is None. Defaults to False.

    Example:

    >>> history = {"loss": [2.0, 1.5], "accuracy": [0.3, 0.5], "val_accuracy": [0.4, 0.6]}
    >>> [r["macs_trained_total"] for r in epoch_records(history, [1.0, 0.5], 100, 10)]
    [3000, 6000]
    """
    records, elapsed, total = [], 0.0, 0
    for i in range(len(history.get("loss", epoch_times))):
        time_s = epoch_times[i] if i < len(epoch_times) else None
        elapsed = None if time_s is None or elapsed is None else elapsed + float(time_s)
        convs = next(
            (_history_value(history, k, i) for k in _UNTRAINED_CONVS_KEYS if k in history), None
        )
        convs = int(convs or 0)
        record = {"epoch": i + 1, "elapsed_s": elapsed, "dropped_convs": convs}
        if macs:
            forward = _history_value(history, "learn_drop/train_macs", i) or macs
            trained = macs
            if convs:  # a Learn&Drop head trains: its MACs (else what ran forward)
                head = head_macs(convs) if head_macs is not None else None
                trained = forward if head is None else head
            passes = 2 if sam and not convs else 1
            epoch_macs = int(examples * passes * (forward + 2 * trained))
            total += epoch_macs
            record.update(forward_macs=int(forward), trained_macs=int(trained))
            record.update(macs_trained=epoch_macs, macs_trained_total=total)
        record["train_accuracy"] = _history_value(history, "accuracy", i)
        validated = _history_value(history, "val_accuracy", i)
        record["test_accuracy"] = None if held_out else validated
        if held_out:
            record["validation_accuracy"] = validated
        records.append(record)
    return records


def _learn_drop_head_macs(run, net):
    """`convs -> forward MACs per example of the trained head` for a Learn&Drop run, or None."""
    callback = run.plugin_callbacks.get("layer_dropping") or run.plugin_callbacks.get(
        "layer_freezing"
    )
    plan = getattr(callback, "plan", None)
    if plan is None:
        return None
    from kerascnn.callbacks.learn_drop.dropping import layer_macs, sub_macs
    from kerascnn.callbacks.learn_drop.model_split import flatten_nested, sub_model

    table, heads = None, {}

    def head_macs(convs):
        nonlocal table
        cut = plan.cuts.get(convs)
        if cut is None:
            return None
        if convs not in heads:
            try:
                table = layer_macs(flatten_nested(net)) if table is None else table
                heads[convs] = sub_macs(table, sub_model(net, cut, None, name="report_head"))
            except Exception:  # the report must not fail on a counting problem
                heads[convs] = None
        return heads[convs]

    return head_macs


def _callback_fields(report, run, extra_callbacks):
    """`stopped_epoch` and the callbacks' own report fields."""
    from kerascnn.training.plugins import CALLBACK_FACTORIES

    plugin_callbacks = run.plugin_callbacks
    for cb in list(plugin_callbacks.values()) + run.technique_callbacks + extra_callbacks:
        stopped = getattr(cb, "stopped_epoch", None)
        if isinstance(stopped, (int, np.integer)) and stopped > 0:
            report["stopped_epoch"] = int(stopped) + 1
    for key, cb in plugin_callbacks.items():
        CALLBACK_FACTORIES[key][2](cb, report)
    for cb in extra_callbacks:
        fields = getattr(cb, "report_fields", None)
        if callable(fields):
            report[snake(type(cb).__name__)] = fields()


def plot_curves(history, path, title):
    """Loss and accuracy per epoch (train and test) into `path`."""
    from kerascnn.observe.plots import new_figure, style_axes

    figure = new_figure((9, 3.6))
    for i, metric in enumerate(("loss", "accuracy")):
        axes = figure.add_subplot(1, 2, i + 1)
        for key in (metric, f"val_{metric}"):
            if key in history:
                epochs = range(1, len(history[key]) + 1)
                label = "test" if key.startswith("val_") else "train"
                axes.plot(epochs, history[key], marker="o", markersize=3, label=label)
        style_axes(axes, "Epoch", metric)
    figure.suptitle(title)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    return path


def plot_stability(stability_history, path, title):
    """μ per monitored layer and epoch into `path`."""
    from kerascnn.observe.plots import new_figure, style_axes

    figure = new_figure((7, 4))
    axes = figure.add_subplot()
    names = list(stability_history[0]) if stability_history else []
    for name in names:
        values = [epoch[name] for epoch in stability_history]
        axes.plot(range(1, len(values) + 1), values, marker="o", markersize=3, label=name)
    style_axes(axes, "Epoch", "μ (mean std of the layer output)", title=title, legend="x-small")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    return path


def write_plots(report, ds_info, width_multiplier, stages):
    """Writes the run's PNG plots, adding them to `report["files"]` (a note on failure)."""
    from kerascnn.observe import plots

    out, model_name = report["output_dir"], report["model"]
    path = os.path.join(out, "training_curves.png")
    try:
        plot_curves(report["history"], path, f"{model_name} on {report['dataset']}")
        report["files"]["training_curves"] = path
    except Exception as error:  # plots are a convenience: never fail the run
        report["notes"].append(f"training curves not plotted: {error}")
    path = os.path.join(out, "filters_per_layer.png")
    try:
        plots.plot_filter_distributions(
            model_name,
            path,
            input_shape=ds_info["shape"],
            width_multiplier=width_multiplier,
            stages=stages,
        )
        report["files"]["filters_per_layer"] = path
    except Exception as error:
        report["notes"].append(f"filters plot skipped: {error}")
    if report.get("stability_history"):
        path = os.path.join(out, "stability.png")
        try:
            plot_stability(report["stability_history"], path, f"{model_name}: layer stability")
            report["files"]["stability"] = path
        except Exception as error:
            report["notes"].append(f"stability plot skipped: {error}")


def _stability_line(stability):
    if stability.get("monitor_only"):
        if stability["stable_epoch"]:
            return (
                f"stability:        stable at epoch {stability['stable_epoch']} (predicted; "
                f"stopping there would save {stability['predicted_epochs_saved']} epochs, "
                f"{100 * stability['predicted_fraction_saved']:.1f}%; --stability-stopping stops)"
            )
        return (
            f"stability:        not stable within {stability['epochs_run']} epochs "
            f"(r={stability['decimals']}, patience {stability['patience']})"
        )
    stop = stability["stop_epoch"] or "not reached"
    return (
        f"stability:        stable epoch {stop}, {stability['epochs_saved']} epochs saved "
        f"({100 * stability['fraction_saved']:.1f}%)"
    )


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
    if report.get("stability"):
        lines.append(_stability_line(report["stability"]))
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
    if report.get("validation_accuracy") is not None:
        lines.append(
            f"validation:       {report['validation_accuracy']:.4f} on "
            f"{report['validation']['examples']} held-out training examples"
        )
    if report.get("macs") is not None:
        lines.append(
            f"MACs:             {report['macs']:,} per image forward; "
            f"~{report['training_macs_estimate']:.3g} trained (3 x forward x examples seen, "
            "only the part still trained after a drop)"
        )
    if report.get("recipe"):
        lines.append(f"recipe:           {report['recipe']['name']}")
    if report.get("savings"):
        from kerascnn.training.breakdown import format_breakdown

        lines.extend(format_breakdown(report["savings"]))
    for note in report.get("notes", []):
        lines.append(f"note:             {note}")
    lines.append(
        f"written:          {', '.join(os.path.basename(p) for p in report['files'].values())}"
    )
    lines.append(f"                  in {report['output_dir']}")
    return "\n".join(lines)


def summary_line(report):
    """One line for `--verbose 0`: where the run was written and its test accuracy."""
    accuracy = report.get("test_accuracy")
    accuracy = "n/a" if accuracy is None else f"{accuracy:.4f}"
    return f"kerascnn train: wrote {report.get('output_dir')} (test accuracy {accuracy})"
