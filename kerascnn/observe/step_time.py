"""Wall-clock time of a training step, several models side by side.

`measure_train_step` follows the benchmark house rules: every model is
compiled and warmed up (tracing excluded), then the models are timed in
rotated, interleaved order over `repeats` rounds, so that load drift on a
shared machine hits every model alike; each round gives one time per model
and one paired ratio per model (its time over the first model's time in the
same round); the medians are reported. Pass the same model twice to get an
A/A control whose ratio shows the noise floor.

Example:

>>> import keras
>>> def tiny(width):
...     return keras.Sequential([
...         keras.Input((8, 8, 3)),
...         keras.layers.Conv2D(width, 3),
...         keras.layers.GlobalAveragePooling2D(),
...         keras.layers.Dense(10),
...     ])
>>> result = measure_train_step({"a": tiny(8), "b": tiny(4)}, batch_size=4, steps=1, repeats=2)
>>> sorted(result["median_ratio"])
['a', 'b']
"""

from __future__ import annotations

import statistics
import time

import numpy as np

from kerascnn import _checks


def _as_dict(models):
    if isinstance(models, dict):
        items = list(models.items())
    else:
        items = [(f"model{i}", m) for i, m in enumerate(models)]
    if not items:
        raise ValueError(f"models must hold at least one model. Received: models={models!r}")
    return items


def _batch(model, batch_size, seed):
    """A random batch `(x, y)` matching the model's input and output shapes."""
    rng = np.random.default_rng(seed)
    shape = tuple(model.inputs[0].shape[1:])
    if any(d is None for d in shape):
        raise ValueError(
            f"models need a fully defined input shape. Received: input shape {shape} "
            f"for model {model.name!r}"
        )
    classes = int(model.outputs[0].shape[-1])
    x = rng.standard_normal((batch_size, *shape)).astype("float32")
    y = rng.integers(0, classes, size=(batch_size,)).astype("int32")
    return x, y


def _compiled(model):
    """Compiles with SGD; the loss reads logits unless the last layer is a softmax."""
    import keras

    activation = getattr(model.layers[-1], "activation", None) if model.layers else None
    softmax = getattr(activation, "__name__", "") == "softmax"
    model.compile(
        optimizer=keras.optimizers.SGD(learning_rate=1e-3, momentum=0.9),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=not softmax),
    )
    return model


def _time_steps(model, batch, steps):
    x, y = batch
    start = time.perf_counter()
    for _ in range(steps):
        model.train_on_batch(x, y)
    return (time.perf_counter() - start) / steps


def measure_train_step(models, batch_size=32, steps=5, repeats=5, warmup=2, seed=0):
    """Times a training step of several models, interleaved, with paired ratios.

    Every distinct model is compiled (SGD with momentum, sparse categorical
    cross-entropy, from logits unless the last layer is a softmax;
    `model.train_on_batch` as the step) and trained `warmup` steps on a
    random batch; then, for each of `repeats` rounds, every model runs
    `steps` steps in an order rotated by one per round, and its mean step
    time in that round is recorded. The same model object may appear twice
    (an A/A control).

    Args:
        models: a dict `{name: keras.Model}` (or a list: names `model0`, ...),
            each with a fully defined input shape. The first is the
            reference of the ratios.
        batch_size: examples per step. Defaults to 32.
        steps: timed steps per model and round. Defaults to 5.
        repeats: rounds. Defaults to 5.
        warmup: untimed steps per model before the first round (tracing).
            Defaults to 2.
        seed: seed of the random batches. Defaults to 0.

    Returns:
        A dict: `"names"`, `"times"` (`{name: [seconds per step, per round]}`),
        `"median"` (`{name: median seconds per step}`), `"ratios"`
        (`{name: [time / reference time, per round]}`), `"median_ratio"`
        (`{name: median paired ratio}`; a speed-up of model b over the
        reference is `1 / median_ratio[b]`), and the settings.

    Example:

    >>> import keras
    >>> m = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    >>> r = measure_train_step({"a": m, "a again": m}, batch_size=2, steps=1, repeats=2)
    >>> len(r["times"]["a again"])
    2
    """
    items = _as_dict(models)
    for value, name in ((batch_size, "batch_size"), (steps, "steps"), (repeats, "repeats")):
        _checks.check_positive_int(value, name)
    _checks.check_non_negative_int(warmup, "warmup")
    batches, compiled = {}, set()
    for _, model in items:
        if id(model) not in compiled:
            _compiled(model)
            compiled.add(id(model))
            batches[id(model)] = _batch(model, batch_size, seed)
            for _ in range(warmup):
                model.train_on_batch(*batches[id(model)])
    names = [name for name, _ in items]
    times = {name: [] for name in names}
    for r in range(repeats):
        shift = r % len(items)
        for name, model in items[shift:] + items[:shift]:
            times[name].append(_time_steps(model, batches[id(model)], steps))
    reference = times[names[0]]
    ratios = {n: [t / ref for t, ref in zip(times[n], reference)] for n in names}
    return {
        "names": names,
        "times": times,
        "median": {n: statistics.median(times[n]) for n in names},
        "ratios": ratios,
        "median_ratio": {n: statistics.median(ratios[n]) for n in names},
        "batch_size": batch_size,
        "steps": steps,
        "repeats": repeats,
        "warmup": warmup,
    }
