"""Tests of kerascnn.layers.blurpool (BlurPool2D, BlurMaxPool2D, BlurConv2D)."""

import os

import keras
import numpy as np
import pytest
from harness import TestCase

from kerascnn import zoo
from kerascnn.builder.model import build_model
from kerascnn.layers.blurpool import BlurConv2D, BlurMaxPool2D, BlurPool2D


def _numpy_blur(x, stride):
    """Direct convolution with [1,2,1]x[1,2,1]/16, zero padding 1, then subsampling."""
    f = np.outer([1.0, 2.0, 1.0], [1.0, 2.0, 1.0]) / 16.0
    n, h, w, c = x.shape
    padded = np.zeros((n, h + 2, w + 2, c))
    padded[:, 1:-1, 1:-1, :] = x
    out = np.zeros((n, h, w, c))
    for i in range(h):
        for j in range(w):
            patch = padded[:, i : i + 3, j : j + 3, :]
            out[:, i, j, :] = np.einsum("nijc,ij->nc", patch, f)
    return out[:, ::stride, ::stride, :]


def _numpy_max(x, k):
    n, h, w, c = x.shape
    out = np.zeros((n, h - k + 1, w - k + 1, c))
    for i in range(h - k + 1):
        for j in range(w - k + 1):
            out[:, i, j, :] = x[:, i : i + k, j : j + k, :].max(axis=(1, 2))
    return out


