"""Who is who in a multi-worker run: the chief, the worker index, the worker count.

Under `tf.distribute.MultiWorkerMirroredStrategy` every worker runs the same
program with its own `TF_CONFIG`; all of them must take part in every
collective (all-reduce), but only the chief writes files (models, reports,
CSV/TensorBoard logs). kerascnn's callbacks, `train` and `launch` ask these
functions, so that the rule lives in one place:

- the chief is the task of type `"chief"` if the cluster has one, else
  worker 0 (`"worker"` index 0);
- without a multi-worker strategy and without `TF_CONFIG`, the single process
  is the chief (index 0 of 1 worker).

The role comes from the strategy's cluster resolver when a multi-worker
strategy is given (or is the current one), else from the `TF_CONFIG`
environment variable (the same JSON that strategy reads), so it can be asked
before any strategy exists.

Host values across workers (each a collective that every worker must call,
in the same order; with one worker they return their input, no collective):
`all_reduce_mean`, `broadcast_from_chief`, `broadcast_json` and
`average_variables` (e.g. Keras 3's BatchNormalization moving statistics,
which every worker updates from its own batches only).

Example:

```python
from kerascnn._distribute import is_chief

if is_chief(model.distribute_strategy):
    model.save(path)
```
"""

import json
import os


def _strategy_task(strategy):
    resolver = getattr(strategy, "cluster_resolver", None) if strategy is not None else None
    if resolver is None:
        return None
    cluster = resolver.cluster_spec().as_dict()
    if not cluster:
        return None
    return resolver.task_type, resolver.task_id, cluster


def _env_task():
    raw = os.environ.get("TF_CONFIG", "").strip()
    if not raw:
        return None
    config = json.loads(raw)
    cluster = config.get("cluster") or {}
    if not cluster:
        return None
    task = config.get("task") or {}
    return task.get("type"), int(task.get("index", 0)), cluster


def _task(strategy=None):
    if strategy is None:
        import tensorflow as tf

        strategy = tf.distribute.get_strategy() if tf.distribute.has_strategy() else None
    return _strategy_task(strategy) or _env_task()


def is_chief(strategy=None):
    """Whether this process is the one that writes files.

    Args:
        strategy: a `tf.distribute` strategy (e.g. `model.distribute_strategy`).
            Defaults to `None` (the current strategy, else `TF_CONFIG`).

    Returns:
        `True` for the chief (task `"chief"`, else worker 0) and for a single
        process; `False` for every other task.

    Example:

    ```python
    if is_chief(model.distribute_strategy):
        write_report(path)
    ```
    """
    task = _task(strategy)
    if task is None:
        return True
    task_type, task_id, cluster = task
    if task_type == "chief":
        return True
    return "chief" not in cluster and task_type in ("worker", None) and int(task_id or 0) == 0


def worker_index(strategy=None):
    """This worker's index among the tasks that train (`"chief"` first, then `"worker"`).

    Args:
        strategy: as in `is_chief`. Defaults to `None`.

    Returns:
        `0` for the chief and for a single process.
    """
    task = _task(strategy)
    if task is None:
        return 0
    task_type, task_id, cluster = task
    if task_type == "chief":
        return 0
    return int(task_id or 0) + (1 if "chief" in cluster else 0)


def num_workers(strategy=None):
    """How many processes train together (`"chief"` plus `"worker"` tasks).

    Args:
        strategy: as in `is_chief`. Defaults to `None`.

    Returns:
        `1` for a single process.
    """
    task = _task(strategy)
    if task is None:
        return 1
    cluster = task[2]
    return max(1, len(cluster.get("chief", [])) + len(cluster.get("worker", [])))


def is_multi_worker(strategy=None):
    """Whether more than one process trains together (see `num_workers`).

    Args:
        strategy: as in `is_chief`. Defaults to `None`.
    """
    return num_workers(strategy) > 1


