"""Cutout (DeVries & Taylor, 2017): one random square masked out of each training image.

The efficient-CNN paper masks a 10x10 square. As in the original code and in
MosaicML Composer's `CutOut`, the square's centre is uniform over the whole
image and the square is clipped at the borders (so near an edge less than
`size x size` pixels are masked). Keras' `RandomErasing` draws boxes by area
fraction and aspect ratio instead, hence this layer.
"""

import keras

from kerascnn import _checks
from kerascnn._keras_compat import BaseImagePreprocessingLayer


@keras.saving.register_keras_serializable(package="kerascnn")
class Cutout(BaseImagePreprocessingLayer):
    """Masks a random `size`-square of every image in training; identity in inference.

    Works inside a model (active only when `training=True`, i.e. in `fit`) and
    in a `tf.data` pipeline (`dataset.map(lambda x, y: (Cutout()(x), y))`,
    where it is active because preprocessing layers default to
    `training=True`), on a batch `(N, H, W, C)` or a single image `(H, W, C)`,
    with any backend.

    Args:
        size: side of the square, an int or `(height, width)`. Defaults to 10
            (the paper's 10x10 mask).
        fill_value: value written in the square. Defaults to 0.
        seed: optional int seed.
        data_format: `"channels_last"` or `"channels_first"`. Defaults to the
            Keras config value.
        **kwargs: base layer arguments.

    Example:

    >>> import numpy as np
    >>> images = np.ones((2, 32, 32, 3), "float32")
    >>> out = Cutout(10, seed=1)(images, training=True)
    >>> bool((np.asarray(out) == 0).any())
    True
    """

    _USE_BASE_FACTOR = False

    def __init__(self, size=10, fill_value=0.0, seed=None, data_format=None, **kwargs):
        super().__init__(data_format=data_format, **kwargs)
        if isinstance(size, int) and not isinstance(size, bool):
            size = (size, size)
        if (
            not isinstance(size, (tuple, list))
            or len(size) != 2
            or any(isinstance(s, bool) or not isinstance(s, int) or s < 1 for s in size)
        ):
            raise ValueError(
                "size must be a positive integer or a tuple of two positive integers. "
                f"Received: size={size!r}"
            )
        if isinstance(fill_value, bool) or not isinstance(fill_value, (int, float)):
            raise TypeError(f"fill_value must be a number. Received: fill_value={fill_value!r}")
        _checks.check_number(fill_value, "fill_value")
        _checks.check_non_negative_int(seed, "seed", allow_none=True)
        self.size = tuple(size)
        self.fill_value = float(fill_value)
        self.seed = seed
        self.generator = keras.random.SeedGenerator(seed)
        if self.data_format == "channels_first":
            self.height_axis, self.width_axis = -2, -1
        else:
            self.height_axis, self.width_axis = -3, -2

    def get_random_transformation(self, data, training=True, seed=None):
        if not training:
            return None
        images = data["images"] if isinstance(data, dict) else data
        shape = self.backend.shape(images)
        batch_size = 1 if len(shape) == 3 else shape[0]
        height, width = shape[self.height_axis], shape[self.width_axis]
        seed = seed or self._get_seed_generator(self.backend._backend)
        # Centres uniform over the pixels (floor of a uniform in [0, size)).
        unit = self.backend.random.uniform((batch_size, 2), 0.0, 1.0, seed=seed)
        cy = self.backend.numpy.floor(unit[:, 0] * self.backend.cast(height, "float32"))
        cx = self.backend.numpy.floor(unit[:, 1] * self.backend.cast(width, "float32"))
        return {"center_y": cy, "center_x": cx}

    def _mask(self, shape, transformation):
        # True inside the square: rows [cy - h//2, cy + h - h//2), same for columns.
        h, w = self.size
        height, width = shape[self.height_axis], shape[self.width_axis]
        rows = self.backend.cast(self.backend.numpy.arange(height), "float32")
        cols = self.backend.cast(self.backend.numpy.arange(width), "float32")
        cy = transformation["center_y"][:, None]
        cx = transformation["center_x"][:, None]
        in_rows = (rows[None, :] >= cy - h // 2) & (rows[None, :] < cy + (h - h // 2))
        in_cols = (cols[None, :] >= cx - w // 2) & (cols[None, :] < cx + (w - w // 2))
        mask = in_rows[:, :, None] & in_cols[:, None, :]  # (N, H, W)
        if self.data_format == "channels_last":
            return mask[:, :, :, None]
        return mask[:, None, :, :]

    def transform_images(self, images, transformation=None, training=True):
        images = self.backend.cast(images, self.compute_dtype)
        if not training or transformation is None:
            return images
        mask = self._mask(self.backend.shape(images), transformation)
        fill = self.backend.cast(self.fill_value, self.compute_dtype)
        return self.backend.numpy.where(mask, fill, images)

    def transform_labels(self, labels, transformation, training=True):
        return labels

    def transform_bounding_boxes(self, bounding_boxes, transformation, training=True):
        return bounding_boxes

    def transform_segmentation_masks(self, segmentation_masks, transformation, training=True):
        return segmentation_masks

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update({"size": self.size, "fill_value": self.fill_value, "seed": self.seed})
        return config