class BlurPoolTest(TestCase):
    def test_blurpool2d_layer(self):
        self.run_layer_test(
            BlurPool2D,
            init_kwargs={"strides": 2},
            input_shape=(2, 8, 8, 3),
            expected_output_shape=(2, 4, 4, 3),
            expected_num_trainable_weights=0,
            expected_num_non_trainable_weights=0,
            run_training_check=False,  # no weights to train
        )

    def test_blurmaxpool2d_layer(self):
        self.run_layer_test(
            BlurMaxPool2D,
            init_kwargs={"pool_size": 2},
            input_shape=(2, 7, 7, 3),
            expected_output_shape=(2, 3, 3, 3),
            expected_num_trainable_weights=0,
            run_training_check=False,
        )

    def test_blurconv2d_layer_trains(self):
        for blur_first in (True, False):
            self.run_layer_test(
                BlurConv2D,
                init_kwargs={
                    "filters": 4,
                    "kernel_size": 3,
                    "strides": 2,
                    "padding": "same",
                    "blur_first": blur_first,
                },
                input_shape=(2, 8, 8, 3),
                expected_output_shape=(2, 4, 4, 4),
                expected_num_trainable_weights=2,
            )

    def test_blur_matches_numpy_convolution(self):
        rng = np.random.default_rng(0)
        x = rng.normal(size=(2, 9, 8, 3)).astype("float32")
        for stride in (1, 2):
            out = keras.ops.convert_to_numpy(BlurPool2D(stride)(x))
            self.assertAllClose(out, _numpy_blur(x.astype("float64"), stride), atol=1e-5)

    def test_blurmaxpool_matches_numpy(self):
        rng = np.random.default_rng(1)
        x = rng.normal(size=(1, 8, 8, 2)).astype("float32")
        out = keras.ops.convert_to_numpy(BlurMaxPool2D(2)(x))
        expected = _numpy_blur(_numpy_max(x.astype("float64"), 2), 2)
        self.assertEqual(out.shape, keras.layers.MaxPooling2D(2)(x).shape)
        self.assertAllClose(out, expected, atol=1e-5)

    def test_blurconv_matches_conv_of_blur(self):
        rng = np.random.default_rng(2)
        x = rng.normal(size=(1, 8, 8, 2)).astype("float32")
        layer = BlurConv2D(3, 3, strides=2, padding="same")
        y = keras.ops.convert_to_numpy(layer(x))
        plain = keras.layers.Conv2D(3, 3, strides=2, padding="same")
        plain.build(x.shape)
        plain.set_weights(layer.get_weights())
        expected = keras.ops.convert_to_numpy(plain(_numpy_blur(x, 1).astype("float32")))
        self.assertAllClose(y, expected, atol=1e-5)
        # blur_first=False: stride-1 convolution, then blur with stride 2.
        late = BlurConv2D(3, 3, strides=2, padding="same", blur_first=False)
        late.build(x.shape)
        late.set_weights(layer.get_weights())
        dense = keras.layers.Conv2D(3, 3, padding="same")
        dense.build(x.shape)
        dense.set_weights(layer.get_weights())
        full = keras.ops.convert_to_numpy(dense(x)).astype("float64")
        self.assertAllClose(keras.ops.convert_to_numpy(late(x)), _numpy_blur(full, 2), atol=1e-5)

    def test_shift_invariance_improves(self):
        # A one-pixel shift changes max-pool outputs far more than blur-max-pool ones.
        rng = np.random.default_rng(3)
        x = rng.normal(size=(4, 16, 16, 2)).astype("float32")
        shifted = np.roll(x, 1, axis=2)

        def change(layer):
            a = keras.ops.convert_to_numpy(layer(x))[:, 2:-2, 2:-2]
            b = keras.ops.convert_to_numpy(layer(shifted))[:, 2:-2, 2:-2]
            return float(np.abs(a - b).mean())

        self.assertLess(change(BlurMaxPool2D(2)), 0.8 * change(keras.layers.MaxPooling2D(2)))

    def test_bad_arguments(self):
        with pytest.raises(ValueError, match="strides"):
            BlurPool2D(strides=0)
        with pytest.raises(ValueError, match="padding"):
            BlurMaxPool2D(padding="full")
        with pytest.raises(TypeError, match="blur_first"):
            BlurConv2D(4, 3, blur_first="yes")

    def test_builder_blurpool_flags_and_save(self):
        spec = zoo.get_spec("compact_mnist_1k5_dw")
        plain = build_model(spec, input_shape=(16, 16, 1), classes=10)
        model = build_model(spec, input_shape=(16, 16, 1), classes=10, blurpool=True)
        # Composer replaces every max-pool (whatever its channels); no parameters added.
        self.assertIsInstance(model.get_layer("stage1_pool"), BlurMaxPool2D)
        self.assertIsInstance(model.get_layer("stage2_pool"), BlurMaxPool2D)
        self.assertEqual(model.count_params(), plain.count_params())
        path = os.path.join(self.get_temp_dir(), "bp.keras")
        model.save(path)
        loaded = keras.models.load_model(path)
        x = np.random.default_rng(0).normal(size=(2, 16, 16, 1)).astype("float32")
        self.assertAllClose(loaded.predict(x, verbose=0), model.predict(x, verbose=0))

    def test_builder_strided_conv_threshold(self):
        # ResNet-18 (cifar), width 0.25: stage2 has 16 input channels, so its strided
        # convs are blurred with min_channels=16 and not with min_channels=17.
        spec = zoo.get_spec("resnet18", width_multiplier=0.25)
        model = build_model(spec, input_shape=(32, 32, 3), classes=10, blurpool=True)
        self.assertEqual(model.get_layer("stage2_block1_1_conv").input.shape[-1], 16)
        self.assertIsInstance(model.get_layer("stage2_block1_1_conv"), BlurConv2D)
        self.assertIsInstance(model.get_layer("stage2_block1_0_conv"), BlurConv2D)
        self.assertNotIsInstance(model.get_layer("stage2_block2_1_conv"), BlurConv2D)
        model = build_model(
            spec, input_shape=(32, 32, 3), classes=10, blurpool=True, blurpool_min_channels=17
        )
        self.assertNotIsInstance(model.get_layer("stage2_block1_1_conv"), BlurConv2D)
        with pytest.raises(TypeError, match="blurpool"):
            build_model(spec, input_shape=(32, 32, 3), blurpool="yes")
