"""The training recipe: optimizer, learning-rate schedule, loss and distribution strategy.

The ONE factory of these objects, shared by `kerascnn train`
(`kerascnn.training.run`) and the tuner (`kerascnn.tuning`), so that an
optimizer name means the same optimizer everywhere: SGD with momentum 0.9 and
Nesterov momentum, Adam, AdamW (weight decay 1e-4) or RMSprop, each with a
constant, cosine-decayed or one-cycle learning rate
(`kerascnn.training.schedules.OneCycle`, Smith & Topin, "Super-Convergence",
arXiv:1708.07120).

Keras and TensorFlow are imported inside the functions: importing this module
is cheap (the command line reads its constants).

Example:

```python
from kerascnn.training import recipe

optimizer = recipe.make_optimizer("sgd", schedule="cosine", decay_steps=1000)
loss = recipe.make_loss(label_smoothing=0.1)  # CategoricalCrossentropy on one-hot labels
strategy = recipe.make_strategy("mirrored")  # None for "default" / None
# In every worker process, with TF_CONFIG set, before any other TensorFlow work:
# recipe.make_strategy("multi_worker", collective_timeout=120)
```
"""

from __future__ import annotations

from kerascnn import _checks

#: Optimizer names understood by `make_optimizer`.
OPTIMIZERS = ("sgd", "adam", "adamw", "rmsprop")
#: The learning rate of each optimizer when none is given.
DEFAULT_LEARNING_RATES = {"sgd": 0.05, "adam": 3e-3, "adamw": 3e-3, "rmsprop": 1e-3}
#: Learning-rate schedules understood by `make_optimizer`.
LR_SCHEDULES = ("constant", "cosine", "one_cycle")
#: The sparse loss (integer labels) and its one-hot counterpart.
SPARSE_LOSS = "sparse_categorical_crossentropy"
ONE_HOT_LOSS = "categorical_crossentropy"
#: Distribution strategies understood by `make_strategy` (besides a strategy object).
STRATEGIES = ("mirrored", "multi_worker")

_MIRRORED_STRATEGIES = {}
#: The process's one MultiWorkerMirroredStrategy: `[(TF_CONFIG, timeout), strategy]`.
_MULTI_WORKER_STRATEGY = []


def default_learning_rate(name):
    """The default learning rate of optimizer `name` (0.05 for SGD, 3e-3 Adam/AdamW, 1e-3 RMSprop).

    Args:
        name: one of `OPTIMIZERS`.

    Returns:
        A float.

    Example:

    >>> default_learning_rate("sgd")
    0.05
    """
    return DEFAULT_LEARNING_RATES[_checks.check_one_of(name, "optimizer", OPTIMIZERS)]


def make_schedule(learning_rate, schedule="constant", decay_steps=None):
    """The learning rate (a float) or Keras schedule of `schedule`.

    Args:
        learning_rate: the initial (cosine) or peak (one-cycle) rate.
        schedule: `"constant"`, `"cosine"` (decay to 0 over `decay_steps`) or
            `"one_cycle"` (`OneCycle` over `decay_steps`, peaking at
            `learning_rate`, PyTorch OneCycleLR's defaults otherwise).
            Defaults to `"constant"`.
        decay_steps: optimizer steps of the whole run; required by `"cosine"`
            and `"one_cycle"`. Defaults to None.

    Example:

    >>> make_schedule(0.1)
    0.1
    """
    _checks.check_one_of(schedule, "schedule", LR_SCHEDULES)
    if schedule == "constant":
        return learning_rate
    decay_steps = _checks.check_positive_int(max(1, int(decay_steps or 0)), "decay_steps")
    if schedule == "cosine":
        import keras

        return keras.optimizers.schedules.CosineDecay(learning_rate, decay_steps=decay_steps)
    from kerascnn.training.schedules import OneCycle

    return OneCycle(learning_rate, total_steps=decay_steps)


def make_optimizer(name, learning_rate=None, *, schedule="constant", decay_steps=None):
    """Builds optimizer `name` (a Keras optimizer is returned as is).

    Args:
        name: `"sgd"` (momentum 0.9, Nesterov), `"adam"`, `"adamw"` (weight
            decay 1e-4), `"rmsprop"` or a `keras.optimizers.Optimizer`.
        learning_rate: the (initial / peak) learning rate; None uses
            `default_learning_rate(name)`. Defaults to None.
        schedule: `"constant"`, `"cosine"` or `"one_cycle"` (see
            `make_schedule`). Defaults to `"constant"`.
        decay_steps: optimizer steps of the whole run (cosine, one-cycle).
            Defaults to None.

    Returns:
        A `keras.optimizers.Optimizer`.

    Example:

    >>> opt = make_optimizer("sgd", 0.1)
    >>> opt.nesterov
    True
    """
    import keras

    if isinstance(name, keras.optimizers.Optimizer):
        return name
    _checks.check_one_of(name, "optimizer", OPTIMIZERS)
    lr = default_learning_rate(name) if learning_rate is None else learning_rate
    lr = make_schedule(lr, schedule, decay_steps)
    if name == "sgd":
        return keras.optimizers.SGD(lr, momentum=0.9, nesterov=True)
    if name == "adam":
        return keras.optimizers.Adam(lr)
    if name == "adamw":
        return keras.optimizers.AdamW(lr, weight_decay=1e-4)
    return keras.optimizers.RMSprop(lr)


