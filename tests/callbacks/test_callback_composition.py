"""Composition matrix: kerascnn callbacks together with Keras' own callbacks.

Each of StabilityStopping, LayerMetrics, LayerDropping (forced drop),
LayerFreezing (forced freeze) and SWA is paired with each of Keras'
ModelCheckpoint, BackupAndRestore, EarlyStopping, TensorBoard,
ReduceLROnPlateau and CSVLogger (plus StabilityStopping + LayerDropping
together, and a keras.applications backbone nested in a functional model).
Every case: 3 epochs, evaluate, the checkpoint (or `model.keras`) written,
a second plain `fit`, no NaN in any logged stability value. The last test
loads every checkpoint in ONE fresh subprocess that imports only keras and
kerascnn (plus this module's model builders for `.weights.h5` files): no
optimizer-variable mismatch warning, the user's `trainable` flags, and the
same predictions as the trained model.
"""

import glob
import json
import math
import os
import textwrap

import keras
import numpy as np
import pytest
from harness import run_python

from kerascnn.callbacks import (
    LayerDropping,
    LayerFreezing,
    LayerMetrics,
    LayerStatistics,
    StabilityStopping,
    StochasticWeightAveraging,
)

OURS = ("stability", "metrics", "dropping", "freezing", "swa")
THEIRS = ("checkpoint", "backup", "early_stopping", "tensorboard", "reduce_lr", "csv")
CASES = [
    (o, t, "sequential" if (i + j) % 2 else "functional")
    for i, o in enumerate(OURS)
    for j, t in enumerate(THEIRS)
]
CASES += [
    ("stability+dropping", "checkpoint", "functional"),
    ("stability+freezing", "checkpoint", "sequential"),
    ("metrics+dropping", "tensorboard", "functional"),
    ("dropping", "backup", "nested_zoo"),  # a kerascnn zoo model used as a layer
]
SLOW_CASES = [("dropping", "checkpoint", "applications")]  # keras.applications.MobileNet
USER_FROZEN = "bn2"  # set trainable=False by the "user" in every small model
RESULTS = {}  # case id -> what the reload subprocess checks


def build(kind):
    """The models of the matrix (also imported by the reload subprocess)."""
    if kind == "nested_zoo":
        from kerascnn import zoo

        backbone = zoo.build(
            "compact_mnist_5k", input_shape=(16, 16, 1), include_top=False, width_multiplier=0.5
        )
        backbone.get_layer("stage1_conv2_bn").trainable = False  # the user's flag
        inputs = keras.Input((16, 16, 1))
        x = keras.layers.GlobalAveragePooling2D(name="gap")(backbone(inputs))
        outputs = keras.layers.Dense(3, activation="softmax", name="dense")(x)
        return keras.Model(inputs, outputs, name="with_zoo")
    if kind == "applications":
        backbone = keras.applications.MobileNet(
            input_shape=(32, 32, 3), alpha=0.25, include_top=False, weights=None
        )
        backbone.get_layer("conv_pw_1_bn").trainable = False  # the user's flag
        inputs = keras.Input((32, 32, 3))
        x = keras.layers.GlobalAveragePooling2D(name="gap")(backbone(inputs))
        outputs = keras.layers.Dense(3, activation="softmax", name="dense")(x)
        return keras.Model(inputs, outputs, name="with_mobilenet")
    layers = [
        keras.layers.Conv2D(4, 3, padding="same", name="c1"),
        keras.layers.BatchNormalization(name="bn1"),
        keras.layers.ReLU(name="r1"),
        keras.layers.Conv2D(4, 3, padding="same", name="c2"),
        keras.layers.BatchNormalization(name="bn2"),
        keras.layers.ReLU(name="r2"),
        keras.layers.GlobalAveragePooling2D(name="gap"),
        keras.layers.Dense(3, activation="softmax", name="dense"),
    ]
    if kind == "sequential":
        model = keras.Sequential([keras.Input((8, 8, 1))] + layers, name="seq")
    else:
        inputs = x = keras.Input((8, 8, 1))
        for layer in layers:
            x = layer(x)
        model = keras.Model(inputs, x, name="func")
    model.get_layer(USER_FROZEN).trainable = False
    return model


