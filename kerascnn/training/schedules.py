"""Learning-rate schedules: the one-cycle policy (Smith & Topin, 2019).

The efficient-CNN paper's "One Cycle LR": the rate climbs from a low value to
`max_learning_rate`, then falls far below the starting value, changing every
batch. The shape and the defaults are PyTorch's `OneCycleLR` (the schedule
Composer-era code used): cosine annealing, `div_factor=25`,
`final_div_factor=1e4`, warm-up over `pct_start=0.3` of the steps. The paper
describes the rise as "the first half": pass `pct_start=0.5` for that.
"""

import math

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="kerascnn")
class OneCycle(keras.optimizers.schedules.LearningRateSchedule):
    """One-cycle learning rate: warm up to a peak, then anneal far below the start.

    With `initial = max_learning_rate / div_factor` and
    `final = initial / final_div_factor`, the rate goes from `initial` at
    step 0 to `max_learning_rate` at step `pct_start * total_steps`, then to
    `final` at step `total_steps` (and stays there), each phase following a
    half cosine (`anneal_strategy="cos"`) or a straight line (`"linear"`).

    Args:
        max_learning_rate: the peak rate.
        total_steps: optimizer steps in the whole run (epochs x steps per epoch).
        pct_start: fraction of the steps spent warming up, in (0, 1).
            Defaults to 0.3.
        div_factor: `max_learning_rate / initial`. Defaults to 25.
        final_div_factor: `initial / final`. Defaults to 1e4.
        anneal_strategy: `"cos"` or `"linear"`. Defaults to `"cos"`.
        name: optional name.

    Example:

    >>> schedule = OneCycle(0.1, total_steps=100)
    >>> round(float(schedule(29)), 6)  # the peak, at pct_start * total_steps - 1
    0.1
    >>> optimizer = keras.optimizers.SGD(learning_rate=schedule, momentum=0.9)
    """

    def __init__(
        self,
        max_learning_rate,
        total_steps,
        pct_start=0.3,
        div_factor=25.0,
        final_div_factor=1e4,
        anneal_strategy="cos",
        name=None,
    ):
        super().__init__()
        for arg, value in (
            ("max_learning_rate", max_learning_rate),
            ("div_factor", div_factor),
            ("final_div_factor", final_div_factor),
        ):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
                raise ValueError(f"{arg} must be a positive number. Received: {arg}={value!r}")
        if isinstance(total_steps, bool) or not isinstance(total_steps, int) or total_steps < 2:
            raise ValueError(
                f"total_steps must be an integer >= 2. Received: total_steps={total_steps!r}"
            )
        if (
            isinstance(pct_start, bool)
            or not isinstance(pct_start, (int, float))
            or not (0 < pct_start < 1)
        ):
            raise ValueError(f"pct_start must be in (0, 1). Received: pct_start={pct_start!r}")
        if pct_start * total_steps <= 1 or pct_start * total_steps >= total_steps:
            raise ValueError(
                "pct_start * total_steps must be in (1, total_steps): both phases need "
                f"steps. Received: pct_start={pct_start!r}, total_steps={total_steps!r}"
            )
        if anneal_strategy not in ("cos", "linear"):
            raise ValueError(
                "anneal_strategy must be 'cos' or 'linear'. "
                f"Received: anneal_strategy={anneal_strategy!r}"
            )
        self.max_learning_rate = float(max_learning_rate)
        self.total_steps = total_steps
        self.pct_start = float(pct_start)
        self.div_factor = float(div_factor)
        self.final_div_factor = float(final_div_factor)
        self.anneal_strategy = anneal_strategy
        self.name = name

    @property
    def initial_learning_rate(self):
        return self.max_learning_rate / self.div_factor

    @property
    def final_learning_rate(self):
        return self.initial_learning_rate / self.final_div_factor

    @property
    def peak_step(self):
        """Step at which the rate peaks (PyTorch: `pct_start * total_steps - 1`)."""
        return float(self.pct_start * self.total_steps) - 1.0

    def _anneal(self, start, end, fraction):
        if self.anneal_strategy == "cos":
            return end + (start - end) / 2.0 * (ops.cos(math.pi * fraction) + 1.0)
        return start + (end - start) * fraction

    def __call__(self, step):
        step = ops.cast(step, "float32")
        peak = self.peak_step
        last = float(self.total_steps - 1)
        warm = ops.clip(step / peak, 0.0, 1.0)
        cool = ops.clip((step - peak) / (last - peak), 0.0, 1.0)
        up = self._anneal(self.initial_learning_rate, self.max_learning_rate, warm)
        down = self._anneal(self.max_learning_rate, self.final_learning_rate, cool)
        return ops.where(step <= peak, up, down)

    def get_config(self):
        return {
            "max_learning_rate": self.max_learning_rate,
            "total_steps": self.total_steps,
            "pct_start": self.pct_start,
            "div_factor": self.div_factor,
            "final_div_factor": self.final_div_factor,
            "anneal_strategy": self.anneal_strategy,
            "name": self.name,
        }
