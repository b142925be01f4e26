"""Imports every kerascnn module that registers Keras-serializable objects.

`import kerascnn` imports this module, so that any `.keras` file holding
kerascnn objects loads in a fresh process after `import keras, kerascnn`:

- `kerascnn.layers`: `BlurPool2D`, `BlurMaxPool2D`, `BlurConv2D`, `Cutout`,
  `SqueezeExcite`, `GroupPointwiseConv2D`, `RollingPointwiseConv2D`;
- `kerascnn.training.schedules`: `OneCycle`;
- `kerascnn.training.sam`: nothing is serialized (SAM replaces the instance's
  `train_step` and a saved model is a plain Keras model), imported so that a
  module registering something there later is covered.

- `kerascnn.callbacks.swa`: `SWALearningRate`, the learning-rate schedule that
  `StochasticWeightAveraging(swa_lr=...)` puts on the optimizer during the SWA
  phase (a checkpoint written in that phase stores it with the optimizer).
  The callback itself is not stored in a `.keras` file, and a model trained
  with it saves as a plain model once the average is swapped in.

The `kerascnn` command line skips this import while it parses arguments (so
that `kerascnn --help` does not import TensorFlow) and imports this module
before running a command. A module that adds a
`keras.saving.register_keras_serializable` class must be added to `MODULES`
(`tests/workflows/test_serialization.py` checks it).
"""

import importlib

#: Modules whose import registers every serializable kerascnn object.
MODULES = (
    "kerascnn.layers",
    "kerascnn.training.schedules",
    "kerascnn.training.sam",
    "kerascnn.callbacks.swa",
)

for _module in MODULES:
    importlib.import_module(_module)
