"""Tests of the per-layer statistics mechanism (kerascnn.callbacks.layer_stats)."""

import textwrap

import keras
import numpy as np
import pytest
import tensorflow as tf
from harness import run_two_replicas

from kerascnn import zoo
from kerascnn.builder.model import stage_output_names
from kerascnn.callbacks.layer_stats import (
    CANCELLATION_LIMIT,
    LayerStatistics,
    _moments,
    default_monitored_layers,
)


def small_model(name="small"):
    # No BN, no dropout: the training forward pass is deterministic and can
    # be recomputed exactly with a sub-model.
    return keras.Sequential(
        [
            keras.Input((8, 8, 3)),
            keras.layers.Conv2D(4, 3, padding="same", name="c1"),
            keras.layers.Conv2D(6, 3, activation="relu", name="c2"),
            keras.layers.Conv2D(5, 3, name="c3"),
            keras.layers.GlobalAveragePooling2D(name="gap"),
            keras.layers.Dense(3, name="dense"),
        ],
        name=name,
    )


def compile_model(model, lr=0.0, **kwargs):
    model.compile(
        keras.optimizers.SGD(lr),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        **kwargs,
    )
    return model


def data(n=8, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, 8, 8, 3)).astype("float32"), rng.integers(0, 3, n)


class Probe(keras.callbacks.Callback):
    """A minimal consumer of the mechanism, recording each epoch's result."""

    def __init__(self, activations=("c1", "c2", "c3"), gradients=(), stats=()):
        super().__init__()
        self.args = dict(activations=activations, gradients=gradients, gradient_stats=stats)
        self.results = []

    def on_train_begin(self, logs=None):
        self.stats = LayerStatistics.acquire(self.model, self, **self.args)

    def on_epoch_begin(self, epoch, logs=None):
        self.stats.begin_epoch(epoch)

    def on_epoch_end(self, epoch, logs=None):
        self.results.append(self.stats.read())

    def on_train_end(self, logs=None):
        self.stats.release(self)


def shift_model():
    # "shift": mean 1000, std 0.01 (s2 / m2 = 1e10, the one-pass float32
    # formula is useless there); "back": ordinary data again. Both are exact
    # elementwise ops, equal in the train step and in a sub-model.
    return keras.Sequential(
        [
            keras.Input((8, 8, 3)),
            keras.layers.Rescaling(0.01, offset=1000.0, name="shift"),
            keras.layers.Rescaling(100.0, offset=-100000.0, name="back"),
            keras.layers.Conv2D(4, 3, name="c1"),
            keras.layers.GlobalAveragePooling2D(name="gap"),
            keras.layers.Dense(3, name="dense"),
        ],
        name="shifted",
    )


def expected_std(model, x, batch_size, names=("c1", "c2", "c3")):
    sub = keras.Model(model.inputs[0], [model.get_layer(n).output for n in names])
    per_batch = []
    for i in range(0, len(x), batch_size):
        outs = sub(x[i : i + batch_size], training=True)
        per_batch.append([np.std(np.asarray(o, np.float64), ddof=1) for o in outs])
    return dict(zip(names, np.mean(per_batch, axis=0)))


def assert_hooks_removed(model):
    assert "train_step" not in model.__dict__
    for layer in model.layers:
        assert "call" not in layer.__dict__
    assert LayerStatistics.get(model) is None


@pytest.mark.parametrize("jit_compile", [False, True])
def test_std_matches_numpy_on_one_batch(jit_compile):
    keras.utils.set_random_seed(1)
    model = compile_model(small_model(), lr=0.1, jit_compile=jit_compile)
    x, y = data(8)
    want = expected_std(model, x, 8)  # before the update: the step's forward pass
    probe = Probe()
    model.fit(x, y, batch_size=8, epochs=1, verbose=0, shuffle=False, callbacks=[probe])
    got = probe.results[0].activations
    for name in want:
        np.testing.assert_allclose(got[name]["std"], want[name], rtol=1e-5)
        assert got[name]["steps"] == 1
    assert_hooks_removed(model)


def naive_float32_std(x):
    s1, s2 = tf.reduce_sum(x), 2.0 * tf.nn.l2_loss(x)
    n = float(np.prod(x.shape))
    return float(tf.sqrt(tf.maximum(s2 - s1 * s1 / n, 0.0) / (n - 1.0)))


