"""Squeeze-and-excitation (Hu et al., 2018), as MosaicML Composer implements it.

Composer's `SqueezeExcite2d` (`composer/algorithms/squeeze_excite/squeeze_excite.py`),
which the efficient-CNN paper used: global average pooling, a bias-free dense
layer to `latent_channels` units, ReLU, a bias-free dense layer back to the
channel count, sigmoid, and the input rescaled channel by channel.
"""

import keras
from keras import ops

from kerascnn import _checks
from kerascnn.layers.blurpool import _check_data_format


@keras.saving.register_keras_serializable(package="kerascnn")
class SqueezeExcite(keras.layers.Layer):
    """Rescales each channel by a gate computed from the globally pooled input.

    Args:
        latent_channels: width of the hidden layer: an int >= 1, or a float in
            (0, 1) read as a fraction of the input channels (at least 1 unit).
            Defaults to 64 (Composer's default).
        use_bias: add biases to both dense layers (Hu et al. do; Composer does
            not). Defaults to False.
        data_format: `"channels_last"` or `"channels_first"`. Defaults to the
            Keras config value.
        kernel_initializer: initializer of both kernels. Defaults to
            `"glorot_uniform"`.
        **kwargs: base `Layer` arguments.

    Example:

    >>> import numpy as np
    >>> SqueezeExcite(latent_channels=4)(np.ones((2, 5, 5, 16), "float32")).shape
    (2, 5, 5, 16)
    """

    def __init__(
        self,
        latent_channels=64,
        use_bias=False,
        data_format=None,
        kernel_initializer="glorot_uniform",
        **kwargs,
    ):
        super().__init__(**kwargs)
        valid = not isinstance(latent_channels, bool) and (
            (isinstance(latent_channels, int) and latent_channels >= 1)
            or (
                isinstance(latent_channels, float)
                and (0 < latent_channels < 1 or float(latent_channels).is_integer())
                and latent_channels > 0
            )
        )
        if not valid:
            raise ValueError(
                "latent_channels must be an int >= 1 or a float in (0, 1). "
                f"Received: latent_channels={latent_channels!r}"
            )
        self.latent_channels = latent_channels
        self.use_bias = _checks.check_bool(use_bias, "use_bias")
        self.data_format = _check_data_format(data_format)
        self.kernel_initializer = _checks.check_keras_object(
            keras.initializers.get, kernel_initializer, "kernel_initializer", "a Keras initializer"
        )
        self.input_spec = keras.layers.InputSpec(ndim=4)

    def latent_units(self, channels):
        """Hidden width for `channels` input channels (Composer's rule)."""
        if self.latent_channels >= 1:
            return int(self.latent_channels)
        return max(1, int(self.latent_channels * channels))

    def build(self, input_shape):
        axis = -1 if self.data_format == "channels_last" else 1
        channels = input_shape[axis]
        if channels is None:
            raise ValueError(
                "SqueezeExcite needs a known channel dimension. "
                f"Received: input_shape={input_shape}"
            )
        latent = self.latent_units(channels)
        self.squeeze_kernel = self.add_weight(
            name="squeeze_kernel", shape=(channels, latent), initializer=self.kernel_initializer
        )
        self.excite_kernel = self.add_weight(
            name="excite_kernel", shape=(latent, channels), initializer=self.kernel_initializer
        )
        if self.use_bias:
            self.squeeze_bias = self.add_weight(
                name="squeeze_bias", shape=(latent,), initializer="zeros"
            )
            self.excite_bias = self.add_weight(
                name="excite_bias", shape=(channels,), initializer="zeros"
            )
        self.input_spec = keras.layers.InputSpec(ndim=4, axes={axis: channels})

    def call(self, inputs):
        spatial = (1, 2) if self.data_format == "channels_last" else (2, 3)
        pooled = ops.mean(inputs, axis=spatial)
        hidden = ops.matmul(pooled, self.squeeze_kernel)
        if self.use_bias:
            hidden = hidden + self.squeeze_bias
        hidden = ops.relu(hidden)
        gate = ops.matmul(hidden, self.excite_kernel)
        if self.use_bias:
            gate = gate + self.excite_bias
        gate = ops.sigmoid(gate)
        if self.data_format == "channels_last":
            gate = gate[:, None, None, :]
        else:
            gate = gate[:, :, None, None]
        return inputs * ops.cast(gate, inputs.dtype)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "latent_channels": self.latent_channels,
                "use_bias": self.use_bias,
                "data_format": self.data_format,
                "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
            }
        )
        return config
