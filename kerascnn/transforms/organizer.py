"""The stage-level organizer of the 3DRF optimizer (section 4.1 of the paper).

Each iteration has three sub-steps:

1. *Find the source.* The last unit of every stage is the one with the
   smallest gain in that stage (gains decay within a stage), so the unit with
   the minimum gain `D_min` over the stages' last units is the candidate; its
   stage is the source stage.
2. *Find the target.* The candidate is tentatively appended to every other
   stage, its channels adjusted to the stage it joins (its filters become
   those of that stage's last unit, so its input matches the preceding unit
   and its output the next stage's input, as before), and the gain of the
   appended unit is computed; the stage with the largest, `D'_max`, is the
   target.
3. *Move, remove or stop*, with the threshold `theta`:
   - `D'_max > D_min` and `D'_max > theta`: move the unit to the target;
   - `D'_max < theta` and `D_min < theta`: remove the unit;
   - `D_min > D'_max` and `D_min > theta`: stop.

   The three cases of the paper do not cover every situation (e.g.
   `D_min > theta` and `D'_max > D_min` fall under case 1 and the procedure
   can then move units forever between stages whose gains are all far above
   `theta`). `rule="paper"` applies the three cases literally and stops when
   none applies, when a layout repeats, or after `max_steps`.
   `rule="saturated"` reads `theta` as the paper describes it, the border
   between a useful unit and a saturated one: only a saturated candidate
   (`D_min < theta`) is moved or removed, and the organizer stops as soon as
   the candidate is useful (`D_min >= theta`); it is the rule under which the
   paper's ResNet-50 and MobileNet layouts come out (see docs/rf3d.md).

Defaults (`theta=None`, `rule=None`, see `default_settings`): the paper sets
theta = 0 for VGG and gives no value for other networks. VGG therefore gets
theta = 0 with the paper's rule (the saturated rule never acts at theta =
0), which gives VGG16-opt {5,4,2,1,1}; every other model gets the fitted
theta = 0.1 with the saturated rule (MobileNet {4,4,2,2,1} at CIFAR
geometry). `theta_scan` lists, for both rules, the theta intervals that give
each layout, so that a fitted theta is visible as such.

Movable units: units of body stages (not stems) with stride 1, and a stage
always keeps at least one unit (its first, possibly strided, unit is never
moved).

Example:

>>> from kerascnn.zoo import mobilenet_v1
>>> from kerascnn.transforms.organizer import organize
>>> result = organize(mobilenet_v1.mobilenet_spec(), theta=0.1, input_shape=(32, 32, 3))
>>> result.spec.stage_depths()[1:]
(4, 4, 2, 2, 1)
"""

from __future__ import annotations

import dataclasses
import math

from kerascnn.arch.naming import unit_prefix
from kerascnn.transforms import rf3d

RULES = ("saturated", "paper")
TIE_BREAKS = ("first", "last")

#: The paper's organized layouts (body stages; section 5.1, Table 3).
PAPER_LAYOUTS = {
    "vgg16": (5, 4, 2, 1, 1),
    "vgg19": (6, 4, 3, 2, 1),
    "resnet50": (5, 5, 4, 2),
    "mobilenet": (4, 4, 2, 2, 1),
}

#: theta and rule of models other than VGG (fitted: the paper gives none).
FITTED_THETA = 0.1


def default_settings(spec):
    """The organizer's default `(theta, rule)` for a spec.

    VGG (`spec.family == "vgg"` or a name starting with "vgg"): theta = 0 as the
    paper sets it ("theta is set to 0 for VGG", section 4.1), with the
    paper's three-case rule. Other models: theta = 0.1 (fitted, see
    `theta_scan` and docs/rf3d.md) with the saturated rule.

    Example:

    >>> from kerascnn.zoo import vgg
    >>> default_settings(vgg.vgg_spec("vgg16"))
    (0.0, 'paper')
    """
    family = str(getattr(spec, "family", "") or "")
    name = str(getattr(spec, "name", "") or "")
    if family.lower().startswith("vgg") or name.lower().startswith("vgg"):
        return 0.0, "paper"
    return FITTED_THETA, "saturated"


def check_theta(theta):
    """Raises a ValueError unless `theta` is a finite number >= 0.

    Gains are never negative (a unit cannot shrink its stage's 3DRF), so a
    negative threshold would be meaningless.
    """
    if (
        isinstance(theta, bool)
        or not isinstance(theta, (int, float))
        or not math.isfinite(theta)
        or theta < 0
    ):
        raise ValueError(f"theta must be a finite number >= 0. Received: theta={theta!r}")
    return float(theta)


