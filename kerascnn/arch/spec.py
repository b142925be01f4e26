"""Architecture specs: a plain-data description of a convolutional network.

A spec is the object every transformation in kerascnn works on: the
filter-distribution templates (`kerascnn.transforms.templates`), the width multiplier and
(later) the 3D-receptive-field optimizer all take a spec and return a new one.
Building a Keras model from it (`kerascnn.builder.build_model`) is the last
step.

A spec is made of:

- `Unit`: one layer or one block (the granularity the templates work at): a
  plain convolution, a depthwise-separable pair, a basic or bottleneck residual
  block, an inception module.
- `Stage`: an ordered tuple of units, optionally followed by a pooling layer.
  Stage names prefix every Keras layer name built from them, so names are
  deterministic (`stage2_unit1_conv`, `stage2_pool`, ...).
- `Head`: what comes after the last stage (classifier).
- `ArchSpec`: the stages and the head, plus the family name.

Specs are immutable (frozen dataclasses of tuples) and survive a JSON round
trip: `ArchSpec.from_json(spec.to_json()) == spec`.

Example:

>>> from kerascnn.arch.spec import ArchSpec, Stage, Unit, Head
>>> spec = ArchSpec(
...     name="tiny",
...     family="vgg",
...     stages=(
...         Stage("stage1", (Unit("conv", 16), Unit("conv", 16)), pool="max"),
...         Stage("stage2", (Unit("conv", 32),), pool="max"),
...     ),
...     head=Head("flatten_dense"),
... )
>>> spec.filters()
[16, 16, 32]
>>> ArchSpec.from_json(spec.to_json()) == spec
True
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

#: Unit kinds and what their `filters` mean.
UNIT_KINDS = {
    # Conv2D (+BN) (+activation). filters: output channels.
    "conv": "standard convolution",
    # DepthwiseConv2D (+BN+act) then a 1x1 pointwise conv (+BN+act).
    # filters: output channels of the pointwise convolution.
    "separable": "depthwise-separable convolution (depthwise + pointwise)",
    # Two 3x3 convolutions with an identity or projection shortcut.
    # filters: channels of both convolutions.
    "basic": "basic residual block",
    # 1x1 reduce, kxk, 1x1 expand (x `expansion`), with a shortcut.
    # filters: bottleneck width; the block outputs `expansion * filters`.
    "bottleneck": "bottleneck residual block",
    # GoogLeNet v1 module. filters: a 6-tuple
    # (1x1, 3x3 reduce, 3x3, 5x5 reduce, 5x5, pool projection).
    "inception": "inception module (GoogLeNet v1)",
}

POOL_KINDS = ("max", "avg")

#: Where a bottleneck unit's stride goes (option `stride_on`): the k x k
#: convolution (ResNet v1.5) or the first 1x1 convolution (ResNet v1).
STRIDE_ON = ("middle", "first")

HEAD_KINDS = {
    # Flatten -> Dense(classes): the single-dense-layer CIFAR head.
    "flatten_dense": "flatten + one dense layer",
    # GlobalAveragePooling -> Dense(classes).
    "gap_dense": "global average pooling + one dense layer",
    # GlobalAveragePooling -> Dense(classes, no bias): the efficient-CNN
    # paper's 1x1 convolution classifier after GAP (identical arithmetic).
    "gap_conv1x1": "global average pooling + bias-free 1x1 classifier",
    # Flatten -> Dense(4096) -> Dense(4096) -> Dense(classes): VGG ImageNet.
    "vgg_imagenet": "flatten + fc 4096 + fc 4096 + classifier",
    # GlobalAveragePooling -> Dropout -> Dense(classes).
    "gap_dropout_dense": "global average pooling + dropout + dense",
}


def _check(condition, message):
    if not condition:
        raise ValueError(message)


def _freeze(value):
    """Turns lists (from JSON) into tuples, recursively, so specs stay hashable."""
    if isinstance(value, list):
        return tuple(_freeze(v) for v in value)
    if isinstance(value, dict):
        return tuple(sorted((k, _freeze(v)) for k, v in value.items()))
    return value


def _thaw(value):
    if isinstance(value, tuple):
        return [_thaw(v) for v in value]
    return value


@dataclasses.dataclass(frozen=True)
class Unit:
    """One layer or block of a stage.

    Args:
        kind: one of `UNIT_KINDS` (`"conv"`, `"separable"`, `"basic"`,
            `"bottleneck"`, `"inception"`).
        filters: output channels (an int), or for `"inception"` a 6-tuple
            `(1x1, 3x3 reduce, 3x3, 5x5 reduce, 5x5, pool projection)`.
        kernel_size: spatial size of the main kernel. Defaults to 3.
        strides: stride of the unit (of its first strided layer). Defaults to 1.
        options: kind-specific settings as a tuple of `(key, value)` pairs or
            a dict (stored sorted): `batch_norm` (bool, default True),
            `activation` (default `"relu"`), `use_bias` (default: not
            batch_norm), `padding` (`"same"`), `expansion` (bottleneck, 4),
            `double3x3` (inception: two 3x3 instead of one 5x5),
            `stride_on` (bottleneck: `"middle"`, the k x k convolution as in
            ResNet v1.5, default; or `"first"`, the first 1x1 convolution as
            in ResNet v1 and keras.applications),
            `templated` (whether templates change this unit, default True),
            `role` (free text, e.g. `"transition"`).

    Example:

    >>> Unit("bottleneck", 64, strides=2).output_channels
    256
    """

    kind: str
    filters: Any
    kernel_size: int = 3
    strides: int = 1
    options: Any = ()

    def __post_init__(self):
        _check(
            self.kind in UNIT_KINDS,
            f"Unknown unit kind. Expected one of {sorted(UNIT_KINDS)}. "
            f"Received: kind={self.kind!r}",
        )
        options = self.options
        if isinstance(options, dict):
            options = _freeze(options)
        elif isinstance(options, list):
            options = tuple(tuple(kv) for kv in options)
            options = tuple(sorted((k, _freeze(v)) for k, v in options))
        object.__setattr__(self, "options", tuple(options))
        filters = self.filters
        if self.kind == "inception":
            filters = tuple(filters) if not isinstance(filters, int) else filters
            _check(
                isinstance(filters, tuple)
                and len(filters) == 6
                and all(isinstance(f, int) and f >= 1 for f in filters),
                "An inception unit needs 6 positive integer filters (1x1, 3x3 "
                "reduce, 3x3, 5x5 reduce, 5x5, pool projection). "
                f"Received: filters={self.filters!r}",
            )
        else:
            _check(
                isinstance(filters, int) and not isinstance(filters, bool) and filters >= 1,
                f"Unit filters must be a positive integer. Received: "
                f"filters={self.filters!r} (kind={self.kind!r})",
            )
        object.__setattr__(self, "filters", filters)
        _check(
            isinstance(self.kernel_size, int) and self.kernel_size >= 1,
            f"kernel_size must be a positive integer. Received: kernel_size={self.kernel_size!r}",
        )
        _check(
            isinstance(self.strides, int) and self.strides >= 1,
            f"strides must be a positive integer. Received: strides={self.strides!r}",
        )
        stride_on = self.option("stride_on", "middle")
        _check(
            stride_on in STRIDE_ON and (self.kind == "bottleneck" or stride_on == "middle"),
            f"The stride_on option must be one of {STRIDE_ON} and 'first' needs a bottleneck "
            f"unit. Received: stride_on={stride_on!r} (kind={self.kind!r})",
        )

    def option(self, key, default=None):
        """Returns the value of option `key`, or `default`."""
        for k, v in self.options:
            if k == key:
                return v
        return default

    def with_options(self, **updates):
        """Returns a copy with some options set (None removes an option)."""
        options = dict(self.options)
        for key, value in updates.items():
            if value is None:
                options.pop(key, None)
            else:
                options[key] = value
        return dataclasses.replace(self, options=_freeze(options))

    @property
    def templated(self):
        """Whether filter-distribution templates change this unit."""
        return bool(self.option("templated", True))

    @property
    def width(self):
        """The single number templates redistribute for this unit.

        For an inception module it is its output channels (the sum of its
        four branches), since the paper treats a block as one layer.
        """
        if self.kind == "inception":
            f = self.filters
            return f[0] + f[2] + f[4] + f[5]
        return self.filters

    @property
    def output_channels(self):
        """Channels of the unit's output tensor."""
        if self.kind == "bottleneck":
            return self.filters * int(self.option("expansion", 4))
        return self.width

    def with_width(self, width):
        """Returns a copy whose `width` is `width` (branches scaled for inception)."""
        width = max(1, int(width))
        if self.kind != "inception":
            return dataclasses.replace(self, filters=width)
        scale = width / self.width
        scaled = [max(1, int(round(f * scale))) for f in self.filters]
        # Make the four output branches add up to exactly `width`: put the
        # rounding residue on the largest output branch.
        outputs = [0, 2, 4, 5]
        residue = width - sum(scaled[i] for i in outputs)
        largest = max(outputs, key=lambda i: scaled[i])
        scaled[largest] = max(1, scaled[largest] + residue)
        return dataclasses.replace(self, filters=tuple(scaled))

    def to_dict(self):
        return {
            "kind": self.kind,
            "filters": _thaw(self.filters),
            "kernel_size": self.kernel_size,
            "strides": self.strides,
            "options": {k: _thaw(v) for k, v in self.options},
        }

    @classmethod
    def from_dict(cls, data):
        _check(
            isinstance(data, dict) and "kind" in data and "filters" in data,
            f"A unit needs at least 'kind' and 'filters'. Received: {data!r}",
        )
        return cls(
            kind=data["kind"],
            filters=_freeze(data["filters"]),
            kernel_size=data.get("kernel_size", 3),
            strides=data.get("strides", 1),
            options=dict(data.get("options", {})),
        )


