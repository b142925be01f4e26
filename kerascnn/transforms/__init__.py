"""Spec -> spec transforms, no Keras: filter templates, the 3D receptive field,
the stage organizer and the kernel decomposer.

`kerascnn.transforms.pipeline.transform` applies them in the one documented
order (stages -> organizer -> template -> width multiplier -> kernel
decomposer) for the zoo, `kerascnn train`, the tuner and `kerascnn optimize`.
"""