def compile_model(model):
    # No XLA: compiling each train step with XLA on CPU costs seconds.
    model.compile(
        keras.optimizers.SGD(0.05, momentum=0.9),
        "sparse_categorical_crossentropy",
        metrics=["accuracy"],
        jit_compile=False,
    )
    return model


def data(kind):
    rng = np.random.default_rng(0)
    shape = {"applications": (16, 32, 32, 3), "nested_zoo": (16, 16, 16, 1)}.get(
        kind, (16, 8, 8, 1)
    )
    return rng.normal(size=shape).astype("float32"), rng.integers(0, 3, shape[0])


def flags_layers(model):
    return [
        layer
        for layer in model._flatten_layers(recursive=True)
        if not isinstance(layer, (keras.layers.InputLayer, keras.Model))
    ]


def flags(model):
    return {
        layer.name: bool(layer.trainable)
        for layer in model._flatten_layers(recursive=True)
        if not isinstance(layer, keras.layers.InputLayer)
    }


def ours_callbacks(name, tmp):
    made = []
    for part in name.split("+"):
        if part == "stability":
            made.append(StabilityStopping(patience=5))
        elif part == "metrics":
            made.append(LayerMetrics(os.path.join(tmp, "lm")))
        elif part == "dropping":
            made.append(LayerDropping(warmup_epochs=0, force_drops={0: 1}))
        elif part == "freezing":
            made.append(LayerFreezing(warmup_epochs=0, force_drops={0: 1}))
        elif part == "swa":
            made.append(StochasticWeightAveraging(start=0.3))
    # In name order: the statistics callback before Learn&Drop here, and after
    # it in test_stability_stopping.py (the order does not matter).
    return made


def theirs_callback(name, tmp):
    if name == "checkpoint":
        return keras.callbacks.ModelCheckpoint(os.path.join(tmp, "ckpt.keras")), "ckpt.keras"
    if name == "backup":
        cb = keras.callbacks.BackupAndRestore(os.path.join(tmp, "backup"), delete_checkpoint=False)
        return cb, os.path.join("backup", "latest.weights.h5")
    if name == "early_stopping":
        return keras.callbacks.EarlyStopping(monitor="loss", patience=10), None
    if name == "tensorboard":
        return keras.callbacks.TensorBoard(os.path.join(tmp, "tb")), None
    if name == "reduce_lr":
        return keras.callbacks.ReduceLROnPlateau(monitor="loss", patience=1), None
    return keras.callbacks.CSVLogger(os.path.join(tmp, "log.csv")), None


def layer_metrics_stds(log_dir):
    import tensorflow as tf
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(os.path.join(log_dir, "layer_metrics"), size_guidance={"tensors": 0})
    acc.Reload()
    tags = [t for t in acc.Tags()["tensors"] if t.startswith("activation_std/")]
    assert tags
    return {t: [float(tf.make_ndarray(e.tensor_proto)) for e in acc.Tensors(t)] for t in tags}