def worker_path(path, strategy=None):
    """`path` on the chief; a per-worker sibling (`<path>.worker<i>`) elsewhere.

    For a file or directory that every worker must write (e.g. its own
    feature cache) without two workers writing the same place.

    Args:
        path: the chief's path.
        strategy: as in `is_chief`. Defaults to `None`.

    Example:

    ```python
    cache_dir = worker_path("/tmp/features")   # "/tmp/features.worker1" on worker 1
    ```
    """
    if is_chief(strategy):
        return path
    path = os.fspath(path)
    return f"{path.rstrip(os.sep)}.worker{worker_index(strategy)}"


def _collective(arrays, strategy, keep):
    """Sums `arrays` over every replica, after multiplying by `keep(replica_id)`."""
    import numpy as np
    import tensorflow as tf

    arrays = [np.asarray(a) for a in arrays]
    if not arrays:
        return []
    values = [tf.constant(a.astype("float64")) for a in arrays]

    def reduce():
        ctx = tf.distribute.get_replica_context()
        weight = keep(ctx.replica_id_in_sync_group, ctx.num_replicas_in_sync)
        return ctx.all_reduce(tf.distribute.ReduceOp.SUM, [v * weight for v in values])

    reduced = strategy.run(tf.function(reduce, autograph=False))
    return [
        np.asarray(strategy.experimental_local_results(r)[0]).astype(a.dtype)
        for r, a in zip(reduced, arrays)
    ]


def all_reduce_mean(arrays, strategy):
    """The mean over all replicas of host `arrays` (one collective; every worker calls it).

    With one worker the arrays are returned unchanged (no collective).

    Args:
        arrays: a list of NumPy arrays (the same shapes on every worker).
        strategy: the training strategy (`model.distribute_strategy`).

    Returns:
        A list of NumPy arrays, the same on every worker.
    """
    import tensorflow as tf

    if not is_multi_worker(strategy):
        return [a for a in arrays]
    return _collective(arrays, strategy, lambda _, n: tf.constant(1.0, "float64") / float(n))


def broadcast_from_chief(arrays, strategy):
    """The chief's host `arrays` on every worker (one collective; every worker calls it).

    Every worker passes arrays of the same shapes (its own values, which are
    ignored except on the chief). With one worker they are returned unchanged.

    Args:
        arrays: a list of NumPy arrays.
        strategy: the training strategy (`model.distribute_strategy`).

    Returns:
        A list of NumPy arrays, the chief's.
    """
    import tensorflow as tf

    if not is_multi_worker(strategy):
        return [a for a in arrays]
    return _collective(
        arrays, strategy, lambda replica, _: tf.cast(tf.equal(replica, 0), "float64")
    )


def broadcast_json(value, strategy):
    """The chief's JSON-serializable `value` on every worker (two collectives).

    Every worker calls it; the value passed by the other workers is ignored.
    With one worker `value` is returned unchanged.

    Args:
        value: a JSON-serializable object (the chief's is used).
        strategy: the training strategy (`model.distribute_strategy`).

    Example:

    ```python
    state = read_state(path) if is_chief(strategy) else None
    state = broadcast_json(state, strategy)   # the chief's state everywhere
    ```
    """
    import numpy as np

    if not is_multi_worker(strategy):
        return value
    data = np.frombuffer(json.dumps(value).encode(), np.uint8)
    if not is_chief(strategy):
        data = np.zeros(0, np.uint8)
    (size,) = broadcast_from_chief([np.array([data.size], "float64")], strategy)
    buffer = np.zeros(int(size[0]), np.uint8)
    buffer[: data.size] = data
    (buffer,) = broadcast_from_chief([buffer], strategy)
    return json.loads(buffer.tobytes().decode())


def average_variables(variables, strategy):
    """Sets each variable to its mean over the workers (one collective; all must call).

    For state each worker updates from its own batches only, e.g. Keras 3's
    BatchNormalization moving statistics (no aggregation: every worker
    keeps its own), before saving or swapping weights. No-op with one worker.

    Args:
        variables: Keras (or TensorFlow) variables, the same list on every worker.
        strategy: the training strategy (`model.distribute_strategy`).
    """
    import numpy as np

    if not is_multi_worker(strategy) or not variables:
        return
    means = all_reduce_mean([np.asarray(v.numpy()) for v in variables], strategy)
    for variable, value in zip(variables, means):
        variable.assign(value)
