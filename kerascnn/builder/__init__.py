"""Spec -> `keras.Model`: the last step of kerascnn's flow (layer names are deterministic)."""

from kerascnn.builder.model import (  # noqa: F401
    build_model,
    estimate_cost,
    minimum_input_size,
    spatial_trace,
    stage_output_names,
    unit_output_name,
    unit_prefix,
)
