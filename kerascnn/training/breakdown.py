"""Where a run's training compute went: its savings against the plain model, by source.

A recipe run (`train(recipe="efficient")`) saves compute three ways: a
cheaper (or dearer) architecture, Learn&Drop training only the head after
a drop, and stability stopping ending the run before the planned epochs.
`savings_breakdown` splits the difference between the plain model trained
for the planned epochs and what the run trained into these three parts,
in MACs (training = 3x the forward MACs per example seen, the convention of
`kerascnn.training.report.epoch_records`), so that they add up exactly:

    plain model x planned epochs
      - architecture      (plain forward MACs - the run's) x 3 x examples x planned epochs
      - Learn&Drop        per epoch run: the run's full model - what it trained
      - stability stop    the planned epochs not run, at the run's full model
      = MACs trained      (`report["training_macs_estimate"]`)

Seconds are estimated the same way from the measured epoch times (an epoch
of the full model = the median of the epochs before the first drop); the
architecture's time saving needs a run of the plain model (`kerascnn
plot-savings` or `kerascnn compare` measure it), so it is None here.

The "plain model" is the same zoo model at the same width, with the base
template and none of the architecture options (`plain_config`).

Example:

```python
from kerascnn.training import breakdown

records = [{"epoch": 1, "macs_trained": 300, "elapsed_s": 2.0, "dropped_convs": 0},
           {"epoch": 2, "macs_trained": 120, "elapsed_s": 3.0, "dropped_convs": 2}]
parts = breakdown.savings_breakdown(records, planned_epochs=4, examples=10,
                                    macs=10, plain_macs=20)
parts["macs"]["architecture"], parts["macs"]["learn_drop"], parts["macs"]["stability_stopping"]
# -> (1200, 180, 600)
```
"""

from __future__ import annotations

import dataclasses
import statistics

#: The architecture options a plain model leaves at their defaults.
ARCHITECTURE_OPTIONS = (
    "organize",
    "theta",
    "template",
    "blurpool",
    "squeeze_excite",
    "se_min_channels",
    "se_latent_channels",
    "gap_head",
    "kernel",
    "stages",
)
#: The sources of a saving, in the order of the breakdown.
SOURCES = ("architecture", "learn_drop", "stability_stopping")


def plain_config(config):
    """`config` with every architecture option at its default (and no recipe).

    Args:
        config: a `kerascnn.training.config.TrainConfig`.

    Returns:
        A `TrainConfig`: the same model, width, data and schedule, the plain
        architecture.
    """
    defaults = config.defaults()
    changes = {name: defaults[name] for name in ARCHITECTURE_OPTIONS}
    return dataclasses.replace(config, recipe=None, **changes)


def plain_forward_macs(config, input_shape, classes):
    """Forward MACs per example of `config`'s plain model (`plain_config`), or None."""
    from kerascnn.builder.model import build_model
    from kerascnn.training.report import model_macs
    from kerascnn.training.run import model_spec

    spec, _, _ = model_spec(plain_config(config).validate(), input_shape)
    return model_macs(build_model(spec, input_shape=input_shape, classes=classes))[0]


def savings_breakdown(records, planned_epochs, examples, macs, plain_macs):
    """Splits the compute saved against the plain model into its sources.

    Args:
        records: the report's `per_epoch` records (`macs_trained`,
            `elapsed_s`, `dropped_convs` per epoch run).
        planned_epochs: the planned epochs.
        examples: training examples per epoch.
        macs: the run's forward MACs per example (the full model).
        plain_macs: the plain model's forward MACs per example.

    Returns:
        A dict: `"macs"` (`plain_planned`, `trained`, one entry per source of
        `SOURCES`, `saved`), `"fraction"` (each source and `saved` over
        `plain_planned`), `"time_s"` (`trained`, `full_epoch` and the
        estimated seconds saved by `learn_drop` and `stability_stopping`;
        `architecture` None) and `"epochs"` (`planned`, `run`).
    """
    full_epoch = 3 * macs * examples
    run = len(records)
    trained = sum(int(r["macs_trained"]) for r in records)
    parts = {
        "architecture": 3 * (plain_macs - macs) * examples * planned_epochs,
        "learn_drop": sum(full_epoch - int(r["macs_trained"]) for r in records),
        "stability_stopping": (planned_epochs - run) * full_epoch,
    }
    plain_planned = 3 * plain_macs * examples * planned_epochs
    saved = plain_planned - trained
    return {
        "macs": {"plain_planned": plain_planned, "trained": trained, **parts, "saved": saved},
        "fraction": {k: v / plain_planned for k, v in {**parts, "saved": saved}.items()},
        "time_s": _time_breakdown(records, planned_epochs),
        "epochs": {"planned": planned_epochs, "run": run},
    }


def _time_breakdown(records, planned_epochs):
    """Measured training seconds and the estimated seconds saved by each source."""
    times, previous = [], 0.0
    for record in records:
        elapsed = record.get("elapsed_s")
        times.append(None if elapsed is None else elapsed - previous)
        previous = elapsed if elapsed is not None else previous
    full = [t for t, r in zip(times, records) if t is not None and not r.get("dropped_convs")]
    if None in times or not full:
        return {"trained": None, "full_epoch": None, "architecture": None}
    # The first epoch carries the tracing: the median of the full-model epochs after it.
    full_epoch = statistics.median(full[1:] or full)
    dropped = [t for t, r in zip(times, records) if r.get("dropped_convs")]
    return {
        "trained": sum(times),
        "full_epoch": full_epoch,
        "architecture": None,
        "learn_drop": sum(full_epoch - t for t in dropped),
        "stability_stopping": (planned_epochs - len(records)) * full_epoch,
    }


def format_breakdown(breakdown):
    """The breakdown as text lines (one per source), for the printed report."""
    macs, fraction, time_s = breakdown["macs"], breakdown["fraction"], breakdown["time_s"]
    lines = [
        f"savings:          {100 * fraction['saved']:.1f}% of the plain model's "
        f"{macs['plain_planned']:.3g} MACs at {breakdown['epochs']['planned']} epochs "
        f"(trained {macs['trained']:.3g})"
    ]
    for source in SOURCES:
        seconds = time_s.get(source)
        seconds = "" if seconds is None else f", ~{seconds:.1f} s"
        lines.append(
            f"  {source.replace('_', ' ') + ':':<21}{100 * fraction[source]:+.1f}% "
            f"({macs[source]:.3g} MACs{seconds})"
        )
    return lines
