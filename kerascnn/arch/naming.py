"""Deterministic layer names of a spec's units (no Keras).

Every layer of unit `i` (1-based) of stage `s` is named `"{s}_{label}{i}_{part}"`,
for example `stage2_block1_1_conv`, `stage2_block1_out`, `stage1_conv2_bn`,
`stage3_sep1_dw`; a stage's pooling layer is `"{s}_pool"`. The builder names
layers with these helpers, and the transforms and callbacks find them with the
same helpers.

Example:

>>> from kerascnn.zoo import vgg
>>> stage_output_names(vgg.vgg_spec("vgg11"))[0]
'stage1_pool'
"""

from __future__ import annotations

_LABELS = {
    "conv": "conv",
    "separable": "sep",
    "basic": "block",
    "bottleneck": "block",
    "inception": "mixed",
}


def unit_prefix(stage, index, unit):
    """Name prefix of the layers of `unit`, the `index`-th (0-based) of `stage`."""
    return f"{stage.name}_{_LABELS[unit.kind]}{index + 1}"


def unit_output_name(stage, index, unit):
    """Name of the last layer of a unit (its output tensor)."""
    prefix = unit_prefix(stage, index, unit)
    if unit.kind in ("basic", "bottleneck"):
        return f"{prefix}_out"
    if unit.kind == "inception":
        return f"{prefix}_concat"
    if unit.kind == "separable":
        prefix = f"{prefix}_pw"
    activation = unit.option("activation", "relu")
    if activation is not None:
        return f"{prefix}_{'relu' if activation == 'relu' else 'act'}"
    if unit.option("batch_norm", True):
        return f"{prefix}_bn"
    return f"{prefix}_conv"


def stage_output_names(spec):
    """Names of the layers whose outputs are the stage outputs of `spec`."""
    names = []
    for stage in spec.stages:
        if stage.pool is not None:
            names.append(f"{stage.name}_pool")
        else:
            index = len(stage.units) - 1
            names.append(unit_output_name(stage, index, stage.units[index]))
    return names
