"""Spec -> `keras.Model`: the last step of kerascnn's flow (layer names are deterministic).

`model.py` holds `build_model` and its argument checks, `blocks.py` the Keras
blocks of every unit kind. The spec-only helpers re-exported here live in
`kerascnn.arch.naming` and `kerascnn.arch.geometry`.
"""

from kerascnn.arch.geometry import (  # noqa: F401
    estimate_cost,
    minimum_input_size,
    spatial_trace,
)
from kerascnn.arch.naming import stage_output_names, unit_output_name, unit_prefix  # noqa: F401
from kerascnn.builder.model import build_model  # noqa: F401
