"""Tests of kerascnn.training.sam (sharpness-aware minimisation for model.fit)."""

import os
import textwrap

import keras
import numpy as np
import pytest
from harness import run_two_replicas

from kerascnn.training.sam import disable_sam, enable_sam, sam_settings

X = np.array([[1, 2, 3], [0, -1, 1], [2, 0, 1], [1, 1, 1]], "float32")
Y = np.array([[1], [0], [2], [-1]], "float32")
W0 = np.array([[0.5], [-1.0], [2.0]], "float32")
B0 = np.array([0.3], "float32")


def _mse_grad(w, b):
    r = X @ w + b - Y
    return 2 * X.T @ r / len(X), 2 * r.mean(0)


def _hand_sam_step(rho, lr):
    # Foret et al.: e = rho g / ||g||, g' = grad at w + e, w <- w - lr g'.
    gw, gb = _mse_grad(W0, B0)
    norm = np.sqrt((gw**2).sum() + (gb**2).sum())
    gw2, gb2 = _mse_grad(W0 + rho * gw / norm, B0 + rho * gb / norm)
    return W0 - lr * gw2, B0 - lr * gb2, W0 - lr * gw


def _dense_model(lr):
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    model.layers[0].set_weights([W0, B0])
    model.compile(keras.optimizers.SGD(lr), "mse")
    return model


def test_update_matches_hand_computation(tmp_path):
    rho, lr = 0.05, 0.1
    want_w, want_b, plain_w = _hand_sam_step(rho, lr)
    model = enable_sam(_dense_model(lr), rho=rho)
    history = model.fit(X, Y, batch_size=4, epochs=1, verbose=0, shuffle=False)
    w, b = model.layers[0].get_weights()
    np.testing.assert_allclose(w, want_w, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(b, want_b, rtol=1e-5, atol=1e-6)
    assert not np.allclose(w, plain_w, atol=1e-3)  # differs from a plain SGD step
    # The reported loss is the one at w (before the step).
    assert history.history["loss"][0] == pytest.approx(float(((X @ W0 + B0 - Y) ** 2).mean()))
    # model.save still works; SAM is a training-time setting, not saved.
    path = os.path.join(tmp_path, "sam.keras")
    model.save(path)
    loaded = keras.models.load_model(path)
    np.testing.assert_allclose(loaded.layers[0].get_weights()[0], w)
    assert sam_settings(model) == {"rho": 0.05, "epsilon": 1e-12}
    assert sam_settings(loaded) is None


def test_disable_restores_plain_step():
    model = enable_sam(_dense_model(0.1), rho=0.05)
    model.fit(X, Y, batch_size=4, epochs=1, verbose=0, shuffle=False)
    disable_sam(model)
    model.layers[0].set_weights([W0, B0])
    model.fit(X, Y, batch_size=4, epochs=1, verbose=0, shuffle=False)
    np.testing.assert_allclose(
        model.layers[0].get_weights()[0], _hand_sam_step(0.05, 0.1)[2], rtol=1e-5, atol=1e-6
    )


def test_batch_norm_statistics_updated_once():
    # The perturbed pass must not touch BN moving statistics: after one step
    # with momentum 0 the moving mean is exactly the batch mean at w.
    x = np.random.default_rng(0).normal(size=(8, 3)).astype("float32")
    model = keras.Sequential(
        [keras.Input((3,)), keras.layers.BatchNormalization(momentum=0.0), keras.layers.Dense(1)]
    )
    model.compile(keras.optimizers.SGD(0.1), "mse")
    enable_sam(model, rho=0.5)
    model.fit(x, np.ones((8, 1)), batch_size=8, epochs=1, verbose=0)
    np.testing.assert_allclose(model.layers[0].moving_mean.numpy(), x.mean(0), atol=1e-6)


def test_bad_arguments():
    with pytest.raises(ValueError, match="rho"):
        enable_sam(_dense_model(0.1), rho=-1)
    with pytest.raises(ValueError, match="epsilon"):
        enable_sam(_dense_model(0.1), epsilon=0)
    with pytest.raises(TypeError, match="keras.Model"):
        enable_sam("model")


_MIRRORED_SCRIPT = textwrap.dedent(
    """
    from kerascnn.training.sam import enable_sam
    x = np.array(json.loads(sys.argv[1]), "float32")
    y = np.array(json.loads(sys.argv[2]), "float32")
    w0 = np.array(json.loads(sys.argv[3]), "float32")
    b0 = np.array(json.loads(sys.argv[4]), "float32")
    strategy = two_replica_strategy()
    with strategy.scope():
        model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
        model.compile(keras.optimizers.SGD(0.1), "mse")
    model.layers[0].set_weights([w0, b0])
    enable_sam(model, rho=0.05)
    model.fit(x, y, batch_size=4, epochs=1, verbose=0, shuffle=False)
    w, b = model.layers[0].get_weights()
    print(json.dumps([w.ravel().tolist(), b.tolist()]))
    """
)


def test_mirrored_strategy_uses_global_gradient_norm():
    # Two replicas, two samples each. The perturbation must come from the
    # all-reduced gradient of the global batch: the result equals the
    # single-device SAM step on all four samples. (A per-replica perturbation,
    # as in Composer/DDP, gives a different update; checked below.)
    import json

    args = [json.dumps(a.tolist()) for a in (X, Y, W0, B0)]
    w, b = run_two_replicas(_MIRRORED_SCRIPT, *args)
    want_w, want_b, _ = _hand_sam_step(0.05, 0.1)
    np.testing.assert_allclose(w, want_w.ravel(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(b, want_b, rtol=1e-5, atol=1e-6)

    # Local (per-replica) perturbations give a different result on this data.
    def local_grads(idx, w, b):
        r = X[idx] @ w + b - Y[idx]
        return 2 * X[idx].T @ r / len(idx), 2 * r.mean(0)

    updates = []
    for idx in (np.array([0, 1]), np.array([2, 3])):
        gw, gb = local_grads(idx, W0, B0)
        n = np.sqrt((gw**2).sum() + (gb**2).sum())
        updates.append(local_grads(idx, W0 + 0.05 * gw / n, B0 + 0.05 * gb / n)[0])
    local_w = W0 - 0.1 * np.mean(updates, axis=0)
    assert not np.allclose(local_w.ravel(), w, atol=1e-4)
