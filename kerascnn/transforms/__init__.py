"""Spec -> spec transforms, no Keras: filter templates, the 3D receptive field,
the stage organizer and the kernel decomposer.
"""
