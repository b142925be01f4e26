"""The Learn&Drop layer score and drop decision (pure functions).

Equations of Cruciata et al., "Learn&Drop: Fast Learning of CNNs based on
Layer Dropping" (`shared/papers/learn-and-drop_layer-dropping.txt`, section
3 and Algorithm 1):

* eq. 2, the score of layer l at an epoch, from the per-weight gradients
  g_ij (weight i, iteration j of the epoch):
  `P_l = 1 - sum_i |sum_j g_ij| / sum_i sum_j |g_ij|`, in [0, 1]; 0 when all
  iterations push every weight the same way (still learning), 1 when they
  cancel (stopped learning). Computed from the two per-weight accumulators
  `sum_j g_ij` and `sum_j |g_ij|` that `LayerStatistics` fills inside the
  training step.
* eq. 3, standardisation over the layers still trained:
  `P'_l = (P_l - mean(P)) / std(P)`.
* eq. 4, the candidates `l_z .. l_n*` with
  `n* = min{t : P'_t > 0 and P'_{t+1} < 0}` (the first local maximum of the
  prefix sums of P', the paper's "maximum-sum sub-vector starting from the
  first element").
* Algorithm 1, line 37: drop if `n* > 1` and the median `Mc` of the
  candidates' P' is >= the median `Md` of the P' that the previously
  dropped layers had when they were dropped (no previous drop: always).
  Algorithm 1 line 39 takes `tail.layers = head.layers[0:n*]`, so there `n*`
  is the *number* of leading layers dropped and `n* > 1` means that a run of
  a single candidate convolution is not dropped (`decide(min_layers=2)`, the
  default; `min_layers=1` is the older, looser rule). `n_star` below returns
  the 0-based index `t` of eq. 4, i.e. `t + 1` layers.
"""

from __future__ import annotations

import math

import numpy as np

from kerascnn import _checks

#: Algorithm 1, line 37: `n* > 1`, i.e. at least two layers per drop.
PAPER_MIN_LAYERS = 2


def layer_score(grad_sums, grad_abs_sums):
    """Equation 2 from the epoch's per-weight gradient sums of one layer.

    Args:
        grad_sums: array or list of arrays (one per trainable weight of the
            layer), the sum over the epoch's iterations of each gradient
            element.
        grad_abs_sums: same structure, the sum of absolute gradients.

    Returns:
        `P_l` as a float in [0, 1]; `nan` when every gradient was zero.

    Example:

    >>> g = np.array([0.5, -0.2])  # the same gradient in 3 iterations
    >>> layer_score(3 * g, 3 * np.abs(g))
    0.0
    >>> layer_score(np.zeros(2), np.array([1.0, 2.0]))  # they cancel
    1.0
    """
    if isinstance(grad_sums, np.ndarray):
        grad_sums, grad_abs_sums = [grad_sums], [grad_abs_sums]
    num = sum(float(np.sum(np.abs(np.asarray(s, np.float64)))) for s in grad_sums)
    den = sum(float(np.sum(np.asarray(a, np.float64))) for a in grad_abs_sums)
    if not den > 0:
        return float("nan")
    return float(min(1.0, max(0.0, 1.0 - num / den)))


def standardize(scores):
    """Equation 3: `(P - mean) / std` over the layers (population std).

    All-equal scores (std 0) give zeros; values are rounded to 12 decimals
    so that floating-point noise does not flip the signs that eq. 4 tests.
    NaN scores stay NaN and are left
    out of the mean and std.

    Example:

    >>> standardize([0.2, 0.4, 0.6]).round(4).tolist()
    [-1.2247, 0.0, 1.2247]
    """
    p = np.asarray(scores, np.float64)
    finite = np.isfinite(p)
    out = np.full(p.shape, np.nan)
    if not finite.any():
        return out
    mean = p[finite].mean()
    std = p[finite].std()
    out[finite] = 0.0 if std == 0 else (p[finite] - mean) / std
    # Rounding noise (1e-16) must not decide the sign tests of eq. 4.
    return np.round(out, 12) + 0.0


def n_star(standardized):
    """Equation 4: the 0-based index of the last candidate layer, or None.

    `n* = min{t : P'_t > 0 and P'_{t+1} < 0}` over the layers still
    trained (index 0 is the first layer of the head).

    Example:

    >>> n_star([1.0, 0.5, -0.2, -1.3])
    1
    >>> n_star([-1.0, 1.0, -0.5]) , n_star([-1.0, 0.0, 1.0]) is None
    (1, True)
    """
    p = np.asarray(standardized, np.float64)
    for t in range(len(p) - 1):
        if p[t] > 0 and p[t + 1] < 0:
            return t
    return None


def median_check(candidates, previously_dropped):
    """Algorithm 1's `Mc >= Md` (True when nothing was dropped before).

    Args:
        candidates: the P' of the candidate layers `l_z .. l_n*`.
        previously_dropped: the P' the already dropped layers had when they
            were dropped.

    Example:

    >>> median_check([0.5, 1.0, 0.8], [0.7, 0.9])
    True
    >>> median_check([0.1, 0.3], [0.7, 0.9])
    False
    """
    if len(candidates) == 0:
        return False
    if len(previously_dropped) == 0:
        return True
    return bool(np.median(candidates) >= np.median(previously_dropped))


def decide(scores, previously_dropped=(), min_layers=PAPER_MIN_LAYERS):
    """Eqs. 3-4 and Algorithm 1's drop test on one epoch's raw scores.

    Args:
        scores: `P_l` (eq. 2) of the convolution layers still trained, in
            order from the input.
        previously_dropped: the P' recorded for the layers dropped so far.
        min_layers: the fewest leading layers a drop may take. Defaults to 2,
            Algorithm 1's `n* > 1` (line 37, with `n*` the number of layers
            of line 39's `head.layers[0:n*]`); 1 also drops a single layer.

    Returns:
        `(count, standardized)`: `count` is the number of leading layers to
        drop (`n* + 1` of `n_star`'s 0-based index), 0 for none (no
        candidate, fewer than `min_layers` candidates, or `Mc < Md`);
        `standardized` the P' array.

    Example:

    >>> decide([0.9, 0.8, 0.2, 0.1])[0]
    2
    >>> decide([0.9, 0.2, 0.5, 0.1])[0]  # n* = 1: one layer, not dropped
    0
    >>> decide([0.9, 0.2, 0.5, 0.1], min_layers=1)[0]
    1
    """
    min_layers = check_min_layers(min_layers)
    standardized = standardize(scores)
    if not np.all(np.isfinite(standardized)) or len(standardized) < 2:
        return 0, standardized
    t = n_star(standardized)
    if t is None or t + 1 < min_layers:
        return 0, standardized
    if not median_check(standardized[: t + 1], list(previously_dropped)):
        return 0, standardized
    return t + 1, standardized


def check_min_layers(min_layers):
    """Validates `min_layers` (an integer >= 1) for the Learn&Drop callbacks."""
    return _checks.check_positive_int(min_layers, "min_layers")


def finite_or_none(value):
    """`value` as float, or None when not finite (for JSON state)."""
    value = float(value)
    return value if math.isfinite(value) else None