@pytest.mark.parametrize(
    "loc, scale, relu, dtype",
    [
        (0.0, 1.0, False, "float32"),
        (0.0, 1.0, True, "float32"),  # ReLU output: s2 / m2 = 1.47, one pass
        (1.5, 1.0, False, "float32"),  # s2 / m2 = 3.25, one pass
        (3.0, 1.0, False, "float32"),  # s2 / m2 = 10: the shifted branch
        (1000.0, 1.0, False, "float32"),
        (1000.0, 0.01, False, "float32"),
        (-50.0, 0.1, False, "float32"),
        (0.0, 1.0, True, "bfloat16"),
        (100.0, 1.0, False, "bfloat16"),
    ],
)
def test_fused_moments_equal_float64_numpy_std(loc, scale, relu, dtype):
    rng = np.random.default_rng(0)
    x = (loc + scale * rng.normal(size=(32, 16, 16, 16))).astype("float32")
    if relu:
        x = np.maximum(x, 0.0)
    tensor = tf.cast(tf.constant(x), dtype)
    ref = tf.cast(tensor, tf.float64).numpy()  # the values the layer emitted
    n, s1, m2 = tf.function(_moments)(tensor)
    n, s1, m2 = float(n), float(s1), float(m2)
    want = np.std(ref, ddof=1)
    assert n == ref.size
    assert abs(np.sqrt(m2 / (n - 1)) / want - 1) <= 1e-6
    assert abs(s1 / n - ref.mean()) <= 1e-6 * max(abs(ref.mean()), want)
    naive = abs(naive_float32_std(tf.cast(tensor, tf.float32)) / want - 1)
    if (loc / scale) ** 2 + 1 > 1e6:  # what the shifted branch is for
        assert naive > 1e-4
    if (loc / scale) ** 2 + 1 < CANCELLATION_LIMIT:
        assert naive <= 1e-6


def test_one_accumulator_update_per_step_and_large_mean_layers():
    keras.utils.set_random_seed(8)
    model = compile_model(shift_model(), lr=0.0)
    x, y = data(16)
    want = expected_std(model, x, 8, names=("shift", "back"))
    graphs = []
    original = LayerStatistics._add

    def counting_add(self, pieces):
        graphs.append(tf.compat.v1.get_default_graph())
        return original(self, pieces)

    LayerStatistics._add = counting_add
    try:
        probe = Probe(("shift", "back"), ("c1", "dense"), ("norm",))
        model.fit(x, y, batch_size=8, epochs=1, verbose=0, shuffle=False, callbacks=[probe])
    finally:
        LayerStatistics._add = original
    # Activation moments, gradient norms and step counts: one assign_add per
    # traced step.
    assert graphs and len(set(map(id, graphs))) == len(graphs)
    got = probe.results[0]
    for name in ("shift", "back"):
        assert got.activations[name]["steps"] == 2
        np.testing.assert_allclose(got.activations[name]["std"], want[name], rtol=1e-6)
    assert got.gradients["c1"]["steps"] == 2 and got.gradients["c1"]["norm"] > 0
    assert isinstance(got.sums["act_std"][0], np.float64)


def test_epoch_mean_over_steps_with_steps_per_execution():
    keras.utils.set_random_seed(2)
    # lr=0 keeps the weights fixed, so every step's std is recomputable.
    model = compile_model(small_model(), lr=0.0, steps_per_execution=2)
    x, y = data(16)
    want = expected_std(model, x, 4)
    probe = Probe()
    model.fit(x, y, batch_size=4, epochs=2, verbose=0, shuffle=False, callbacks=[probe])
    for result in probe.results:  # two epochs, each reset at its start
        for name in want:
            assert result.activations[name]["steps"] == 4
            np.testing.assert_allclose(result.activations[name]["std"], want[name], rtol=1e-5)


def test_second_fit_and_plain_fit_after():
    keras.utils.set_random_seed(3)
    model = compile_model(small_model(), lr=0.0)
    x, y = data(8)
    want = expected_std(model, x, 4)
    model.fit(x, y, batch_size=4, epochs=1, verbose=0)  # train function built without hooks
    for _ in range(2):
        probe = Probe()
        model.fit(x, y, batch_size=4, epochs=1, verbose=0, shuffle=False, callbacks=[probe])
        np.testing.assert_allclose(probe.results[0].activations["c2"]["std"], want["c2"], rtol=1e-5)
        assert probe.results[0].activations["c2"]["steps"] == 2
        assert_hooks_removed(model)
    assert model.train_function is None  # the next fit rebuilds a clean one
    model.fit(x, y, batch_size=4, epochs=1, verbose=0)
    model.evaluate(x, y, verbose=0)


