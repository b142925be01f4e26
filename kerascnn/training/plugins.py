"""Pluggable callbacks of `kerascnn train`: stability stopping and Learn&Drop.

`CALLBACK_FACTORIES` maps a name to `(flag_kwarg, factory(config) -> callback,
report(callback, report) -> None)`: `train(**{flag_kwarg: True})` adds the
callback and lets `report` add its fields to `report.json`.
`stability_stopping` (the stability paper's rule, also run in "monitor only"
mode when the flag is off), `layer_dropping` and `layer_freezing` (Learn&Drop)
are registered here.

Example:

```python
from kerascnn.training.plugins import CALLBACK_FACTORIES

flag, factory, reporter = CALLBACK_FACTORIES["layer_freezing"]
callback = factory({"verbose": 0, "epochs": 10, "seed": 0, "monitor_only": False})
```
"""

from __future__ import annotations


def _verbose(config):
    return 1 if config.get("verbose") else 0


def _stability_factory(config):
    from kerascnn.callbacks import StabilityStopping

    return StabilityStopping(
        verbose=_verbose(config), monitor_only=bool(config.get("monitor_only", False))
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
        "preset": callback.preset,
        "decimals": callback.decimals,
        "patience": callback.patience,
        "start_from_epoch": callback.start_from_epoch,
        "monitored_layers": list(callback.monitored_layers),
    }
    report["stability_history"] = [
        {k: float(v) for k, v in epoch.items()} for epoch in callback.history
    ]


def _layer_dropping_factory(config):
    from kerascnn.callbacks import LayerDropping

    return LayerDropping(verbose=_verbose(config), force_drops=config.get("force_drops"))


def _layer_freezing_factory(config):
    from kerascnn.callbacks import LayerFreezing

    return LayerFreezing(verbose=_verbose(config))


def _learn_drop_report(key):
    def report_fn(callback, report):
        report[key] = {
            "warmup_epochs": getattr(callback, "warmup_epochs", None),
            "dropped_convs": getattr(callback, "dropped", None),
            "cut": getattr(callback, "cut", None),
            # LayerDropping: one entry per cache build (set-up times, cache bytes, traces).
            "builds": [dict(t) for t in getattr(callback, "timings", [])],
        }

    return report_fn


#: Pluggable callbacks: name -> (keyword argument of `train`, factory, reporter).
#: `factory(config)` gets `{"verbose", "epochs", "seed", "monitor_only", "force_drops"}`
#: (`monitor_only`: the flag is off and the callback only watches, as the stability monitor
#: does; `force_drops`: `train(force_drop=...)` as LayerDropping's `{epoch: cut}`, or None).
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


def make_plugin_callbacks(config):
    """The pluggable callbacks of a validated `TrainConfig`, `{name: callback}`.

    Without `stability_stopping` the rule still watches the run (it never
    stops it) so that the report says when training became stable. Not with
    layer dropping: once layers are dropped only the head's step runs.
    """
    enabled = {
        name: getattr(config, flag, False) for name, (flag, _, _) in CALLBACK_FACTORIES.items()
    }
    monitor_stability = not config.stability_stopping and not config.layer_dropping
    base = {"verbose": config.verbose, "epochs": config.epochs, "seed": int(config.seed)}
    base["force_drops"] = getattr(config, "force_drop", None)
    callbacks = {}
    for name, on in enabled.items():
        if on or (name == "stability_stopping" and monitor_stability):
            factory = CALLBACK_FACTORIES[name][1]
            callbacks[name] = factory(dict(base, monitor_only=not on))
    return callbacks
