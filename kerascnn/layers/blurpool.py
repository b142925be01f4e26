"""BlurPool layers: anti-aliased downsampling (Zhang, ICML 2019).

"Making convolutional networks shift-invariant again".

Three layers, the Keras counterparts of MosaicML Composer's
`composer/algorithms/blurpool/blurpool_layers.py` (`BlurPool2d`, `BlurMaxPool2d`,
`BlurConv2d`), which the efficient-CNN paper used:

- `BlurPool2D`: the fixed low-pass filter `[1, 2, 1] x [1, 2, 1] / 16` applied
  depthwise (each channel separately) with zero padding of 1 pixel on every
  side, then subsampled by `strides`.
- `BlurMaxPool2D`: a drop-in replacement for `keras.layers.MaxPooling2D`: the max
  is taken densely (stride 1), then blurred and subsampled by the pool's stride.
- `BlurConv2D`: a `keras.layers.Conv2D` (same weights, same parameter count) that
  blurs its input before a strided convolution (`blur_first=True`, Composer's
  default and the cheap variant) or convolves at stride 1 and then blurs and
  subsamples (`blur_first=False`, the paper's variant, about `stride**2` times
  the convolution cost).

The output shapes are those of the layer each one replaces, for "valid" and
"same" padding alike, so they can be swapped into an existing architecture.
"""

import keras
import numpy as np
from keras import ops

#: The 1-D binomial filter; its outer product with itself is the 2-D filter.
BLUR_FILTER_1D = (1.0, 2.0, 1.0)


def blur_kernel(channels, dtype="float32"):
    """The depthwise kernel `(3, 3, channels, 1)` of the `[1,2,1]x[1,2,1]/16` filter."""
    f = np.asarray(BLUR_FILTER_1D, dtype="float64")
    f2d = np.outer(f, f)
    f2d /= f2d.sum()
    kernel = np.tile(f2d[:, :, None, None], (1, 1, channels, 1))
    return ops.convert_to_tensor(kernel, dtype=dtype)


def _normalize_pair(value, name):
    if isinstance(value, int) and not isinstance(value, bool):
        value = (value, value)
    if (
        not isinstance(value, (tuple, list))
        or len(value) != 2
        or any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in value)
    ):
        raise ValueError(
            f"{name} must be a positive integer or a tuple of two positive integers. "
            f"Received: {name}={value!r}"
        )
    return tuple(value)


def _check_data_format(data_format):
    if data_format is None:
        data_format = keras.config.image_data_format()
    if data_format not in ("channels_last", "channels_first"):
        raise ValueError(
            "data_format must be 'channels_last' or 'channels_first'. "
            f"Received: data_format={data_format!r}"
        )
    return data_format


def blur_2d(x, strides=1, data_format="channels_last"):
    """Blurs `x` (NHWC or NCHW) with the binomial filter, zero padding 1, then subsamples.

    Args:
        x: a 4-D tensor.
        strides: int or tuple of two ints. Defaults to 1.
        data_format: `"channels_last"` or `"channels_first"`.

    Returns:
        The blurred tensor; its spatial size is `floor((size - 1) / stride) + 1`.
    """
    strides = _normalize_pair(strides, "strides")
    if data_format == "channels_last":
        channels = x.shape[-1]
        pad = [[0, 0], [1, 1], [1, 1], [0, 0]]
    else:
        channels = x.shape[1]
        pad = [[0, 0], [0, 0], [1, 1], [1, 1]]
    x = ops.pad(x, pad)
    return ops.depthwise_conv(
        x,
        blur_kernel(channels, dtype=x.dtype),
        strides=strides,
        padding="valid",
        data_format=data_format,
    )


def _blur_output_size(size, stride):
    if size is None:
        return None
    return (size - 1) // stride + 1


@keras.saving.register_keras_serializable(package="kerascnn")
class BlurPool2D(keras.layers.Layer):
    """Low-pass filters then subsamples each channel (anti-aliased downsampling).

    The filter is `[1, 2, 1] x [1, 2, 1] / 16`, applied depthwise with one
    pixel of zero padding (Composer's `blur_2d`); it has no weights.

    Args:
        strides: subsampling factor, an int or a tuple of two. Defaults to 2.
        data_format: `"channels_last"` or `"channels_first"`. Defaults to the
            Keras config value.
        **kwargs: base `Layer` arguments (`name`, `dtype`...).

    Example:

    >>> import numpy as np
    >>> BlurPool2D()(np.ones((1, 8, 8, 3), "float32")).shape
    (1, 4, 4, 3)
    """

    def __init__(self, strides=2, data_format=None, **kwargs):
        super().__init__(**kwargs)
        self.strides = _normalize_pair(strides, "strides")
        self.data_format = _check_data_format(data_format)
        self.input_spec = keras.layers.InputSpec(ndim=4)

    def call(self, inputs):
        return blur_2d(inputs, self.strides, self.data_format)

    def compute_output_shape(self, input_shape):
        shape = list(input_shape)
        axes = (1, 2) if self.data_format == "channels_last" else (2, 3)
        for axis, stride in zip(axes, self.strides):
            shape[axis] = _blur_output_size(shape[axis], stride)
        return tuple(shape)

    def get_config(self):
        config = super().get_config()
        config.update({"strides": self.strides, "data_format": self.data_format})
        return config


