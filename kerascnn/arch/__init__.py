"""Architectures as data, no Keras: `ArchSpec` (stages of units) and its helpers.

- `spec.py`: `ArchSpec`, `Stage`, `Unit`, `Head` (JSON round trip, depths, filters);
- `naming.py`: the deterministic layer names of units and stage outputs;
- `geometry.py`: spatial sizes, the smallest input, the analytic cost and size limits;
- `channels.py`: the channel windows of the group / rolling pointwise convolutions.

The first step of kerascnn's flow: arch -> transforms -> builder -> zoo ->
training/tuning -> observe.
"""

from kerascnn.arch.spec import ArchSpec, Head, Stage, Unit  # noqa: F401
