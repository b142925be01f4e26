"""Tests of kerascnn.layers.cutout.Cutout."""

import os

import keras
import numpy as np
import pytest
import tensorflow as tf
from harness import TestCase

from kerascnn.layers.cutout import Cutout


class CutoutTest(TestCase):
    def test_layer(self):
        self.run_layer_test(
            Cutout,
            init_kwargs={"size": 4, "seed": 1},
            input_shape=(2, 12, 12, 3),
            expected_output_shape=(2, 12, 12, 3),
            expected_num_trainable_weights=0,
            expected_num_seed_generators=1,
            supports_masking=False,
            run_training_check=False,
        )

    def test_one_square_per_image(self):
        images = np.ones((64, 32, 32, 3), "float32")
        out = keras.ops.convert_to_numpy(Cutout(10, seed=3)(images, training=True))
        zero = out[..., 0] == 0
        # All channels masked alike; each mask is one clipped square of side <= 10.
        self.assertTrue(np.array_equal(out[..., 0], out[..., 2]))
        for mask in zero:
            rows, cols = np.where(mask.any(axis=1))[0], np.where(mask.any(axis=0))[0]
            self.assertTrue(1 <= len(rows) <= 10 and 1 <= len(cols) <= 10)
            self.assertEqual(mask.sum(), len(rows) * len(cols))
        # Centres uniform over the image: most squares are complete 10x10 ones.
        self.assertGreater(np.mean(zero.sum(axis=(1, 2)) == 100), 0.4)
        self.assertEqual(int(zero.sum(axis=(1, 2)).max()), 100)

    def test_identity_in_inference(self):
        images = np.random.default_rng(0).uniform(size=(4, 16, 16, 1)).astype("float32")
        out = Cutout(10)(images, training=False)
        self.assertAllClose(keras.ops.convert_to_numpy(out), images)
        inputs = keras.Input((16, 16, 1))
        model = keras.Model(inputs, Cutout(10)(inputs))
        self.assertAllClose(model.predict(images, verbose=0), images)

    def test_tf_data_and_single_images(self):
        images = np.full((6, 16, 16, 1), 200, "uint8")
        layer = Cutout(6, fill_value=0)
        batched = tf.data.Dataset.from_tensor_slices(images).batch(3).map(layer)
        for batch in batched:
            counts = (batch.numpy() == 0).sum(axis=(1, 2, 3))
            self.assertTrue(np.all(counts > 0) and np.all(counts <= 36))
        single = tf.data.Dataset.from_tensor_slices(images).map(layer)
        for image in single:
            self.assertEqual(image.shape, (16, 16, 1))
            self.assertTrue(0 < (image.numpy() == 0).sum() <= 36)

    def test_save_and_errors(self):
        inputs = keras.Input((8, 8, 1))
        model = keras.Model(inputs, Cutout((3, 5), fill_value=0.5, seed=2)(inputs))
        path = os.path.join(self.get_temp_dir(), "cutout.keras")
        model.save(path)
        layer = keras.models.load_model(path).layers[-1]
        self.assertEqual((layer.size, layer.fill_value), ((3, 5), 0.5))
        with pytest.raises(ValueError, match="size"):
            Cutout(0)
        with pytest.raises(TypeError, match="fill_value"):
            Cutout(4, fill_value="black")
