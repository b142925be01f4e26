"""Training: the main job (`kerascnn train`), its recipe (optimizer, loss, strategy), SAM and schedules."""