def test_gradient_sum_abs_sum_and_norm():
    keras.utils.set_random_seed(4)
    model = compile_model(small_model(), lr=0.0)
    x, y = data(12)
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    layers = [model.get_layer("c1"), model.get_layer("dense")]
    sums = [[0.0 * w.numpy() for w in layer.trainable_weights] for layer in layers]
    abs_sums = [[0.0 * w.numpy() for w in layer.trainable_weights] for layer in layers]
    norms = [0.0, 0.0]
    for i in range(0, 12, 4):
        all_w = [w for layer in layers for w in layer.trainable_weights]
        with tf.GradientTape() as tape:
            loss = loss_fn(y[i : i + 4], model(x[i : i + 4], training=True))
        grads = tape.gradient(loss, all_w)
        k = 0
        for li, layer in enumerate(layers):
            sq = 0.0
            for wi in range(len(layer.trainable_weights)):
                g = grads[k].numpy()
                sums[li][wi] += g
                abs_sums[li][wi] += np.abs(g)
                sq += float(np.sum(g.astype(np.float64) ** 2))
                k += 1
            norms[li] += np.sqrt(sq) / 3
    probe = Probe(("c1",), ("c1", "dense"), ("sum", "abs_sum", "norm"))
    model.fit(x, y, batch_size=4, epochs=1, verbose=0, shuffle=False, callbacks=[probe])
    grads = probe.results[0].gradients
    for li, name in enumerate(("c1", "dense")):
        assert grads[name]["steps"] == 3
        for wi in range(2):
            np.testing.assert_allclose(grads[name]["sum"][wi], sums[li][wi], rtol=1e-4, atol=1e-7)
            np.testing.assert_allclose(grads[name]["abs_sum"][wi], abs_sums[li][wi], rtol=1e-4)
        np.testing.assert_allclose(grads[name]["norm"], norms[li], rtol=1e-4)
    assert "_all_reduce_sum_gradients" not in model.optimizer.__dict__


def test_mixed_precision_float32_stats_and_unscaled_gradients():
    keras.utils.set_random_seed(5)
    reference = compile_model(small_model(), lr=0.0)
    x, y = data(8)
    want = expected_std(reference, x, 8)
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        model = compile_model(small_model(), lr=0.0)
        model.set_weights(reference.get_weights())
        assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
        probe = Probe(("c1", "c3"), ("c1",), ("sum",))
        model.fit(x, y, batch_size=8, epochs=1, verbose=0, callbacks=[probe])
    finally:
        keras.mixed_precision.set_global_policy("float32")
    got = probe.results[0]
    for name in ("c1", "c3"):
        np.testing.assert_allclose(got.activations[name]["std"], want[name], rtol=1e-2)
    # Unscaled: the same magnitude as the float32 gradient (the loss scale is 32768).
    with tf.GradientTape() as tape:
        loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)(
            y, reference(x, training=True)
        )
    g32 = tape.gradient(loss, reference.get_layer("c1").kernel)
    np.testing.assert_allclose(got.gradients["c1"]["sum"][0], g32.numpy(), rtol=0.05, atol=1e-3)


def test_model_saves_during_and_after_training(tmp_path):
    keras.utils.set_random_seed(6)
    model = compile_model(small_model(), lr=0.01)
    x, y = data(8)
    path = str(tmp_path / "during.keras")
    model.fit(
        x,
        y,
        batch_size=4,
        epochs=1,
        verbose=0,
        callbacks=[Probe(), keras.callbacks.ModelCheckpoint(path)],
    )
    loaded = keras.saving.load_model(path)
    assert len(loaded.weights) == len(model.weights)
    model.save(str(tmp_path / "after.keras"))
    again = keras.saving.load_model(str(tmp_path / "after.keras"))
    np.testing.assert_allclose(again.predict(x, verbose=0), model.predict(x, verbose=0), rtol=1e-5)


def test_default_monitored_layers():
    model = zoo.resnet18(input_shape=(16, 16, 3), width_multiplier=0.125, classes=4)
    # The last stage output is replaced by the pooled tensor the classifier sees (the
    # stability-stopping paper's ResNet-18 "layer 18", Table 1).
    stages = stage_output_names(zoo.get_spec("resnet18"))
    assert default_monitored_layers(model) == [*stages[:-1], "head_gap"]
    vgg = zoo.vgg11_bn(input_shape=(32, 32, 3), width_multiplier=0.125, classes=4)
    assert default_monitored_layers(vgg) == [f"stage{i}_pool" for i in range(1, 6)]
    assert default_monitored_layers(small_model()) == ["c1", "c2", "c3"]
    nested = keras.Sequential([keras.Input((16, 16, 3)), model.get_layer("stem_conv1_conv")])
    assert default_monitored_layers(nested) == ["stem_conv1_conv"]


