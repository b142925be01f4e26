"""Learn&Drop paper fidelity (issue #14 item 3): Algorithm 1's `n* > 1` and Figure 3's residual cut.

Paper: Cruciata et al., "Learn&Drop: Fast Learning of CNNs based on Layer
Dropping" (`shared/papers/learn-and-drop_layer-dropping.txt`).
"""

import keras
import numpy as np
import pytest

from kerascnn import zoo
from kerascnn.callbacks import LayerDropping
from kerascnn.callbacks.learn_drop.model_split import conv_cut_points, split_model
from kerascnn.callbacks.learn_drop.score import PAPER_MIN_LAYERS, decide, n_star, standardize


# ------------------------------------------------------------ Algorithm 1, n* > 1
def test_algorithm1_line37_single_candidate_layer_is_not_dropped():
    # Algorithm 1, line 37: `if n* > 1 and Mc >= Md`, line 39: tail = head.layers[0:n*],
    # so n* counts the leading layers: a run of one candidate layer is not dropped.
    one = [0.9, 0.2, 0.5, 0.1]  # P' = (+, -, +, -): eq. 4 stops at the first layer
    assert n_star(standardize(one)) == 0  # 0-based index: n* = 1 layer
    assert decide(one)[0] == 0
    assert decide(one, min_layers=1)[0] == 1  # the older, looser rule stays reachable
    two = [0.9, 0.8, 0.2, 0.1]  # P' = (+, +, -, -): n* = 2 layers
    assert decide(two)[0] == 2
    three = [0.9, 0.85, 0.8, 0.1, 0.05]
    assert decide(three)[0] == 3 and decide(three, min_layers=4)[0] == 0
    assert PAPER_MIN_LAYERS == 2
    for bad in (0, -1, 1.5, True, "2"):
        with pytest.raises(ValueError, match="min_layers must be an integer >= 1"):
            decide(two, min_layers=bad)


def chain_model():
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="c1")(inputs)
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="c2")(x)
    x = keras.layers.MaxPooling2D(name="p2")(x)
    x = keras.layers.Conv2D(6, 3, padding="same", activation="relu", name="c3")(x)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    return keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(x), name="chain")


def fit_with_scores(scores_by_epoch, epochs, **kwargs):
    model = chain_model()
    model.compile(keras.optimizers.SGD(0.01), "sparse_categorical_crossentropy")
    drop = LayerDropping(warmup_epochs=1, **kwargs)
    real_scores = drop._scores

    def scripted():  # the eq. 2 scores of each epoch, fixed by the test
        real = real_scores()
        wanted = dict(zip(["c1", "c2", "c3"], scores_by_epoch[len(drop.history)], strict=True))
        return {name: wanted[name] for name in real}

    drop._scores = scripted
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(16, 8, 8, 3)).astype("float32"), rng.integers(0, 3, 16)
    history = model.fit(x, y, batch_size=8, epochs=epochs, callbacks=[drop], verbose=0)
    return drop, history.history["learn_drop/dropped_convs"]


def test_algorithm1_n_star_rule_inside_layer_dropping():
    # Epoch 1: n* = 1 (c1 alone) -> Algorithm 1 line 37 refuses; epoch 2: n* = 2 -> drop c1, c2.
    scores = [[0.5, 0.5, 0.5], [0.9, 0.1, 0.5], [0.9, 0.8, 0.1], [0.9, 0.8, 0.1]]
    drop, dropped = fit_with_scores(scores, epochs=4)
    assert [e["decision"] for e in drop.history[:3]] == [
        None,
        None,
        {"cut": "p2", "convs": 2},
    ]
    assert dropped == [0, 0, 0, 2]
    # min_layers=1: the single layer is dropped at epoch 1 (the pre-#14 behaviour).
    drop, dropped = fit_with_scores(scores, epochs=2, min_layers=1)
    assert drop.history[1]["decision"] == {"cut": "c1", "convs": 1}


# ------------------------------------------------------------ Figure 3, residual cut
class CacheProbe(keras.callbacks.Callback):
    """Reads the feature cache at the end of the last epoch (before it is removed)."""

    def __init__(self, drop):
        super().__init__()
        self.drop = drop
        self.features = self.weights = None

    def on_epoch_end(self, epoch, logs=None):
        if epoch == 0:  # the drop decision epoch: the tail does not change afterwards
            self.weights = [w.numpy().copy() for w in self.model.weights]
        cache = self.drop._feature_cache
        if cache is not None and cache.num_samples:
            batches = list(cache.dataset(batch_size=64, shuffle=False, repeat=False))
            self.features = batches[0]


def test_resnet_cut_inside_residual_block_caches_main_and_shortcut_full_model_unchanged(tmp_path):
    # Figure 3 / section 3.4: "in the case of ResNet, we have to save not only the
    # features maps but also the output of the skip connections".
    model = zoo.resnet18(input_shape=(16, 16, 3), width_multiplier=0.125, classes=3)
    model.compile(keras.optimizers.SGD(0.05), "sparse_categorical_crossentropy")
    plan = conv_cut_points(model)
    k = plan.convs.index("stage1_block2_1_conv") + 1  # after the block's first conv
    cut = plan.cuts[k]
    assert plan.crossing[cut] == ["stage1_block2_1_relu", "stage1_block1_out"]
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(16, 16, 16, 3)).astype("float32"), rng.integers(0, 3, 16)
    drop = LayerDropping(warmup_epochs=1, force_drops={0: k})  # drop after epoch 0
    probe = CacheProbe(drop)
    model.fit(x, y, batch_size=8, epochs=3, shuffle=False, callbacks=[drop, probe], verbose=0)
    assert drop.dropped == k and drop.cut == cut
    tail, head = split_model(model, cut)
    # Both crossing tensors were cached, in the order of plan.crossing.
    (main, shortcut), cached_y = probe.features
    want_main, want_shortcut = tail(x, training=False)
    np.testing.assert_allclose(main, want_main, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(shortcut, want_shortcut, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(cached_y, y)
    # The head trained (it shares its layers with the full model), the tail did not.
    changed = {
        w.path for w, b in zip(model.weights, probe.weights) if not np.array_equal(w.numpy(), b)
    }
    assert any(p.startswith("stage4_block2_2_conv") for p in changed)
    assert not any(p.startswith(("stem_conv1_conv", "stage1_block2_1_conv")) for p in changed)
    # The user's full model (evaluation, inference) equals the prefix -> head composition.
    full = model(x, training=False)
    np.testing.assert_allclose(head(tail(x, training=False), training=False), full, atol=1e-5)
    path = tmp_path / "resnet.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    np.testing.assert_allclose(loaded(x, training=False), full, atol=1e-5)
    assert [w.name for w in loaded.weights] == [w.name for w in model.weights]
