"""Every private `keras.src` / `keras_tuner.src` name kerascnn uses, in one place.

Keras 3 and keras-tuner do not export these names publicly; kerascnn needs
them to write a custom `train_step` that behaves like `keras.Model`'s (SAM,
learned layer dropping), to subclass Keras' image-preprocessing base layer,
to skip statistics inside a stateless scope, and to know a keras-tuner
process' distributed role. Other modules import them from here, so that a
Keras or keras-tuner upgrade that moves one of them breaks one file, and the
pinned versions (`pyproject.toml`) can be checked against this list.

Names (with their origin):

- `BaseImagePreprocessingLayer`: `keras.src.layers.preprocessing.
  image_preprocessing.base_image_preprocessing_layer`.
- `in_stateless_scope`: `keras.src.backend.common.stateless_scope`.
- `print_msg`: `keras.src.utils.io_utils` (prints, or logs when Keras'
  interactive logging is off, as Keras' own callbacks do).
- `reduce_per_replica`: `keras.src.backend.tensorflow.trainer`.
- `unscale_loss_for_distribution`: `keras.src.losses.loss`.
- `unpack_x_y_sample_weight`: `keras.src.trainers.data_adapters.
  data_adapter_utils`.
- `kt_distribute`: the module `keras_tuner.src.distribute.utils`
  (`has_chief_oracle`, `is_chief_oracle`).
- `TrialStatus`: `keras_tuner.src.engine.trial`.
- `testing`: the module `keras.src.testing` (`TestCase`), for the tests;
  imported on first access only.

Multi-worker fix (`install_multi_worker_fixes`, applied when this module is
first imported: `import kerascnn` does it when it registers the layers): Keras 3's
TensorFlow trainer does not run `fit` under a multi-worker
`tf.distribute.MultiWorkerMirroredStrategy` (keras-team/keras#20585): its
symbolic build reduces the first input batch eagerly across workers (an
eager cross-worker reduce of a `PerReplica` fails) and it reduces the scalar
step logs with `axis=0`. kerascnn replaces the two private functions involved
(`TensorFlowTrainer._maybe_symbolic_build` and the module's
`reduce_per_replica`) by versions that differ only in multi-worker mode: the
build uses the local replica's batch (only its shapes matter) and the logs
are averaged across workers with `axis=None`. Single-process training,
`MirroredStrategy` included, runs Keras' own code unchanged.

Example:

```python
from kerascnn._keras_compat import print_msg

print_msg("stability: layer conv_1 stable at epoch 3")
```
"""

import importlib

from keras.src import tree
from keras.src.backend.common.stateless_scope import in_stateless_scope
from keras.src.backend.tensorflow import trainer as _tf_trainer
from keras.src.layers.preprocessing.image_preprocessing.base_image_preprocessing_layer import (  # noqa: E501
    BaseImagePreprocessingLayer,
)
from keras.src.losses.loss import unscale_loss_for_distribution
from keras.src.trainers.data_adapters.data_adapter_utils import unpack_x_y_sample_weight
from keras.src.utils.io_utils import print_msg

# Imported on first access (module `__getattr__`): keras-tuner only by
# kerascnn.tuning, keras' testing module only by the tests.
_LAZY = {
    "kt_distribute": ("keras_tuner.src.distribute.utils", None),
    "TrialStatus": ("keras_tuner.src.engine.trial", "TrialStatus"),
    "testing": ("keras.src.testing", None),
}


def __getattr__(name):
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    module, attr = _LAZY[name]
    value = importlib.import_module(module)
    if attr is not None:
        value = getattr(value, attr)
    globals()[name] = value
    return value


def _is_multi_worker(strategy):
    return strategy is not None and _tf_trainer._collective_all_reduce_multi_worker(strategy)


def _local_batch(strategy, batch):
    import tensorflow as tf

    def first(x):
        if isinstance(x, tf.distribute.DistributedValues):
            return strategy.experimental_local_results(x)[0]
        return x

    return tree.map_structure(first, batch)


_keras_reduce_per_replica = _tf_trainer.reduce_per_replica
_keras_maybe_symbolic_build = _tf_trainer.TensorFlowTrainer._maybe_symbolic_build


def reduce_per_replica(values, strategy, reduction):
    """Keras' `reduce_per_replica`, with scalar means across workers fixed.

    Under a multi-worker strategy Keras reduces "auto"/"mean" values with
    `strategy.reduce("MEAN", v, axis=0)`, which fails on the scalar losses and
    metrics a train step returns; here they are averaged with `axis=None`
    (the value every worker then logs). Everything else is Keras' function.
    """
    if reduction in ("auto", "mean") and _is_multi_worker(strategy):
        import tensorflow as tf

        def mean(v):
            if isinstance(v, tf.distribute.DistributedValues):
                return strategy.reduce("MEAN", v, axis=None)
            return v

        return tree.map_structure(mean, values)
    return _keras_reduce_per_replica(values, strategy, reduction)


def _maybe_symbolic_build(self, iterator=None, data_batch=None):
    """Keras' symbolic build, using the local batch under multi-worker."""
    strategy = self._distribute_strategy
    if iterator is None or not _is_multi_worker(strategy):
        return _keras_maybe_symbolic_build(self, iterator=iterator, data_batch=data_batch)
    for _, _, it in iterator:
        data_batch = _local_batch(strategy, next(it))
        break
    with strategy.scope():
        self._symbolic_build(data_batch=data_batch)


def install_multi_worker_fixes():
    """Makes Keras 3 `fit`/`evaluate` run under a multi-worker strategy.

    Idempotent; applied when kerascnn is imported. See the module docstring.
    """
    _tf_trainer.reduce_per_replica = reduce_per_replica
    _tf_trainer.TensorFlowTrainer._maybe_symbolic_build = _maybe_symbolic_build


install_multi_worker_fixes()


__all__ = [  # noqa: F822 (the last three are imported on first access)
    "BaseImagePreprocessingLayer",
    "install_multi_worker_fixes",
    "in_stateless_scope",
    "print_msg",
    "reduce_per_replica",
    "unpack_x_y_sample_weight",
    "unscale_loss_for_distribution",
    "TrialStatus",
    "kt_distribute",
    "testing",
]


def __dir__():
    return sorted(__all__)
