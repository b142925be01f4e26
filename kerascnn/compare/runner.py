"""`kerascnn.compare`: train a grid of architecture variants with one recipe and compare them.

The templates paper's workflow (Izquierdo-Cordova & Mayol-Cuevas, Tables 1-2,
Figures 3-5) and the 3DRF paper's organized layouts and decomposed kernels
(Wang et al., Tables 3 and 6): redistribute a network's filters with a
template (or reorganize its stages, or decompose its kernels), scale it with
a width multiplier, train every variant with the same recipe and compare
accuracy against parameters, memory and inference time.

`compare(...)`:

1. expands and validates the grid (`kerascnn.compare.variants`): a bad
   template, layout, kernel or width, or a variant that cannot be built at
   the dataset's input size, is one ValueError before anything trains;
2. trains every variant with `kerascnn.training.run.train` (the `kerascnn
   train` machinery) into `output_dir/runs/<variant>/` (report.json,
   model.keras, logs); a variant whose run finished is skipped on a rerun, an
   interrupted one is resumed; a progress line per variant (k of n, elapsed,
   estimate of the time left);
3. measures every trained model (`kerascnn.compare.measure`: parameters,
   MACs, peak memory per batch in training and inference, inference latency
   at batch 1 and 64, interleaved) into `output_dir/measurements.json`
   (`remeasure=True` runs only this stage again);
4. writes `output_dir/compare.json` (one row per variant, the exact command,
   the summary) and the three Pareto plots (`kerascnn.observe.pareto`), and
   prints the summary line: the smallest variant within 0.5 point of the
   reference's accuracy, per resource.

The reference ("base") is the base template at the original layout with
standard kernels and the largest width of the grid (width 1.0 when the grid
has it: the paper's dashed lines).

Example:

```python
from kerascnn.compare import compare

result = compare("compact_mnist_1k5_dw", templates=("base", "uniform"), widths=(1.0, 0.5),
                 dataset="embedded", epochs=1, limit=256, output_dir="/tmp/cmp", verbose=0)
print(result["summary_line"])
```
"""

from __future__ import annotations

import json
import os
import sys
import time

from kerascnn import _checks
from kerascnn.compare import measure as measure_lib
from kerascnn.compare import variants as variants_lib
from kerascnn.training import report as report_lib

COMPARE_FILE = "compare.json"
MEASUREMENTS_FILE = "measurements.json"
RUNS_DIR = "runs"
#: Accuracy tolerance of "matches the base" (0.5 point, as a fraction).
TOLERANCE = 0.005
#: Resources of the summary: key -> (label, unit formatter).
RESOURCES = {
    "params": "params",
    "macs": "MACs",
    "memory_train_bytes": "train memory",
    "memory_inference_bytes": "inference memory",
    "latency_b1_ms": "latency b1",
    "latency_b64_ms": "latency b64",
}
#: `train` options a comparison sets per variant (not accepted in `train_options`).
VARIANT_OPTIONS = ("model", "template", "width_multiplier", "stages", "organize", "kernel")
_NOT_OPTIONS = (*VARIANT_OPTIONS, "output_dir", "resume", "callbacks")