@dataclasses.dataclass(frozen=True)
class Stage:
    """An ordered group of units, optionally followed by a pooling layer.

    Args:
        name: prefix of every Keras layer built from this stage (must be a
            valid, unique layer-name prefix such as `"stage1"` or `"stem"`).
        units: tuple of `Unit`.
        pool: `None`, `"max"` or `"avg"`: a pooling layer after the units.
        pool_size: pooling window. Defaults to 2.
        pool_strides: pooling stride. Defaults to `pool_size`.
        pool_padding: `"valid"` or `"same"`. Defaults to `"valid"`.
    """

    name: str
    units: tuple = ()
    pool: str | None = None
    pool_size: int = 2
    pool_strides: int | None = None
    pool_padding: str = "valid"

    def __post_init__(self):
        _check(
            isinstance(self.name, str)
            and self.name.isascii()
            and self.name.isalnum()
            and self.name[0].isalpha(),
            "Stage name must be letters and digits (no underscore), starting "
            "with a letter, such as 'stage1' or 'stem'. "
            f"Received: name={self.name!r}",
        )
        units = tuple(u if isinstance(u, Unit) else Unit.from_dict(u) for u in self.units)
        object.__setattr__(self, "units", units)
        _check(
            self.pool is None or self.pool in POOL_KINDS,
            f"Stage pool must be None or one of {POOL_KINDS}. "
            f"Received: pool={self.pool!r} (stage {self.name!r})",
        )
        _check(
            self.pool_padding in ("valid", "same"),
            f"pool_padding must be 'valid' or 'same'. Received: {self.pool_padding!r}",
        )
        _check(
            bool(units) or self.pool is not None,
            f"Stage {self.name!r} has neither units nor a pool.",
        )

    @property
    def downsampling(self):
        """Total downsampling factor of this stage."""
        factor = 1
        for unit in self.units:
            factor *= unit.strides
        if self.pool is not None:
            factor *= self.pool_strides or self.pool_size
        return factor

    def to_dict(self):
        data = {"name": self.name, "units": [u.to_dict() for u in self.units]}
        if self.pool is not None:
            data.update(
                pool=self.pool,
                pool_size=self.pool_size,
                pool_strides=self.pool_strides,
                pool_padding=self.pool_padding,
            )
        return data

    @classmethod
    def from_dict(cls, data):
        _check(
            isinstance(data, dict) and "name" in data,
            f"A stage needs a 'name'. Received: {data!r}",
        )
        return cls(
            name=data["name"],
            units=tuple(Unit.from_dict(u) for u in data.get("units", [])),
            pool=data.get("pool"),
            pool_size=data.get("pool_size", 2),
            pool_strides=data.get("pool_strides"),
            pool_padding=data.get("pool_padding", "valid"),
        )