@dataclasses.dataclass
class Step:
    """One iteration of the organizer."""

    step: int
    action: str  # "move", "remove" or "stop"
    unit: str | None = None
    source: int | None = None  # 3DRF stage (1-based)
    target: int | None = None
    delta_min: float | None = None
    delta_max: float | None = None
    candidates: dict = dataclasses.field(default_factory=dict)  # target (1-based) -> gain
    depths: tuple = ()  # body depths after the step
    reason: str = ""

    def to_dict(self):
        data = dataclasses.asdict(self)
        data["candidates"] = {str(k): v for k, v in self.candidates.items()}
        data["depths"] = list(self.depths)
        return data

    def describe(self):
        if self.action == "move":
            return (
                f"step {self.step}: move {self.unit} from stage {self.source} to stage "
                f"{self.target} (D_min={self.delta_min:.4f}, D'_max={self.delta_max:.4f}) "
                f"-> {list(self.depths)}"
            )
        if self.action == "remove":
            return (
                f"step {self.step}: remove {self.unit} from stage {self.source} "
                f"(D_min={self.delta_min:.4f}, D'_max={self.delta_max:.4f}) -> "
                f"{list(self.depths)}"
            )
        return f"step {self.step}: stop ({self.reason})"


@dataclasses.dataclass
class OrganizerResult:
    """What `organize` returns."""

    spec: object
    steps: list
    before: list  # rf3d.StageInfo of the input spec
    after: list  # rf3d.StageInfo of the output spec
    theta: float
    alpha: float
    input_shape: tuple
    original: object = None  # the input spec
    rule: str | None = None

    def to_dict(self):
        return {
            "theta": self.theta,
            "rule": self.rule,
            "alpha": self.alpha,
            "input_shape": list(self.input_shape),
            "depths_before": list(body_depths(self.original)),
            "depths_after": list(body_depths(self.spec)),
            "steps": [s.to_dict() for s in self.steps],
            "before": [s.to_dict() for s in self.before],
            "after": [s.to_dict() for s in self.after],
            "total_gain_before": rf3d.total_gain(self.before),
            "total_gain_after": rf3d.total_gain(self.after),
            "spec": self.spec.to_dict(),
        }


def body_depths(spec):
    """Units per body (non-stem) stage."""
    return tuple(len(spec.stages[i].units) for i in spec.body_stage_indices())


def _movable(spec, si, ui, unit):
    stage = spec.stages[si]
    return (
        not stage.name.startswith("stem") and len(stage.units) > 1 and ui > 0 and unit.strides == 1
    )


def _replace_units(spec, si, units):
    stages = list(spec.stages)
    stages[si] = dataclasses.replace(stages[si], units=tuple(units))
    return dataclasses.replace(spec, stages=tuple(stages))


def _remove(spec, si, ui):
    units = list(spec.stages[si].units)
    del units[ui]
    return _replace_units(spec, si, units)


def _append(spec, stage_info, unit):
    """Inserts `unit` after the last unit of a 3DRF stage; returns (spec, position)."""
    si, ui, last = stage_info.units[-1]
    moved = dataclasses.replace(unit.with_width(last.width), strides=1)
    if moved.kind == "bottleneck" and last.kind == "bottleneck":
        moved = moved.with_options(expansion=last.option("expansion"))
    units = list(spec.stages[si].units)
    units.insert(ui + 1, moved)
    return _replace_units(spec, si, units), (si, ui + 1)


def _source(current, stages, tie_break):
    """The movable last unit with the smallest gain: `(gain, 3DRF stage index, info)`."""
    sources = []
    for info in stages:
        si, ui, unit = info.units[-1]
        if info.last_gain is not None and _movable(current, si, ui, unit):
            sources.append((info.last_gain, info.index, info))
    if not sources:
        return None
    d_min = min(s[0] for s in sources)
    tied = [s for s in sources if s[0] == d_min]
    return tied[-1] if tie_break == "last" else tied[0]


def _candidates(current, stages, src_index, unit, input_shape, alpha):
    """Gain of `unit` appended to every other non-stem stage: `{stage (1-based): gain}`."""
    candidates = {}
    for info in stages:
        if info.index == src_index:
            continue
        if current.stages[info.units[-1][0]].name.startswith("stem"):
            continue
        trial, _ = _append(current, info, unit)
        trial_info = rf3d.analyze(trial, input_shape, alpha)[info.index]
        candidates[info.index + 1] = trial_info.rows[len(info.rows)].gain
    return candidates


