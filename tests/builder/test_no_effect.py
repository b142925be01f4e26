"""`kerascnn.NoEffectWarning`: a requested technique that changes nothing says so.

Composer's `NoEffectWarning` (`composer/algorithms/warnings.py`). The efficient-CNN
paper adds SE "at the end of every convolutional layer using appropriate 'latent
channel' and 'min channel' hyperparameters" (Sec. III-D); with Composer's default
`min_channels=128` no convolution of the compact MNIST nets qualifies.
"""

import warnings

import keras
import numpy as np
import pytest

import kerascnn
from kerascnn import zoo
from kerascnn.builder.model import build_model
from kerascnn.layers.squeeze_excite import SqueezeExcite


def _no_effect(caught):
    return [w for w in caught if issubclass(w.category, kerascnn.NoEffectWarning)]


def test_is_a_user_warning_exported_at_top_level():
    assert issubclass(kerascnn.NoEffectWarning, UserWarning)
    assert "NoEffectWarning" in dir(kerascnn)


def test_squeeze_excite_with_defaults_on_the_mnist_net_warns_how_to_get_it():
    spec = zoo.get_spec("compact_mnist_1k5_dw")
    # The widest convolution has min(in, out) = 12 channels (12 -> 16, 16 -> 12, 12 -> 15).
    with pytest.warns(kerascnn.NoEffectWarning, match=r"se_min_channels=12 or lower") as caught:
        model = build_model(spec, input_shape=(28, 28, 1), classes=10, squeeze_excite=True)
    assert "se_min_channels=128" in str(caught[0].message)
    assert not any(isinstance(layer, SqueezeExcite) for layer in model.layers)


def test_no_warning_when_squeeze_excite_adds_blocks(recwarn):
    model = zoo.build(
        "compact_mnist_1k5_dw",
        input_shape=(28, 28, 1),
        squeeze_excite=True,
        se_min_channels=8,
        se_latent_channels=0.25,
    )
    assert sum(isinstance(layer, SqueezeExcite) for layer in model.layers) == 6
    assert not _no_effect(recwarn.list)
    # Nor without the technique.
    zoo.build("compact_mnist_1k5_dw", input_shape=(28, 28, 1))
    assert not _no_effect(recwarn.list)


def test_blurpool_without_pool_or_wide_strided_conv_warns():
    spec = zoo.get_spec("resnet18", width_multiplier=0.25)  # CIFAR stem: no max-pool
    with pytest.warns(kerascnn.NoEffectWarning, match="blurpool_min_channels=1000"):
        build_model(
            spec, input_shape=(16, 16, 3), classes=10, blurpool=True, blurpool_min_channels=1000
        )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        build_model(spec, input_shape=(16, 16, 3), classes=10, blurpool=True)
    assert not _no_effect(caught)


def test_sam_with_rho_zero_warns():
    from kerascnn.training.sam import enable_sam

    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile("sgd", "mse")
    with pytest.warns(kerascnn.NoEffectWarning, match="rho > 0"):
        enable_sam(model, rho=0.0)


def test_swa_averaging_only_the_last_epoch_warns():
    from kerascnn.callbacks import StochasticWeightAveraging

    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile("sgd", "mse")
    x = np.ones((4, 2), "float32")
    with pytest.warns(kerascnn.NoEffectWarning, match="only the last of 2 epochs"):
        model.fit(x, x[:, :1], epochs=2, verbose=0, callbacks=[StochasticWeightAveraging(0.75)])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.fit(x, x[:, :1], epochs=4, verbose=0, callbacks=[StochasticWeightAveraging(0.5)])
    assert not _no_effect(caught)
