"""The shared base of the factorized pointwise convolutions (GPW and RPW).

Group pointwise (ShuffleNet, Zhang et al., 2018) and rolling pointwise (Wang
et al., CIKM 2021, section 4.2) convolutions are 1x1 convolutions whose
filters read `C / groups` input channels each: they share their argument
checks, their kernel and bias, their output shape, their MAC count
(`compute_macs`) and the common part of their config.
"""

import keras
from keras import ops

from kerascnn import _checks


class FactorizedPointwiseConv2D(keras.layers.Layer):
    """Base of the 1x1 convolutions whose filters read `C / groups` channels.

    Args:
        filters: output channels.
        groups: every filter reads `C / groups` input channels; must divide `C`.
        use_bias: add a bias. Defaults to True.
        kernel_initializer: initializer of the kernel. Defaults to
            `"glorot_uniform"`.
        bias_initializer: defaults to `"zeros"`.
        kernel_regularizer: optional regularizer of the kernel.
        **kwargs: base `Layer` arguments (`name`, `dtype`, ...).

    Example:

    >>> class Plain(FactorizedPointwiseConv2D):
    ...     pass
    >>> Plain(8, groups=2).get_config()["groups"]
    2
    """

    def __init__(
        self,
        filters,
        groups,
        use_bias=True,
        kernel_initializer="glorot_uniform",
        bias_initializer="zeros",
        kernel_regularizer=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.filters = _checks.check_positive_int(filters, "filters")
        self.groups = _checks.check_positive_int(groups, "groups")
        self.use_bias = _checks.check_bool(use_bias, "use_bias")
        self.kernel_initializer = _checks.check_keras_object(
            keras.initializers.get, kernel_initializer, "kernel_initializer", "a Keras initializer"
        )
        self.bias_initializer = _checks.check_keras_object(
            keras.initializers.get, bias_initializer, "bias_initializer", "a Keras initializer"
        )
        self.kernel_regularizer = _checks.check_keras_object(
            keras.regularizers.get, kernel_regularizer, "kernel_regularizer", "a Keras regularizer"
        )
        self.input_spec = keras.layers.InputSpec(ndim=4)

    def _input_channels(self, input_shape):
        """The input channels, checked to be divisible by `groups`."""
        channels = input_shape[-1]
        if channels is None or channels % self.groups:
            raise ValueError(
                "groups must divide the input channels. Received: "
                f"groups={self.groups} for input_shape={tuple(input_shape)}"
            )
        return channels

    def _build_weights(self, kernel_shape, channels):
        """Adds the kernel (of `kernel_shape`) and the bias; fixes the input channels."""
        self.kernel = self.add_weight(
            name="kernel",
            shape=kernel_shape,
            initializer=self.kernel_initializer,
            regularizer=self.kernel_regularizer,
        )
        self.bias = (
            self.add_weight(name="bias", shape=(self.filters,), initializer=self.bias_initializer)
            if self.use_bias
            else None
        )
        self.input_spec = keras.layers.InputSpec(ndim=4, axes={-1: channels})

    def _to_rows(self, inputs):
        """`(batch, h, w, C)` -> `(batch * h * w, C)`, and the output shape to restore."""
        shape = ops.shape(inputs)
        rows = ops.reshape(inputs, (-1, inputs.shape[-1]))
        return rows, (shape[0], shape[1], shape[2], self.filters)

    def _finish(self, rows, out_shape):
        """`(pixels, filters)` rows -> `(batch, h, w, filters)`, plus the bias."""
        y = ops.reshape(rows, out_shape)
        if self.bias is not None:
            y = y + self.bias
        return y

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.filters,)

    def compute_macs(self, input_shape, output_shape):
        """Multiply-accumulates of one sample: `H * W * filters * C / groups`."""
        h, w = output_shape[-3], output_shape[-2]
        return int(h * w * self.filters * (input_shape[-1] // self.groups))

    def get_config(self):
        config = super().get_config()
        config.update(
            filters=self.filters,
            groups=self.groups,
            use_bias=self.use_bias,
            kernel_initializer=keras.initializers.serialize(self.kernel_initializer),
            bias_initializer=keras.initializers.serialize(self.bias_initializer),
            kernel_regularizer=keras.regularizers.serialize(self.kernel_regularizer),
        )
        return config
