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

Example:

```python
from kerascnn._keras_compat import print_msg

print_msg("stability: layer conv_1 stable at epoch 3")
```
"""

import importlib

from keras.src.backend.common.stateless_scope import in_stateless_scope
from keras.src.backend.tensorflow.trainer import reduce_per_replica
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


__all__ = [  # noqa: F822 (the last three are imported on first access)
    "BaseImagePreprocessingLayer",
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
