"""keras-tuner search spaces over the zoo, templates, layouts and kernels (`kerascnn tune`)."""