def _format_seconds(seconds):
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m{seconds:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


class Progress:
    """The progress display across variants: `[k/n] name ... elapsed, ~left`.

    The estimate of the time left is the mean training time of the variants
    trained in this session times the number still to train.
    """

    def __init__(self, total, stream=None, enabled=True):
        self.total, self.stream, self.enabled = total, stream or sys.stdout, enabled
        self.start = time.perf_counter()
        self.trained_times, self.done = [], 0

    def line(self, k, name, status, remaining):
        elapsed = time.perf_counter() - self.start
        if self.trained_times:
            mean = sum(self.trained_times) / len(self.trained_times)
            left = f", ~{_format_seconds(mean * remaining)} left"
        else:
            left = ""
        if self.enabled:
            print(
                f"kerascnn compare: [{k}/{self.total}] {name}: {status} "
                f"(elapsed {_format_seconds(elapsed)}{left})",
                file=self.stream,
                flush=True,
            )


def _finished_report(run_dir):
    """The run's report when it finished, else None."""
    path = os.path.join(run_dir, report_lib.REPORT_FILE)
    if not os.path.exists(path):
        return None
    with open(path) as f:
        report = json.load(f)
    return None if report.get("interrupted") else report


def _check_same_run(report, kwargs, run_dir):
    """A finished run is reused only if it was trained with the same options."""
    recorded = report.get("args", {})
    for key, value in kwargs.items():
        if key in ("verbose", "data_dir", "plots") or key not in recorded:
            continue
        if report_lib.jsonable(value) != report_lib.jsonable(recorded[key]):
            raise ValueError(
                f"{run_dir} holds a finished run with {key}={recorded[key]!r}, not {value!r}; "
                f"choose another output_dir or remove that run. Received: {key}={value!r}"
            )


def _train_variant(kwargs, run_dir):
    """Trains (or resumes) one variant; returns `(report, seconds, status)`."""
    from kerascnn.training.run import RUN_CONFIG_FILE, train

    report = _finished_report(run_dir)
    if report is not None:
        _check_same_run(report, kwargs, run_dir)
        return report, 0.0, "finished earlier, skipped"
    start = time.perf_counter()
    if os.path.exists(os.path.join(run_dir, RUN_CONFIG_FILE)) and os.path.isdir(
        os.path.join(run_dir, "checkpoint")
    ):
        report = train(resume=run_dir, verbose=kwargs.get("verbose", 0), plots=kwargs["plots"])
        status = "resumed and trained"
    else:
        report = train(**kwargs, output_dir=run_dir)
        status = "trained"
    return report, time.perf_counter() - start, status


def _stability_epoch(report):
    """The epoch (1-based) stability stopping stopped at, or would have stopped at."""
    stability = report.get("stability") or {}
    return stability.get("stop_epoch") or stability.get("stable_epoch")


def _row(variant, report, run_dir):
    return {
        "name": variant.name,
        "curve": variant.curve,
        "model": variant.model,
        "template": variant.template,
        "width": variant.width,
        "layout": variant.layout_label,
        "stages": report.get("stages"),
        "kernel": variant.kernel,
        "test_accuracy": report.get("test_accuracy"),
        "test_loss": report.get("test_loss"),
        "params": report.get("params"),
        "macs": report.get("macs"),
        "train_time_s": report.get("train_time_s"),
        "planned_epochs": report.get("planned_epochs"),
        "trained_epochs": report.get("trained_epochs"),
        "stability_stopped": bool((report.get("stability") or {}).get("stopped")),
        "stability_epoch": _stability_epoch(report),
        "run_dir": run_dir,
    }


def train_variants(grid, output_dir, train_options, verbose=1):
    """Trains every variant of `grid` (skipping finished runs); returns the rows."""
    progress = Progress(len(grid), enabled=bool(verbose))
    rows = []
    pending = sum(
        _finished_report(os.path.join(output_dir, RUNS_DIR, v.name)) is None for v in grid
    )
    for k, variant in enumerate(grid, start=1):
        run_dir = os.path.join(output_dir, RUNS_DIR, variant.name)
        kwargs = {**train_options, **variant.train_kwargs()}
        progress.line(k, variant.name, "training" if pending else "checking", pending)
        report, seconds, status = _train_variant(kwargs, run_dir)
        if seconds:
            progress.trained_times.append(seconds)
            pending -= 1
        accuracy = report.get("test_accuracy")
        progress.line(
            k,
            variant.name,
            f"{status} in {_format_seconds(seconds)}, test accuracy {100 * accuracy:.2f}%"
            if accuracy is not None
            else status,
            pending,
        )
        rows.append(_row(variant, report, run_dir))
    return rows


def measure_variants(rows, *, memory_batch=64, repeats=7, calls=3, aa_control=False):
    """Loads every trained model and measures it (`kerascnn.compare.measure.measure_models`)."""
    import keras

    models = {}
    for row in rows:
        path = os.path.join(row["run_dir"], "model.keras")
        models[row["name"]] = keras.saving.load_model(path, compile=False)
    measured = measure_lib.measure_models(
        models, memory_batch=memory_batch, repeats=repeats, calls=calls, aa_control=aa_control
    )
    return {
        "memory_method": measure_lib.MEMORY_METHOD,
        "latency_method": measure_lib.LATENCY_METHOD,
        "device": measure_lib.memory_device(),
        "memory_batch": memory_batch,
        "repeats": repeats,
        "calls": calls,
        "rows": measured,
    }


def summarize(rows, reference_name, tolerance=TOLERANCE):
    """Per resource, the smallest variant within `tolerance` of the reference's accuracy.

    Returns:
        `{"reference": name, "reference_accuracy": float, "tolerance": float,
        "smallest": {resource: {"name", "value", "fraction_of_reference",
        "test_accuracy"}}}`.
    """
    by_name = {row["name"]: row for row in rows}
    ref = by_name.get(reference_name)
    if ref is None or ref.get("test_accuracy") is None:
        return {"reference": reference_name, "reference_accuracy": None, "smallest": {}}
    target = ref["test_accuracy"] - tolerance
    smallest = {}
    for key in RESOURCES:
        matching = [
            r for r in rows if r.get(key) is not None and (r.get("test_accuracy") or 0) >= target
        ]
        if not matching or ref.get(key) is None:
            continue
        best = min(matching, key=lambda r: (r[key], -r["test_accuracy"]))
        smallest[key] = {
            "name": best["name"],
            "value": best[key],
            "fraction_of_reference": best[key] / ref[key] if ref[key] else None,
            "test_accuracy": best["test_accuracy"],
        }
    return {
        "reference": reference_name,
        "reference_accuracy": ref["test_accuracy"],
        "tolerance": tolerance,
        "smallest": smallest,
    }


def summary_line(summary):
    """One line: the smallest variant within 0.5 point of the base, per resource."""
    if summary.get("reference_accuracy") is None:
        return "kerascnn compare: no reference (base template, original layout) accuracy"
    parts = []
    for key, entry in summary["smallest"].items():
        fraction = entry["fraction_of_reference"]
        share = f", {100 * fraction:.0f}% of base" if fraction is not None else ""
        parts.append(f"{RESOURCES[key]}: {entry['name']}{share}")
    return (
        f"kerascnn compare: within {100 * summary['tolerance']:.1f} point of "
        f"{summary['reference']} ({100 * summary['reference_accuracy']:.2f}%), smallest by "
        + "; ".join(parts)
    )


def _merge(rows, measured):
    for row in rows:
        entries = (measured or {}).get("rows", {}).get(row["name"], {})
        for key, value in entries.items():
            if key in ("params", "macs") and row.get(key) is not None:
                continue  # the training report's figures (identical models)
            row[key] = value
    return rows


def _load_measurements(output_dir, names):
    path = os.path.join(output_dir, MEASUREMENTS_FILE)
    if not os.path.exists(path):
        return None
    with open(path) as f:
        measured = json.load(f)
    return measured if set(names) <= set(measured.get("rows", {})) else None


def _check_options(train_options):
    bad = sorted(set(train_options) & set(_NOT_OPTIONS))
    if bad:
        raise ValueError(
            f"compare sets {bad[0]!r} per variant or itself; pass the grid's templates, widths, "
            f"layouts and kernels instead. Received: {bad[0]}={train_options[bad[0]]!r}"
        )


def compare(
    model,
    templates=("base", "reverse", "uniform", "quadratic", "negative_quadratic"),
    widths=(1.0,),
    layouts=("original",),
    kernels=(None,),
    *,
    output_dir,
    dataset="embedded",
    measure=True,
    remeasure=False,
    memory_batch=64,
    latency_repeats=7,
    latency_calls=3,
    aa_control=False,
    plots=True,
    verbose=1,
    command=None,
    variants=None,
    **train_options,
):
    """Trains every variant of a grid with one recipe, measures and compares them.

    Args:
        model: a zoo model name.
        templates: filter templates. Defaults to the paper's five.
        widths: width multipliers (> 0). Defaults to `(1.0,)`.
        layouts: `"original"`, `"organized"`, `"paper"` or units per stage.
            Defaults to `("original",)`.
        kernels: None (standard convolutions), `"dw_pw"`, `"dw_gpw"`,
            `"dw_rpw"`. Defaults to `(None,)`.
        output_dir: the comparison's folder (required; a rerun reuses it).
        dataset: a `kerascnn.data` dataset. Defaults to `"embedded"`.
        measure: measure memory and latency (else only the training
            figures). Defaults to True.
        remeasure: only measure again (every variant must have finished
            training). Defaults to False.
        memory_batch: batch of the memory measurement. Defaults to 64.
        latency_repeats: interleaved rounds of the latency. Defaults to 7.
        latency_calls: calls per model and round. Defaults to 3.
        aa_control: time the reference twice (A/A control row). Defaults to False.
        plots: draw the three Pareto plots. Defaults to True.
        verbose: 1: a progress line per variant and the summary; 0: silent.
            Defaults to 1.
        command: the command line recorded in compare.json. Defaults to
            this Python call.
        variants: an explicit list of `kerascnn.compare.Variant` (of `model`)
            added to the grid (e.g. one base variant at a larger width as
            the reference). Defaults to None.
        **train_options: the recipe, any other `kerascnn.training.run.train`
            keyword argument (`epochs`, `limit`, `stability_stopping`,
            `batch_size`, `optimizer`, `seed`, ...). The per-run plots are
            off unless `train_plots=True`.

    Returns:
        The compare.json dict: `rows` (one per variant), `summary`,
        `summary_line`, `files` and the settings.
    """
    train_plots = bool(train_options.pop("train_plots", False))
    _check_options(train_options)
    grid = variants_lib.expand(model, templates, widths, layouts, kernels) if templates else []
    grid = list(dict.fromkeys(list(variants or []) + grid))
    if not grid or any(v.model != model for v in grid):
        raise ValueError(
            f"compare needs variants of model {model!r} (templates and widths, or variants). "
            f"Received: {len(grid)} variants of {sorted({v.model for v in grid})}"
        )
    options = dict(train_options, dataset=dataset, plots=train_plots)
    options.setdefault("verbose", 0)
    variants_lib.validate(grid, dataset, train_options=options)
    for value, name in ((memory_batch, "memory_batch"), (latency_repeats, "latency_repeats")):
        _checks.check_positive_int(value, name)
    output_dir = os.path.abspath(os.path.expanduser(os.fspath(output_dir)))
    os.makedirs(output_dir, exist_ok=True)
    if remeasure:
        missing = [
            v.name
            for v in grid
            if _finished_report(os.path.join(output_dir, RUNS_DIR, v.name)) is None
        ]
        if missing:
            raise ValueError(
                f"remeasure needs every variant trained; not finished: {', '.join(missing)}. "
                f"Received: remeasure=True, output_dir={output_dir!r}"
            )
    rows = train_variants(grid, output_dir, options, verbose=verbose)
    measured = None
    if measure:
        names = [row["name"] for row in rows]
        measured = None if remeasure else _load_measurements(output_dir, names)
        if measured is None:
            if verbose:
                print(f"kerascnn compare: measuring {len(rows)} models", flush=True)
            measured = measure_variants(
                rows,
                memory_batch=memory_batch,
                repeats=latency_repeats,
                calls=latency_calls,
                aa_control=aa_control,
            )
            report_lib.write_json(os.path.join(output_dir, MEASUREMENTS_FILE), measured)
    return _finish(
        grid,
        rows,
        measured,
        output_dir,
        locals_for_record(
            model, templates, widths, layouts, kernels, dataset, train_options, command
        ),
        plots,
        verbose,
    )


def locals_for_record(model, templates, widths, layouts, kernels, dataset, options, command):
    """The settings recorded in compare.json (and the command)."""
    if command is None:
        call = ", ".join(
            [repr(model)]
            + [
                f"{k}={v!r}"
                for k, v in dict(
                    templates=list(templates) if not isinstance(templates, str) else templates,
                    widths=widths,
                    layouts=layouts,
                    kernels=kernels,
                    dataset=dataset,
                    **options,
                ).items()
            ]
        )
        command = f"kerascnn.compare({call})"
    return {
        "command": command,
        "model": model,
        "dataset": dataset,
        "train_options": options,
    }


def _finish(grid, rows, measured, output_dir, record, plots, verbose):
    reference = variants_lib.reference(grid)
    rows = _merge(rows, measured)
    summary = summarize(rows, reference.name if reference else None)
    payload = dict(record)
    payload.update(
        reference=summary["reference"],
        reference_is_full_width=bool(reference and reference.width == 1.0),
        memory_method=(measured or {}).get("memory_method"),
        latency_method=(measured or {}).get("latency_method"),
        measurement_device=(measured or {}).get("device"),
        memory_batch=(measured or {}).get("memory_batch"),
        aa_control={k: v for k, v in (measured or {}).get("rows", {}).items() if "(A/A)" in k},
        rows=rows,
        summary=summary,
        summary_line=summary_line(summary),
        files={"compare": os.path.join(output_dir, COMPARE_FILE)},
    )
    if plots:
        from kerascnn.observe import pareto

        payload["files"].update(pareto.plot_all(payload, output_dir))
    report_lib.write_json(payload["files"]["compare"], payload)
    if verbose:
        print(payload["summary_line"], flush=True)
    return payload