def make_loss(label_smoothing=0.0, *, one_hot=None):
    """The classification loss: sparse cross-entropy, or categorical on one-hot labels.

    Args:
        label_smoothing: in [0, 1). Defaults to 0.
        one_hot: whether the labels are one-hot (MixUp, label smoothing);
            None: one-hot when `label_smoothing > 0`. Defaults to None.

    Returns:
        `"sparse_categorical_crossentropy"` or a
        `keras.losses.CategoricalCrossentropy`.

    Example:

    >>> make_loss()
    'sparse_categorical_crossentropy'
    """
    label_smoothing = _checks.check_fraction(label_smoothing, "label_smoothing")
    if one_hot is None:
        one_hot = label_smoothing > 0
    if not one_hot:
        return SPARSE_LOSS
    import keras

    return keras.losses.CategoricalCrossentropy(label_smoothing=label_smoothing)


def make_strategy(strategy, *, collective_timeout=None):
    """The `tf.distribute.Strategy` of `strategy`, or None for the default one.

    One `MirroredStrategy` per process and device set: two instances in one
    process allocate the same collective group and instance keys, and the
    second one's all-reduces then collide with the first's in TensorFlow's
    process-wide collective executor ("Shape mismatch in the collective
    instance ..."). Reusing the strategy is what TensorFlow recommends and
    makes `train(strategy="mirrored")` safe to call repeatedly (notebooks,
    tuner trials).

    `"multi_worker"` builds one `tf.distribute.MultiWorkerMirroredStrategy`
    per process from the standard `TF_CONFIG` (checked first by
    `kerascnn.training.workers.read_tf_config`: a ValueError naming
    TF_CONFIG when it is missing or malformed), with every collective
    limited to `collective_timeout` seconds
    (`tf.distribute.experimental.CommunicationOptions(timeout_seconds=...)`),
    so that a dead peer makes the others fail instead of waiting forever.
    TensorFlow configures collectives when its runtime starts: the strategy
    must be created before the process runs any TensorFlow operation (a
    ValueError says so otherwise). Creating it waits until every worker of
    the cluster has started.

    Args:
        strategy: None or `"default"` (no strategy), `"mirrored"`,
            `"multi_worker"` or a `tf.distribute.Strategy` (returned as is).
        collective_timeout: seconds (positive) a collective of
            `"multi_worker"` may wait for a peer. Defaults to None
            (`kerascnn.training.workers.DEFAULT_COLLECTIVE_TIMEOUT`, 120 s).

    Example:

    >>> make_strategy(None) is None
    True
    """
    if strategy is None or strategy == "default":
        return None
    import tensorflow as tf

    if isinstance(strategy, tf.distribute.Strategy):
        return strategy
    if strategy == "mirrored":
        devices = tuple(d.name for d in tf.config.list_logical_devices())
        compute = tuple(d for d in devices if "GPU" in d) or tuple(d for d in devices if "CPU" in d)
        cached = _MIRRORED_STRATEGIES.get(compute)
        if cached is None:
            cached = _MIRRORED_STRATEGIES[compute] = tf.distribute.MirroredStrategy()
        return cached
    if strategy == "multi_worker":
        return _multi_worker_strategy(collective_timeout)
    raise ValueError(
        "strategy must be None, 'mirrored', 'multi_worker' or a tf.distribute.Strategy. "
        f"{_checks.received('strategy', strategy)}"
    )


def _multi_worker_strategy(collective_timeout):
    """The process's one `MultiWorkerMirroredStrategy` (see `make_strategy`)."""
    import os

    import tensorflow as tf

    from kerascnn.training import workers

    workers.read_tf_config()
    if collective_timeout is None:
        collective_timeout = workers.DEFAULT_COLLECTIVE_TIMEOUT
    timeout = _checks.check_positive_number(collective_timeout, "collective_timeout")
    key = (os.environ["TF_CONFIG"], float(timeout))
    if _MULTI_WORKER_STRATEGY:
        if _MULTI_WORKER_STRATEGY[0][0] == key:
            return _MULTI_WORKER_STRATEGY[0][1]
        raise ValueError(
            "A process can hold one MultiWorkerMirroredStrategy: TF_CONFIG or "
            "collective_timeout changed since the first one was created "
            f"(collective_timeout={_MULTI_WORKER_STRATEGY[0][0][1]}). "
            f"Received: collective_timeout={collective_timeout!r}"
        )
    options = tf.distribute.experimental.CommunicationOptions(timeout_seconds=float(timeout))
    try:
        created = tf.distribute.MultiWorkerMirroredStrategy(communication_options=options)
    except RuntimeError as error:
        raise ValueError(
            "strategy='multi_worker' must be created before TensorFlow runs any operation in "
            f"the process ({error}): call train(strategy='multi_worker') (or `kerascnn train "
            "--strategy multi_worker`) first in a fresh process, or create "
            "tf.distribute.MultiWorkerMirroredStrategy() at program start and pass it. "
            "Received: strategy='multi_worker'"
        ) from None
    _MULTI_WORKER_STRATEGY.append((key, created))
    return created


def strategy_scope(strategy):
    """`strategy.scope()`, or a no-op context manager when `strategy` is None."""
    import contextlib

    return strategy.scope() if strategy is not None else contextlib.nullcontext()
