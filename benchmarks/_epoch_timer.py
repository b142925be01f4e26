"""Epoch timers for the benchmarks: whole epochs, callbacks included.

Put `EpochStart()` first and `EpochEnd(start)` last in the callback list:
`end.times` then holds each epoch's seconds from before the other callbacks'
`on_epoch_begin` to after their `on_epoch_end`.

Example:

```python
start = EpochStart()
end = EpochEnd(start)
model.fit(data, epochs=3, callbacks=[start, *callbacks, end])
print(end.times)
```
"""

import time

import keras


class EpochStart(keras.callbacks.Callback):
    """Placed first: notes the time before the other callbacks' on_epoch_begin."""

    def on_epoch_begin(self, epoch, logs=None):
        self.t = time.perf_counter()


class EpochEnd(keras.callbacks.Callback):
    """Placed last: the epoch's time, after the other callbacks' on_epoch_end."""

    def __init__(self, start):
        super().__init__()
        self.start = start
        self.times = []

    def on_epoch_end(self, epoch, logs=None):
        self.times.append(time.perf_counter() - self.start.t)
