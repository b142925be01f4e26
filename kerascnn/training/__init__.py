"""Training: the main job (`kerascnn train`), its recipe, SAM and schedules."""
