"""Observing models and runs: summaries (params, MACs, memory), plots, stability logs."""