def test_unknown_layer_lists_names():
    model = compile_model(small_model())
    with pytest.raises(ValueError, match="Available layers: c1, c2, c3"):
        LayerStatistics.acquire(model, object(), activations=["nope"])
    with pytest.raises(ValueError, match="gradient_stats"):
        LayerStatistics.acquire(model, object(), gradients=["c1"], gradient_stats=("mean",))


MIRRORED_SCRIPT = textwrap.dedent(
    """
    Probe, compile_model, data = helpers.Probe, helpers.compile_model, helpers.data
    expected_std, small_model = helpers.expected_std, helpers.small_model

    keras.utils.set_random_seed(7)
    x, y = data(16)
    reference = compile_model(small_model(), lr=0.0)
    want = expected_std(reference, x, 8)
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    gsum = 0
    for i in (0, 8):
        with tf.GradientTape() as tape:
            loss = loss_fn(y[i : i + 8], reference(x[i : i + 8], training=True))
        gsum = gsum + tape.gradient(loss, reference.get_layer("c2").kernel).numpy()
    strategy = two_replica_strategy()
    with strategy.scope():
        model = compile_model(small_model(), lr=0.0, jit_compile=False)
        model.set_weights(reference.get_weights())
    probe = Probe(("c1", "c2", "c3"), ("c2",), ("sum", "abs_sum"))
    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(8)
    model.fit(ds, epochs=1, verbose=0, callbacks=[probe])
    got = probe.results[0]
    shifted_ref = compile_model(helpers.shift_model(), lr=0.0)
    want_shift = expected_std(shifted_ref, x, 8, names=("shift", "back"))
    with strategy.scope():
        shifted = compile_model(helpers.shift_model(), lr=0.0, jit_compile=False)
        shifted.set_weights(shifted_ref.get_weights())
    probe2 = Probe(("shift", "back"))
    shifted.fit(ds, epochs=1, verbose=0, callbacks=[probe2])
    for n, v in want_shift.items():
        want[n] = v
        got.activations[n] = probe2.results[0].activations[n]
    print(json.dumps({
        "replicas": strategy.num_replicas_in_sync,
        "got": {n: got.activations[n]["std"] for n in want},
        "steps": got.activations["c1"]["steps"],
        "want": {n: float(v) for n, v in want.items()},
        "gsum_err": float(np.max(np.abs(got.gradients["c2"]["sum"][0] - gsum))),
        "gsum_scale": float(np.max(np.abs(gsum))),
        "abs_ge": bool(np.all(got.gradients["c2"]["abs_sum"][0] >= np.abs(gsum) - 1e-6)),
    }))
    """
)


def test_mirrored_strategy_two_logical_cpus():
    out = run_two_replicas(MIRRORED_SCRIPT, helpers=__file__, timeout=240)
    assert out["replicas"] == 2
    assert out["steps"] == 2
    # Global-batch std (exact combination over replicas), not a per-replica one.
    for name, value in out["want"].items():
        # "shift" (mean 1000, std 0.01) and "back" are exact elementwise ops:
        # 1e-6, the merge over replicas (Chan, float64) included.
        rtol = 1e-6 if name in ("shift", "back") else 1e-5
        np.testing.assert_allclose(out["got"][name], value, rtol=rtol)
    # Global (all-reduced) gradients, counted once, not once per replica.
    assert out["gsum_err"] <= 1e-4 * out["gsum_scale"] + 1e-7
    assert out["abs_ge"]


def test_sam_step_is_kept_and_its_perturbed_pass_not_recorded():
    # SAM installs a per-instance train_step; the mechanism wraps it, records
    # only the training forward pass (not SAM's perturbed pass, which runs in
    # a StatelessScope) and puts SAM's step back when it uninstalls.
    from kerascnn.training.sam import enable_sam

    keras.utils.set_random_seed(1)
    model = compile_model(small_model(), lr=0.1)
    enable_sam(model, rho=0.05)
    sam_step = model.__dict__["train_step"]
    x, y = data(8)
    want = expected_std(model, x, 8)
    probe = Probe()
    model.fit(x, y, batch_size=8, epochs=1, verbose=0, shuffle=False, callbacks=[probe])
    got = probe.results[0].activations
    for name in want:
        np.testing.assert_allclose(got[name]["std"], want[name], rtol=1e-5)
    assert model.__dict__["train_step"] is sam_step