@dataclasses.dataclass(frozen=True)
class Head:
    """The classifier after the last stage.

    Args:
        kind: one of `HEAD_KINDS`. Defaults to `"gap_dense"`.
        dropout: dropout rate for heads that have one. Defaults to 0.
    """

    kind: str = "gap_dense"
    dropout: float = 0.0

    def __post_init__(self):
        _check(
            self.kind in HEAD_KINDS,
            f"Unknown head kind. Expected one of {sorted(HEAD_KINDS)}. "
            f"Received: kind={self.kind!r}",
        )
        _check(
            0.0 <= self.dropout < 1.0,
            f"Head dropout must be in [0, 1). Received: dropout={self.dropout!r}",
        )

    def to_dict(self):
        return {"kind": self.kind, "dropout": self.dropout}

    @classmethod
    def from_dict(cls, data):
        return cls(kind=data.get("kind", "gap_dense"), dropout=data.get("dropout", 0.0))


@dataclasses.dataclass(frozen=True)
class ArchSpec:
    """A whole network: stages then head.

    Args:
        name: model name (the Keras model's name by default).
        family: `"vgg"`, `"resnet"`, `"inception"`, `"mobilenet"`, `"compact"`
            or any user string.
        stages: tuple of `Stage`.
        head: a `Head`.
        batch_norm_momentum: momentum of every BatchNormalization.
        batch_norm_epsilon: epsilon of every BatchNormalization.
    """

    name: str
    family: str
    stages: tuple
    head: Head = Head()
    batch_norm_momentum: float = 0.9
    batch_norm_epsilon: float = 1e-5

    def __post_init__(self):
        stages = tuple(s if isinstance(s, Stage) else Stage.from_dict(s) for s in self.stages)
        object.__setattr__(self, "stages", stages)
        _check(
            bool(stages),
            f"An ArchSpec needs at least one stage. Received: stages={self.stages!r}",
        )
        names = [s.name for s in stages]
        _check(
            len(set(names)) == len(names) and "head" not in names,
            f"Stage names must be unique and not 'head'. Received: {names}",
        )
        _check(
            any(s.units for s in stages),
            "An ArchSpec needs at least one unit (a convolution). "
            f"Received stages with no units: {names}",
        )

    # ----------------------------------------------------------------- views
    def units(self):
        """Returns `[(stage_index, unit_index, unit), ...]` in network order."""
        return [
            (si, ui, unit)
            for si, stage in enumerate(self.stages)
            for ui, unit in enumerate(stage.units)
        ]

    def templated_units(self):
        """The `(stage_index, unit_index, unit)` that templates redistribute."""
        return [item for item in self.units() if item[2].templated]

    def filters(self):
        """Per-layer (per-block) filters that templates act on, in order."""
        return [unit.width for _, _, unit in self.templated_units()]

    def with_filters(self, filters):
        """Returns a copy whose templated units have the given widths.

        Args:
            filters: one positive integer per templated unit (see `filters()`).
        """
        items = self.templated_units()
        filters = list(filters)
        if len(filters) != len(items):
            raise ValueError(
                f"Expected {len(items)} filter values for {self.name!r} (one per "
                f"templated layer or block). Received {len(filters)}: filters={filters}"
            )
        for f in filters:
            if not isinstance(f, int) or isinstance(f, bool) or f < 1:
                raise ValueError(
                    f"Every filter count must be a positive integer. Received: filters={filters}"
                )
        stages = [list(s.units) for s in self.stages]
        for (si, ui, unit), width in zip(items, filters):
            stages[si][ui] = unit.with_width(width)
        return dataclasses.replace(
            self,
            stages=tuple(
                dataclasses.replace(s, units=tuple(u)) for s, u in zip(self.stages, stages)
            ),
        )

    def stage_depths(self):
        """Number of units per stage."""
        return tuple(len(s.units) for s in self.stages)

    def body_stage_indices(self):
        """Indices of the stages that `with_depths` resizes (not the stems)."""
        return [i for i, s in enumerate(self.stages) if not s.name.startswith("stem")]

    def with_depths(self, depths):
        """Returns a copy with `depths[k]` units in the k-th body stage.

        Body stages are the stages whose name does not start with "stem". A
        stage that grows repeats its last unit that is not a transition
        (with stride 1, after that unit); a stage that shrinks keeps its first
        units, so the downsampling unit stays.

        Args:
            depths: one integer >= 1 per body stage.

        Example:

        >>> from kerascnn.zoo import resnet
        >>> resnet.resnet_spec("resnet50").with_depths((5, 5, 4, 2)).stage_depths()
        (1, 5, 5, 4, 2)
        """
        body = self.body_stage_indices()
        if isinstance(depths, (str, bytes)) or not hasattr(depths, "__len__"):
            raise ValueError(
                f"stages must be a sequence of {len(body)} positive integers "
                f"(units per stage). Received: stages={depths!r}"
            )
        depths = list(depths)
        if len(depths) != len(body) or any(
            isinstance(d, bool) or not isinstance(d, int) or d < 1 for d in depths
        ):
            raise ValueError(
                f"stages must be {len(body)} positive integers for {self.name!r} "
                f"(units per stage; current {[len(self.stages[i].units) for i in body]}). "
                f"Received: stages={tuple(depths)!r}"
            )
        stages = list(self.stages)
        for index, depth in zip(body, depths):
            stage = stages[index]
            units = list(stage.units)
            if not units:
                raise ValueError(f"Stage {stage.name!r} of {self.name!r} has no units to repeat.")
            if depth <= len(units):
                units = units[:depth]
            else:
                candidates = [i for i, u in enumerate(units) if u.option("role") != "transition"]
                at = candidates[-1] if candidates else len(units) - 1
                repeat = dataclasses.replace(units[at], strides=1)
                units[at + 1 : at + 1] = [repeat] * (depth - len(units))
            stages[index] = dataclasses.replace(stage, units=tuple(units))
        return dataclasses.replace(self, stages=tuple(stages))

    @property
    def downsampling(self):
        """Total downsampling factor from input to the head."""
        factor = 1
        for stage in self.stages:
            factor *= stage.downsampling
        return factor

    # ------------------------------------------------------------- JSON
    def to_dict(self):
        return {
            "name": self.name,
            "family": self.family,
            "stages": [s.to_dict() for s in self.stages],
            "head": self.head.to_dict(),
            "batch_norm_momentum": self.batch_norm_momentum,
            "batch_norm_epsilon": self.batch_norm_epsilon,
        }

    @classmethod
    def from_dict(cls, data):
        _check(
            isinstance(data, dict) and "stages" in data,
            f"An ArchSpec dict needs 'stages'. Received keys: "
            f"{sorted(data) if isinstance(data, dict) else type(data).__name__}",
        )
        return cls(
            name=data.get("name", "model"),
            family=data.get("family", "custom"),
            stages=tuple(Stage.from_dict(s) for s in data["stages"]),
            head=Head.from_dict(data.get("head", {})),
            batch_norm_momentum=data.get("batch_norm_momentum", 0.9),
            batch_norm_epsilon=data.get("batch_norm_epsilon", 1e-5),
        )

    def to_json(self, indent=None):
        """Serialises the spec to a JSON string."""
        return json.dumps(self.to_dict(), indent=indent)

    @classmethod
    def from_json(cls, text):
        """Parses a spec from a JSON string made by `to_json`."""
        return cls.from_dict(json.loads(text))
