"""kerascnn's warning categories.

`NoEffectWarning` mirrors Composer's (`composer/algorithms/warnings.py`): a
technique was asked for but changed nothing (e.g. squeeze-excite on a net
whose convolutions are all narrower than `se_min_channels`). It is a
`UserWarning`, so it is shown by default; silence it with
`warnings.filterwarnings("ignore", category=kerascnn.NoEffectWarning)`.

This module imports nothing heavy (no TensorFlow, no Keras).

Example:

```python
import warnings

import kerascnn

with warnings.catch_warnings():
    warnings.simplefilter("error", kerascnn.NoEffectWarning)  # make it fatal in a test
```
"""


class NoEffectWarning(UserWarning):
    """A requested technique left the model (or the training) unchanged."""