def _decide(rule, d_min, d_max, theta):
    """`(action, reason)` of one step under `rule` (see the module docstring)."""
    if rule == "saturated":
        if d_min >= theta:
            return "stop", f"D_min={d_min:.4f} >= theta={theta}"
        if d_max > theta and d_max > d_min:
            return "move", ""
        return "remove", ""
    if d_max > d_min and d_max > theta:
        return "move", ""
    if d_max < theta and d_min < theta:
        return "remove", ""
    return "stop", f"D_min={d_min:.4f} >= D'_max={d_max:.4f} (no case applies)"


def _step(number, current, stages, theta, alpha, input_shape, rule, tie_break):
    """One iteration of the organizer: `(Step, new spec or None, best target stage)`."""
    source = _source(current, stages, tie_break)
    if source is None:
        depths = body_depths(current)
        return Step(number, "stop", depths=depths, reason="no movable unit"), None, None
    d_min, src_index, src = source
    si, ui, unit = src.units[-1]
    candidates = _candidates(current, stages, src_index, unit, input_shape, alpha)
    if candidates:
        target = max(candidates, key=lambda k: candidates[k])
        d_max = candidates[target]
    else:
        target, d_max = None, -math.inf
    action, reason = _decide(rule, d_min, d_max, theta)
    step = Step(
        number,
        action,
        unit=unit_prefix(current.stages[si], ui, unit),
        source=src_index + 1,
        target=target if action == "move" else None,
        delta_min=d_min,
        delta_max=d_max,
        candidates=candidates,
        depths=body_depths(current),
        reason=reason,
    )
    if action == "stop":
        return step, None, target
    new = _remove(current, si, ui)
    if action == "move":
        new, _ = _append(new, rf3d.analyze(new, input_shape, alpha)[target - 1], unit)
    return dataclasses.replace(step, depths=body_depths(new)), new, target


def organize(
    spec,
    theta=None,
    alpha=rf3d.DEFAULT_ALPHA,
    input_shape=(32, 32, 3),
    rule=None,
    tie_break="last",
    max_steps=200,
):
    """Runs the stage-level organizer on a spec.

    Args:
        spec: a `kerascnn.arch.spec.ArchSpec`.
        theta: the threshold (finite, >= 0). Defaults to None: the model's
            default (`default_settings`: 0 for VGG as in the paper, else 0.1).
        alpha: decay of the gain (> 0). Defaults to 3.
        input_shape: `(height, width, channels)`, square. Defaults to
            `(32, 32, 3)` (CIFAR).
        rule: `"saturated"` or `"paper"`; see the module docstring. Defaults
            to None: the model's default (`"paper"` for VGG, else
            `"saturated"`).
        tie_break: which stage is the source when several last units have the
            same minimum gain: `"last"` (default, the deepest stage) or
            `"first"`.
        max_steps: safety limit on iterations. Defaults to 200.

    Returns:
        An `OrganizerResult` with the new spec and the step log.
    """
    default_theta, default_rule = default_settings(spec)
    theta = check_theta(default_theta if theta is None else theta)
    rule = default_rule if rule is None else rule
    alpha = rf3d.check_alpha(alpha)
    if rule not in RULES:
        raise ValueError(f"rule must be one of {RULES}. Received: rule={rule!r}")
    if tie_break not in TIE_BREAKS:
        raise ValueError(
            f"tie_break must be one of {TIE_BREAKS}. Received: tie_break={tie_break!r}"
        )
    if isinstance(max_steps, bool) or not isinstance(max_steps, int) or max_steps < 0:
        raise ValueError(
            f"max_steps must be a non-negative integer. Received: max_steps={max_steps!r}"
        )
    if isinstance(input_shape, list):
        input_shape = tuple(input_shape)
    before = rf3d.analyze(spec, input_shape, alpha)
    steps = []
    seen = {body_depths(spec)}
    current, stages = spec, before
    for number in range(1, max_steps + 1):
        step, new, target = _step(
            number, current, stages, theta, alpha, input_shape, rule, tie_break
        )
        if step.action != "stop" and step.depths in seen:
            step = dataclasses.replace(
                step,
                action="stop",
                target=target,
                depths=body_depths(current),
                reason=f"layout {list(step.depths)} would repeat",
            )
        steps.append(step)
        if step.action == "stop":
            break
        seen.add(step.depths)
        current = new
        stages = rf3d.analyze(current, input_shape, alpha)
    else:
        steps.append(
            Step(
                max_steps + 1,
                "stop",
                depths=body_depths(current),
                reason=f"max_steps={max_steps} reached",
            )
        )
    return OrganizerResult(current, steps, before, stages, theta, alpha, input_shape, spec, rule)