def run_case(ours, theirs, kind, tmp):
    """Runs one case in this process; returns the record the reload checks."""
    keras.utils.set_random_seed(0)
    model = compile_model(build(kind))
    user_flags = flags(model)
    x, y = data(kind)
    mine = ours_callbacks(ours, tmp)
    other, saved = theirs_callback(theirs, tmp)
    history = model.fit(x, y, batch_size=8, epochs=3, callbacks=mine + [other], verbose=0)
    h = history.history
    assert len(h["loss"]) == 3 and all(math.isfinite(v) for v in h["loss"])
    stability = {k: v for k, v in h.items() if k.startswith("stability/")}
    if "stability" in ours:
        assert stability
    for key, values in stability.items():
        assert all(math.isfinite(v) for v in values), (key, values)
    if "dropping" in ours:
        assert h["learn_drop/dropped_convs"][1:] == [1.0, 1.0]
    if "freezing" in ours:
        assert h["learn_drop/frozen_convs"][1:] == [1.0, 1.0]
    if "metrics" in ours:
        for tag, values in layer_metrics_stds(os.path.join(tmp, "lm")).items():
            assert len(values) == 3 and all(math.isfinite(v) for v in values), (tag, values)
    assert flags(model) == user_flags  # never flipped, even during fit
    loss = model.evaluate(x, y, verbose=0)[0]
    assert math.isfinite(loss)
    if saved is None:
        saved = "model.keras"
        model.save(os.path.join(tmp, saved))
    probe = x[:4]
    np.save(os.path.join(tmp, "probe.npy"), probe)
    np.save(os.path.join(tmp, "expected.npy"), model(probe, training=False).numpy())
    # A second plain fit: nothing of the callbacks is left on the model.
    assert LayerStatistics.get(model) is None
    first = next(layer for layer in flags_layers(model) if layer.trainable_weights)
    before = [w.numpy().copy() for w in first.trainable_weights]
    again = model.fit(x, y, batch_size=8, epochs=1, verbose=0)
    assert math.isfinite(again.history["loss"][0])
    after = [w.numpy() for w in first.trainable_weights]
    assert any(not np.array_equal(a, b) for a, b in zip(before, after))  # trains again
    return {
        "path": os.path.join(tmp, saved),
        "kind": kind,
        "dir": tmp,
        "flags": user_flags,
    }


@pytest.mark.parametrize(
    "ours,theirs,kind",
    CASES + [pytest.param(*c, marks=pytest.mark.slow) for c in SLOW_CASES],
    ids=[f"{o}-{t}-{k}" for o, t, k in CASES + SLOW_CASES],
)
def test_composition(ours, theirs, kind, tmp_path_factory):
    tmp = str(tmp_path_factory.mktemp(f"{ours}-{theirs}".replace("+", "_")))
    RESULTS[(ours, theirs, kind)] = run_case(ours, theirs, kind, tmp)


RELOAD_SCRIPT = textwrap.dedent(
    """
    import importlib.util, json, sys, warnings
    import numpy as np
    import keras, kerascnn  # noqa: F401
    records = json.loads(sys.argv[1])
    _spec = importlib.util.spec_from_file_location("composition", sys.argv[2])
    composition = importlib.util.module_from_spec(_spec)
    _spec.loader.exec_module(composition)
    out = []
    for rec in records:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            if rec["path"].endswith(".keras"):
                model = keras.saving.load_model(rec["path"])
            else:
                model = composition.compile_model(composition.build(rec["kind"]))
                model.optimizer.build(model.trainable_variables)
                model.load_weights(rec["path"])
        got = {l.name: bool(l.trainable) for l in model._flatten_layers(recursive=True)
               if not isinstance(l, keras.layers.InputLayer)}
        probe = np.load(rec["dir"] + "/probe.npy")
        expected = np.load(rec["dir"] + "/expected.npy")
        out.append({
            "path": rec["path"],
            "warnings": [str(w.message) for w in caught if "optimizer" in str(w.message)
                         or "Skipping" in str(w.message)],
            "flags_ok": got == rec["flags"],
            "max_diff": float(np.max(np.abs(model(probe, training=False) - expected))),
        })
    print(json.dumps(out))
    """
)


def test_reload_every_checkpoint_in_one_fresh_process(tmp_path_factory):
    for case in CASES:  # cases not run in this session (e.g. -k) are run now
        if case not in RESULTS:
            tmp = str(tmp_path_factory.mktemp("late"))
            RESULTS[case] = run_case(*case, tmp)
    cases = CASES + [c for c in SLOW_CASES if c in RESULTS]  # with -m slow
    records = [RESULTS[case] for case in cases]
    results = run_python(RELOAD_SCRIPT, json.dumps(records), __file__, timeout=300)
    assert len(results) == len(cases)
    for case, result in zip(cases, results):
        assert result["warnings"] == [], (case, result["warnings"])
        assert result["flags_ok"], case
        assert result["max_diff"] < 1e-5, (case, result["max_diff"])
    assert glob.glob(os.path.join(records[0]["dir"], "*"))