@keras.saving.register_keras_serializable(package="kerascnn")
class BlurMaxPool2D(keras.layers.Layer):
    """Max-pooling with anti-aliasing: dense max (stride 1), blur, then subsample.

    A drop-in replacement for `keras.layers.MaxPooling2D` with the same output
    shape (Composer's `BlurMaxPool2d`).

    Args:
        pool_size: window of the max, int or tuple of two. Defaults to 2.
        strides: subsampling factor; None means `pool_size`. Defaults to None.
        padding: `"valid"` or `"same"` (of the max). Defaults to `"valid"`.
        data_format: `"channels_last"` or `"channels_first"`. Defaults to the
            Keras config value.
        **kwargs: base `Layer` arguments.

    Example:

    >>> import numpy as np
    >>> BlurMaxPool2D(2)(np.ones((1, 7, 7, 3), "float32")).shape
    (1, 3, 3, 3)
    """

    def __init__(self, pool_size=2, strides=None, padding="valid", data_format=None, **kwargs):
        super().__init__(**kwargs)
        self.pool_size = _normalize_pair(pool_size, "pool_size")
        self.strides = _normalize_pair(self.pool_size if strides is None else strides, "strides")
        if padding not in ("valid", "same"):
            raise ValueError(f"padding must be 'valid' or 'same'. Received: padding={padding!r}")
        self.padding = padding
        self.data_format = _check_data_format(data_format)
        self.input_spec = keras.layers.InputSpec(ndim=4)

    def call(self, inputs):
        x = ops.max_pool(
            inputs,
            pool_size=self.pool_size,
            strides=1,
            padding=self.padding,
            data_format=self.data_format,
        )
        return blur_2d(x, self.strides, self.data_format)

    def compute_output_shape(self, input_shape):
        shape = list(input_shape)
        axes = (1, 2) if self.data_format == "channels_last" else (2, 3)
        for axis, window, stride in zip(axes, self.pool_size, self.strides):
            size = shape[axis]
            if size is not None and self.padding == "valid":
                size = size - window + 1
            shape[axis] = _blur_output_size(size, stride)
        return tuple(shape)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "pool_size": self.pool_size,
                "strides": self.strides,
                "padding": self.padding,
                "data_format": self.data_format,
            }
        )
        return config


@keras.saving.register_keras_serializable(package="kerascnn")
class BlurConv2D(keras.layers.Conv2D):
    """A `Conv2D` with an anti-aliasing blur around its stride (Composer's `BlurConv2d`).

    Takes every `keras.layers.Conv2D` argument, with the same weights (so the
    same parameter count and weight layout: weights of a `Conv2D` load into it).

    Args:
        *args: `keras.layers.Conv2D` arguments (`filters`, `kernel_size`, ...).
        blur_first: True (default, Composer's default): blur the input at
            stride 1, then apply the strided convolution; costs one depthwise
            3x3 pass. False: convolve at stride 1, then blur and subsample,
            which matches Zhang (2019) but costs about `stride**2` times the
            convolution.
        **kwargs: `keras.layers.Conv2D` keyword arguments.

    Example:

    >>> import numpy as np
    >>> layer = BlurConv2D(8, 3, strides=2, padding="same")
    >>> layer(np.ones((1, 8, 8, 16), "float32")).shape
    (1, 4, 4, 8)
    """

    def __init__(self, *args, blur_first=True, **kwargs):
        super().__init__(*args, **kwargs)
        if not isinstance(blur_first, bool):
            raise TypeError(f"blur_first must be a bool. Received: blur_first={blur_first!r}")
        self.blur_first = blur_first

    def call(self, inputs):
        if self.blur_first:
            return super().call(blur_2d(inputs, 1, self.data_format))
        outputs = ops.conv(
            inputs,
            self.kernel,
            strides=1,
            padding=self.padding,
            dilation_rate=self.dilation_rate,
            data_format=self.data_format,
        )
        if self.use_bias:
            if self.data_format == "channels_last":
                bias = ops.reshape(self.bias, (1, 1, 1, self.filters))
            else:
                bias = ops.reshape(self.bias, (1, self.filters, 1, 1))
            outputs = ops.add(outputs, bias)
        outputs = blur_2d(outputs, self.strides, self.data_format)
        if self.activation is not None:
            outputs = self.activation(outputs)
        return outputs

    def get_config(self):
        config = super().get_config()
        config["blur_first"] = self.blur_first
        return config