@dataclasses.dataclass(frozen=True)
class ThetaInterval:
    """A theta interval over which the organizer reaches one layout."""

    rule: str
    low: float
    high: float  # math.inf for the last interval
    low_closed: bool
    high_closed: bool
    depths: tuple

    def describe(self):
        high = "inf" if math.isinf(self.high) else f"{self.high:.4f}"
        return (
            f"{'[' if self.low_closed else '('}{self.low:.4f}, {high}"
            f"{']' if self.high_closed else ')'}"
        )

    def to_dict(self):
        data = dataclasses.asdict(self)
        data["depths"] = list(self.depths)
        data["high"] = None if math.isinf(self.high) else self.high
        return data


def _critical(result):
    """The gains a run compared with theta (where its decisions can change)."""
    values = set()
    for step in result.steps:
        for value in (step.delta_min, step.delta_max):
            if value is not None and math.isfinite(value) and value >= 0:
                values.add(float(value))
    return values


def _merge(rule, pieces):
    """Sorted pieces `(low, high, low_closed, high_closed, depths)` -> `ThetaInterval`s."""
    pieces = sorted(pieces, key=lambda p: (p[0], 0 if p[2] else 1))
    merged = []
    for low, high, low_closed, high_closed, depths in pieces:
        if merged and merged[-1][4] == depths:
            merged[-1][1], merged[-1][3] = high, high_closed
        else:
            merged.append([low, high, low_closed, high_closed, depths])
    return [ThetaInterval(rule, *m) for m in merged]


def _scan_rule(rule, run):
    """Covers theta in [0, inf) with pieces of constant trajectory (see `theta_scan`)."""
    pieces, stack = [], [(0.0, math.inf)]

    def point(theta):
        pieces.append((theta, theta, True, True, run(theta)[0]))

    point(0.0)
    while stack:
        low, high = stack.pop()
        middle = low + 1.0 if math.isinf(high) else (low + high) / 2
        if not low < middle < high:
            continue
        depths, critical = run(middle)
        if middle in critical:
            point(middle)
            stack += [(low, middle), (middle, high)]
            continue
        a = max([c for c in critical if c < middle], default=low)
        b = min([c for c in critical if c > middle], default=high)
        a, b = max(a, low), min(b, high)
        pieces.append((a, b, False, False, depths))
        for end, part in ((a, (low, a)), (b, (b, high))):
            if part[0] < part[1]:
                point(end)
                stack.append(part)
    return _merge(rule, pieces)


def theta_scan(
    spec,
    input_shape=(32, 32, 3),
    rules=RULES,
    alpha=rf3d.DEFAULT_ALPHA,
    tie_break="last",
):
    """The layouts the organizer reaches over theta >= 0, per rule, as exact intervals.

    A run's decisions depend on theta only through comparisons with the gains
    it meets (`D_min`, `D'_max` of its steps), so a run at theta gives the same
    layout for every theta between the nearest of its own gains below and
    above. The scan starts at theta = 0 and covers [0, inf) with such
    intervals (running the organizer at each interval's middle and at each
    gain that bounds it), then merges neighbours with the same layout.

    Args:
        spec: a `kerascnn.arch.spec.ArchSpec`.
        input_shape: `(height, width, channels)` of the 3DRF geometry.
            Defaults to `(32, 32, 3)`.
        rules: the rules to scan. Defaults to `("saturated", "paper")`.
        alpha: decay of the gain. Defaults to 3.
        tie_break: see `organize`. Defaults to `"last"`.

    Returns:
        A dict `{rule: [ThetaInterval, ...]}` covering theta in [0, inf).

    Example:

    >>> from kerascnn.zoo import vgg
    >>> scan = theta_scan(vgg.vgg_spec("vgg16"), rules=("paper",))
    >>> scan["paper"][0].describe(), scan["paper"][0].depths
    ('[0.0000, 0.3678)', (5, 4, 2, 1, 1))
    """
    scans = {}
    for rule in rules:
        if rule not in RULES:
            raise ValueError(f"rules must be among {RULES}. Received: rules={rules!r}")
        cache = {}

        def run(theta, rule=rule, cache=cache):
            if theta not in cache:
                result = organize(spec, theta, alpha, input_shape, rule, tie_break)
                cache[theta] = (body_depths(result.spec), _critical(result))
            return cache[theta]

        scans[rule] = _scan_rule(rule, run)
    return scans
