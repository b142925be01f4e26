"""Keras layers of kerascnn."""

from kerascnn.layers.blurpool import BlurConv2D, BlurMaxPool2D, BlurPool2D  # noqa: F401
from kerascnn.layers.cutout import Cutout  # noqa: F401
from kerascnn.layers.group_pointwise import GroupPointwiseConv2D  # noqa: F401
from kerascnn.layers.rolling_pointwise import RollingPointwiseConv2D  # noqa: F401
from kerascnn.layers.squeeze_excite import SqueezeExcite  # noqa: F401
