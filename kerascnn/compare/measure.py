"""Measured resources of the compared models: parameters, MACs, memory, latency.

Parameters are `model.count_params()`; MACs are the forward multiply-adds
of one image (`kerascnn.observe.summary.summarize`). Memory and latency are
**measured** on the machine that runs the comparison:

- **Peak activation memory per batch** (`memory_*_bytes`): TensorFlow's own
  allocator statistics. `tf.config.experimental.reset_memory_stats("CPU:0")`
  resets the CPU allocator's high-water mark to what is allocated now (the
  weights, the optimizer's slots and the input batch, all allocated before
  the reset), one step runs, and `get_memory_info("CPU:0")["peak"]` minus the
  bytes in use before the step is the peak of what that step allocated on
  top: for a training step (`train_on_batch`, SGD with momentum, after
  warm-up steps) the activations kept for the backward pass, the gradients
  and the temporaries; for inference (`model(x, training=False)` in a
  `tf.function`) the live activations. This works on the CPU build of
  TensorFlow 2.21 used here (the CPU allocator keeps the peak; its
  `"current"` may read 0, so the difference is at least the step's peak)
  and on GPUs with `"GPU:0"`. Not counted: memory that TensorFlow's
  allocator does not hand out (oneDNN's scratch pads and caches, the Python
  heap, the data pipeline). The templates paper's Table 2 / Figure 4 report
  GPU memory "per batch" (batch 64); the default batch here is 64 too.
- **Inference latency** (`latency_b1_ms`, `latency_b64_ms`): the wall time
  of one call of the model (`model(x, training=False)` in a compiled
  `tf.function`) on a random batch of 1 and of 64, after `warmup` untimed
  calls; each of `repeats` rounds times `calls` calls of every model in an
  order rotated by one per round (interleaved, as
  `kerascnn.observe.step_time.measure_train_step` times training steps), and
  the median per call over the rounds is reported, with the paired ratio to
  the first model of the same round. `aa_control=True` times the first
  model a second time, under the name `"<first> (A/A)"`: its ratio to the
  first shows the noise floor.

Example:

>>> import keras
>>> def tiny(width):
...     return keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Conv2D(width, 3),
...                              keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(10)])
>>> rows = measure_models({"a": tiny(8), "b": tiny(4)}, memory_batch=4, repeats=2, calls=1)
>>> sorted(rows["a"])[:3]
['latency_b1_ms', 'latency_b64_ms', 'latency_ratio_b1']
"""

from __future__ import annotations

import statistics
import time

import numpy as np

from kerascnn import _checks

#: How the comparison's memory and latency figures are obtained (written to compare.json).
MEMORY_METHOD = (
    "peak bytes allocated by TensorFlow's allocator during one step on top of what was in use "
    "before it (tf.config.experimental.reset_memory_stats + get_memory_info(device)['peak']); "
    "train: one train_on_batch step (SGD momentum) after warm-up; inference: one "
    "model(x, training=False) call in a tf.function"
)
LATENCY_METHOD = (
    "median wall time of one model(x, training=False) call in a tf.function, after warm-up; "
    "rounds interleaved across models in rotated order"
)


def memory_device():
    """`"GPU:0"` when TensorFlow sees a GPU, else `"CPU:0"`."""
    import tensorflow as tf

    return "GPU:0" if tf.config.list_physical_devices("GPU") else "CPU:0"


def _batch(model, batch_size, seed=0):
    rng = np.random.default_rng(seed)
    shape = tuple(model.inputs[0].shape[1:])
    classes = int(model.outputs[0].shape[-1])
    x = rng.standard_normal((batch_size, *shape)).astype("float32")
    y = rng.integers(0, classes, size=(batch_size,)).astype("int32")
    return x, y


def _peak_during(step, device):
    """Bytes the allocator of `device` peaked at during `step()`, above those in use before."""
    import tensorflow as tf

    tf.config.experimental.reset_memory_stats(device)
    before = tf.config.experimental.get_memory_info(device)["current"]
    step()
    return int(tf.config.experimental.get_memory_info(device)["peak"] - before)


def _inference_fn(model):
    import tensorflow as tf

    return tf.function(lambda x: model(x, training=False), reduce_retracing=True)


