"""Tests of kerascnn.layers.squeeze_excite.SqueezeExcite."""

import os

import keras
import numpy as np
import pytest
from harness import TestCase

from kerascnn import zoo
from kerascnn.builder.model import build_model
from kerascnn.layers.squeeze_excite import SqueezeExcite


class SqueezeExciteTest(TestCase):
    def test_layer(self):
        self.run_layer_test(
            SqueezeExcite,
            init_kwargs={"latent_channels": 4},
            input_shape=(2, 5, 5, 8),
            expected_output_shape=(2, 5, 5, 8),
            expected_num_trainable_weights=2,
        )
        self.run_layer_test(
            SqueezeExcite,
            init_kwargs={"latent_channels": 0.5, "use_bias": True},
            input_shape=(2, 3, 3, 8),
            expected_output_shape=(2, 3, 3, 8),
            expected_num_trainable_weights=4,
        )

    def test_matches_numpy(self):
        rng = np.random.default_rng(0)
        x = rng.normal(size=(2, 4, 4, 6)).astype("float32")
        layer = SqueezeExcite(3)
        layer.build(x.shape)
        w1 = rng.normal(size=(6, 3)).astype("float32")
        w2 = rng.normal(size=(3, 6)).astype("float32")
        layer.set_weights([w1, w2])
        pooled = x.mean(axis=(1, 2))
        gate = 1 / (1 + np.exp(-(np.maximum(pooled @ w1, 0) @ w2)))
        self.assertAllClose(
            keras.ops.convert_to_numpy(layer(x)), x * gate[:, None, None, :], atol=1e-5
        )

    def test_latent_fraction_follows_composer(self):
        # Composer: int(latent_channels * num_features) when latent_channels < 1.
        self.assertEqual(SqueezeExcite(0.125).latent_units(64), 8)
        self.assertEqual(SqueezeExcite(64).latent_units(16), 64)
        with pytest.raises(ValueError, match="latent_channels"):
            SqueezeExcite(0)
        with pytest.raises(ValueError, match="latent_channels"):
            SqueezeExcite(1.5)

    def test_builder_threshold_and_save(self):
        # The paper's 143K depthwise CIFAR net: with Composer's min_channels=128 only the
        # 128->192 and 192->260 pointwise convolutions get SE blocks.
        spec = zoo.get_spec("compact_cifar_143k_dw")
        model = build_model(spec, input_shape=(32, 32, 3), classes=10, squeeze_excite=True)
        se = [layer.name for layer in model.layers if isinstance(layer, SqueezeExcite)]
        self.assertEqual(se, ["stage4_sep2_pw_se", "stage4_sep3_pw_se"])
        # 64 latent channels, no biases: 2 * 64 * C parameters per block.
        plain = build_model(spec, input_shape=(32, 32, 3), classes=10)
        self.assertEqual(model.count_params() - plain.count_params(), 2 * 64 * (192 + 260))
        small = build_model(
            zoo.get_spec("compact_mnist_1k5_dw"),
            input_shape=(16, 16, 1),
            classes=10,
            squeeze_excite=True,
            se_min_channels=12,
            se_latent_channels=4,
        )
        names = [layer.name for layer in small.layers if isinstance(layer, SqueezeExcite)]
        self.assertIn("stage2_sep2_pw_se", names)
        path = os.path.join(self.get_temp_dir(), "se.keras")
        small.save(path)
        loaded = keras.models.load_model(path)
        x = np.random.default_rng(0).normal(size=(2, 16, 16, 1)).astype("float32")
        self.assertAllClose(loaded.predict(x, verbose=0), small.predict(x, verbose=0))