def peak_memory(model, batch_size=64, warmup=2, device=None):
    """Measured peak activation memory (bytes) of a training step and of an inference call.

    See the module docstring for what is counted. The model is compiled
    here (SGD with momentum, sparse categorical cross-entropy) unless it is
    already compiled.

    Args:
        model: a Keras model with a fully defined input shape.
        batch_size: examples per batch. Defaults to 64 (the paper's).
        warmup: untimed steps before the measured one. Defaults to 2.
        device: the allocator's device. Defaults to `memory_device()`.

    Returns:
        `{"memory_train_bytes": int, "memory_inference_bytes": int}`.
    """
    import keras
    import tensorflow as tf

    _checks.check_positive_int(batch_size, "batch_size")
    device = device or memory_device()
    if not getattr(model, "compiled", False) or model.optimizer is None:
        activation = getattr(model.layers[-1], "activation", None) if model.layers else None
        softmax = getattr(activation, "__name__", "") == "softmax"
        model.compile(
            optimizer=keras.optimizers.SGD(learning_rate=1e-3, momentum=0.9),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=not softmax),
        )
    x, y = _batch(model, batch_size)
    x, y = tf.constant(x), tf.constant(y)
    for _ in range(max(1, warmup)):
        model.train_on_batch(x, y)
    train = _peak_during(lambda: model.train_on_batch(x, y), device)
    infer = _inference_fn(model)
    for _ in range(max(1, warmup)):
        infer(x)
    inference = _peak_during(lambda: infer(x).numpy(), device)
    return {"memory_train_bytes": train, "memory_inference_bytes": inference}


def _time_calls(fn, x, calls):
    start = time.perf_counter()
    for _ in range(calls):
        out = fn(x)
    np.asarray(out)  # wait for the last call
    return (time.perf_counter() - start) / calls


def measure_latency(models, batch_sizes=(1, 64), repeats=7, calls=3, warmup=2, aa_control=False):
    """Inference latency of several models, interleaved, with paired ratios.

    Args:
        models: a dict `{name: keras.Model}`; the first is the ratios' reference.
        batch_sizes: the batch sizes timed. Defaults to `(1, 64)`.
        repeats: rounds (the median is over them). Defaults to 7.
        calls: timed calls per model and round. Defaults to 3.
        warmup: untimed calls per model and batch size first. Defaults to 2.
        aa_control: also time the first model a second time (`"<name> (A/A)"`).
            Defaults to False.

    Returns:
        `{name: {"latency_b<B>_ms": median ms per call, "latency_ratio_b<B>":
        median paired ratio to the first model, "latency_b<B>_rounds_ms": [...]}}`.
    """
    for value, name in ((repeats, "repeats"), (calls, "calls")):
        _checks.check_positive_int(value, name)
    items = list(models.items())
    if not items:
        raise ValueError(f"models must hold at least one model. Received: models={models!r}")
    if aa_control:
        items.append((f"{items[0][0]} (A/A)", items[0][1]))
    fns = {id(model): _inference_fn(model) for _, model in items}
    result = {name: {} for name, _ in items}
    for batch_size in batch_sizes:
        inputs = {id(m): _batch(m, batch_size)[0] for _, m in items}
        for _, model in items:
            for _ in range(max(1, warmup)):
                np.asarray(fns[id(model)](inputs[id(model)]))
        times = {name: [] for name, _ in items}
        for r in range(repeats):
            shift = r % len(items)
            for name, model in items[shift:] + items[:shift]:
                times[name].append(_time_calls(fns[id(model)], inputs[id(model)], calls))
        reference = times[items[0][0]]
        for name, _ in items:
            ratios = [t / ref for t, ref in zip(times[name], reference)]
            result[name][f"latency_b{batch_size}_ms"] = 1e3 * statistics.median(times[name])
            result[name][f"latency_ratio_b{batch_size}"] = statistics.median(ratios)
            result[name][f"latency_b{batch_size}_rounds_ms"] = [1e3 * t for t in times[name]]
    return result


def count(model):
    """`{"params": int, "macs": int or None}` (`kerascnn.observe.summary`)."""
    from kerascnn.observe import summary

    try:
        macs = int(summary.summarize(model).macs)
    except Exception:  # a counting problem must not stop a comparison
        macs = None
    return {"params": int(model.count_params()), "macs": macs}


def measure_models(models, memory_batch=64, repeats=7, calls=3, warmup=2, aa_control=False):
    """Parameters, MACs, peak memory (train, inference) and latency of several models.

    Args:
        models: a dict `{name: keras.Model}`.
        memory_batch: the batch of the memory measurement. Defaults to 64.
        repeats, calls, warmup, aa_control: see `measure_latency`.

    Returns:
        `{name: {...}}` with `params`, `macs`, `memory_train_bytes`,
        `memory_inference_bytes`, `memory_batch` and the latency entries.
    """
    rows = {}
    for name, model in models.items():
        rows[name] = dict(count(model), memory_batch=memory_batch)
        rows[name].update(peak_memory(model, memory_batch, warmup=warmup))
    latency = measure_latency(
        models, repeats=repeats, calls=calls, warmup=warmup, aa_control=aa_control
    )
    for name, entries in latency.items():
        rows.setdefault(name, {}).update(entries)
    return rows
