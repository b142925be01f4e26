"""Shared test harness (in the style of keras-hub's `TestCase`).

Every test folder imports it as `import harness` / `from harness import ...`
(`tests/conftest.py` puts the `tests/` directory on `sys.path`).

- `TestCase`, `run_layer_test`: Keras' own layer test (build, call, symbolic
  call, training step, serialization) for a class or from a plain pytest test.
- `run_serialization_test`: saves a model as `.keras`, loads it in a FRESH
  Python that imports only `keras` and `kerascnn`, and compares the outputs.
- `tiny_model`, `tiny_data`, `fit_with_callbacks`: a small conv net, matching
  data, and a short `fit` with the callbacks under test.
- `run_two_replicas`: runs a script in a subprocess under a 2-replica
  `tf.distribute.MirroredStrategy` on two logical CPUs (logical devices must be
  configured before TensorFlow starts, which the test process already did).
- `run_workers`: runs a script in N worker processes on 127.0.0.1 under a
  multi-worker `tf.distribute.MultiWorkerMirroredStrategy` (the one runner
  for multi-process tests).
"""

import json
import os
import signal
import subprocess
import sys
import tempfile
import textwrap
import time

import keras
import numpy as np
import tensorflow as tf

from kerascnn._keras_compat import testing as _keras_testing
from kerascnn.training.launch import free_ports, tf_config  # noqa: F401 (free_ports: for tests)

TESTS_DIR = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(TESTS_DIR)


class TestCase(_keras_testing.TestCase):
    """Keras' `TestCase` (`run_layer_test`, `assertAllClose`, `get_temp_dir`)."""


class _LayerTestRunner(TestCase):
    def runTest(self):  # noqa: N802 (unittest's name)
        pass


def run_layer_test(layer_cls, **kwargs):
    """Runs Keras' `run_layer_test` from a plain pytest test function.

    Args:
        layer_cls: the layer class.
        **kwargs: `TestCase.run_layer_test` arguments (`init_kwargs`,
            `input_shape`, `expected_output_shape`, ...).

    Example:

    ```python
    run_layer_test(BlurPool2D, init_kwargs={"strides": 2}, input_shape=(2, 8, 8, 3),
                   expected_output_shape=(2, 4, 4, 3))
    ```
    """
    _LayerTestRunner().run_layer_test(layer_cls, **kwargs)


def subprocess_env(**overrides):
    """The environment for a child Python: this checkout first on `PYTHONPATH`.

    Args:
        **overrides: variables to set; a value of `None` removes the variable.
    """
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (ROOT, TESTS_DIR, os.environ.get("PYTHONPATH", "")) if p
    )
    for name, value in overrides.items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = str(value)
    return env


def run_python(script, *args, env=None, timeout=300, cwd=ROOT):
    """Runs `script` in a fresh Python; returns the JSON on its last stdout line.

    Args:
        script: Python source (dedented here).
        *args: command-line arguments (`sys.argv[1:]`), converted with `str`.
        env: variable overrides for `subprocess_env`. Defaults to `None`.
        timeout: seconds. Defaults to `300`.
        cwd: working directory. Defaults to the repository root.
    """
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script), *map(str, args)],
        capture_output=True,
        text=True,
        env=subprocess_env(**(env or {})),
        timeout=timeout,
        cwd=cwd,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.strip().splitlines()
    assert lines, f"no output; stderr: {proc.stderr[-3000:]}"
    return json.loads(lines[-1])


# Loads the module named by KERASCNN_TEST_HELPERS as `helpers` (shared by the preludes).
_HELPERS_LOADER = """
def _load_helpers(path):
    if not path:
        return None
    spec = importlib.util.spec_from_file_location("_test_helpers", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


helpers = _load_helpers(os.environ.get("KERASCNN_TEST_HELPERS"))
"""

_TWO_REPLICA_PRELUDE = (
    """\
import importlib.util, json, os, sys
import numpy as np
import tensorflow as tf
_cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(_cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
import keras


def two_replica_strategy():
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    assert strategy.num_replicas_in_sync == 2
    return strategy
"""
    + _HELPERS_LOADER
)


def run_two_replicas(script, *args, helpers=None, env=None, timeout=300):
    """Runs `script` under two logical CPUs in a fresh Python; returns its JSON.

    The script starts after a prelude that configured two logical CPU devices
    and defined `np`, `tf`, `keras`, `json`, `sys`, `os`,
    `two_replica_strategy()` (a `MirroredStrategy` on `/cpu:0` and `/cpu:1`)
    and `helpers` (the test module given as `helpers`, loaded by file path so
    its functions can be reused from any `tests/` folder). It prints one JSON
    object on its last stdout line.

    Args:
        script: Python source of the test body.
        *args: its `sys.argv[1:]`.
        helpers: path of a module to load as `helpers` (usually the test's
            `__file__`). Defaults to `None`.
        env: environment overrides (`None` removes). Defaults to `None`.
        timeout: seconds. Defaults to `300`.

    Example:

    ```python
    out = run_two_replicas('''
        strategy = two_replica_strategy()
        print(json.dumps({"replicas": strategy.num_replicas_in_sync}))
    ''')
    assert out["replicas"] == 2
    ```
    """
    env = dict(env or {}, KERASCNN_TEST_HELPERS=helpers)
    source = _TWO_REPLICA_PRELUDE + textwrap.dedent(script)
    return run_python(source, *args, env=env, timeout=timeout)


_WORKER_PRELUDE = (
    """\
import importlib.util, json, os, sys
import numpy as np
import tensorflow as tf
import keras
import kerascnn  # installs the multi-worker fixes (kerascnn._keras_compat)

TASK_INDEX = json.loads(os.environ["TF_CONFIG"])["task"]["index"]
_STRATEGY = []


def strategy():
    if not _STRATEGY:
        _STRATEGY.append(tf.distribute.MultiWorkerMirroredStrategy())
    return _STRATEGY[0]
"""
    + _HELPERS_LOADER
)


def _kill_group(proc):
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    proc.wait()


def _tail(path, chars=3000):
    with open(path, errors="replace") as f:
        return f.read()[-chars:]


def _workers_report(procs, logs, headline):
    parts = [headline]
    for i, (proc, (_, err)) in enumerate(zip(procs, logs)):
        parts.append(f"--- worker {i} (rc={proc.returncode}) stderr tail:\n{_tail(err)}")
    return "\n".join(parts)


def _last_json(path, index):
    with open(path, errors="replace") as f:
        lines = f.read().strip().splitlines()
    if not lines:
        raise AssertionError(f"worker {index} printed nothing on stdout")
    return json.loads(lines[-1])


def run_workers(script, n=2, *args, helpers=None, env=None, timeout=300, cwd=ROOT):
    """Runs `script` in `n` multi-worker processes on 127.0.0.1; returns their JSON.

    Each worker is a fresh Python in its own process group with a `TF_CONFIG`
    (`cluster.worker` = `n` free loopback ports, `task.index` = its index).
    The script starts after a prelude that imported `np`, `tf`, `keras`,
    `json`, `sys`, `os` and `kerascnn` (which installs the multi-worker fixes)
    and defined `strategy()` (a cached `MultiWorkerMirroredStrategy`: call it
    before any other TensorFlow op), `TASK_INDEX` (this worker's index) and
    `helpers` (the module given as `helpers`, loaded by file path). Each worker
    prints one JSON object on its last stdout line. If a worker fails, or the
    run exceeds `timeout`, every worker's process group is killed and an
    `AssertionError` shows each worker's return code and stderr tail.

    Args:
        script: Python source of the worker body.
        n: number of workers. Defaults to `2`.
        *args: the workers' `sys.argv[1:]`, converted with `str`.
        helpers: path of a module to load as `helpers` (usually the test's
            `__file__`). Defaults to `None`.
        env: environment overrides (`None` removes). Defaults to `None`.
        timeout: seconds for the whole run. Defaults to `300`.
        cwd: working directory. Defaults to the repository root.

    Returns:
        A list of `n` objects, the JSON printed by worker `0`, `1`, ...

    Example:

    ```python
    outs = run_workers('''
        s = strategy()
        print(json.dumps({"replicas": s.num_replicas_in_sync, "task": TASK_INDEX}))
    ''', 2)
    assert [o["task"] for o in outs] == [0, 1]
    ```
    """
    source = _WORKER_PRELUDE + textwrap.dedent(script)
    ports = free_ports(n)
    procs, logs = [], []
    with tempfile.TemporaryDirectory(prefix="kerascnn_workers_") as tmp:
        try:
            for i in range(n):
                overrides = dict(env or {}, KERASCNN_TEST_HELPERS=helpers)
                overrides["TF_CONFIG"] = json.dumps(tf_config(ports, i))
                logs.append((os.path.join(tmp, f"{i}.out"), os.path.join(tmp, f"{i}.err")))
                with open(logs[-1][0], "w") as out, open(logs[-1][1], "w") as err:
                    procs.append(
                        subprocess.Popen(
                            [sys.executable, "-c", source, *map(str, args)],
                            stdout=out,
                            stderr=err,
                            env=subprocess_env(**overrides),
                            cwd=cwd,
                            start_new_session=True,
                        )
                    )
            _wait_workers(procs, logs, timeout)
            return [_last_json(out, i) for i, (out, _) in enumerate(logs)]
        finally:
            for proc in procs:
                _kill_group(proc)


def _wait_workers(procs, logs, timeout):
    deadline = time.monotonic() + timeout
    while True:
        codes = [p.poll() for p in procs]
        failed = [i for i, c in enumerate(codes) if c not in (None, 0)]
        headline = f"worker(s) {failed} failed" if failed else None
        if all(c == 0 for c in codes):
            return
        if headline is None and time.monotonic() > deadline:
            headline = f"timed out after {timeout} s"
        if headline is not None:
            for proc in procs:
                _kill_group(proc)
            raise AssertionError(_workers_report(procs, logs, headline))
        time.sleep(0.1)


_LOAD_AND_PREDICT = """
import sys
import keras
import numpy as np
import kerascnn  # registers the package's serializable objects

model = keras.saving.load_model(sys.argv[1])
inputs = np.load(sys.argv[2])
np.save(sys.argv[3], keras.ops.convert_to_numpy(model(inputs, training=False)))
print("{}")
"""


def run_serialization_test(model, inputs, tmp_path, rtol=1e-5, atol=1e-6, timeout=300):
    """Saves `model` as `.keras`, reloads it in a fresh Python, compares outputs.

    The child process imports only `keras` and `kerascnn`, so the test fails if
    a custom object is not registered on `import kerascnn`.

    Args:
        model: a built `keras.Model`.
        inputs: a NumPy batch for the model.
        tmp_path: a directory for the files.
        rtol: relative tolerance. Defaults to `1e-5`.
        atol: absolute tolerance. Defaults to `1e-6`.
        timeout: seconds. Defaults to `300`.

    Returns:
        The reloaded model's outputs (NumPy).

    Example:

    ```python
    run_serialization_test(model, x, tmp_path)
    ```
    """
    path = os.path.join(tmp_path, "model.keras")
    x_path = os.path.join(tmp_path, "inputs.npy")
    y_path = os.path.join(tmp_path, "outputs.npy")
    model.save(path)
    np.save(x_path, np.asarray(inputs))
    run_python(_LOAD_AND_PREDICT, path, x_path, y_path, timeout=timeout)
    want = keras.ops.convert_to_numpy(model(inputs, training=False))
    got = np.load(y_path)
    np.testing.assert_allclose(got, want, rtol=rtol, atol=atol)
    return got


def tiny_model(input_shape=(8, 8, 1), num_classes=3, filters=(4, 8), name="tiny"):
    """A small Conv-BN-ReLU net with layers `c1`, `c2`, ... and a `head`.

    Args:
        input_shape: image shape. Defaults to `(8, 8, 1)`.
        num_classes: classes. Defaults to `3`.
        filters: filters of each conv layer. Defaults to `(4, 8)`.
        name: model name. Defaults to `"tiny"`.
    """
    inputs = keras.Input(input_shape)
    x = inputs
    for i, f in enumerate(filters, 1):
        x = keras.layers.Conv2D(f, 3, padding="same", use_bias=False, name=f"c{i}")(x)
        x = keras.layers.BatchNormalization(name=f"bn{i}")(x)
        x = keras.layers.ReLU(name=f"relu{i}")(x)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    outputs = keras.layers.Dense(num_classes, name="head")(x)
    return keras.Model(inputs, outputs, name=name)


def tiny_data(n=16, input_shape=(8, 8, 1), num_classes=3, seed=0):
    """Random float32 images and int32 labels `(x, y)` for `tiny_model`.

    Args:
        n: samples. Defaults to `16`.
        input_shape: image shape. Defaults to `(8, 8, 1)`.
        num_classes: classes. Defaults to `3`.
        seed: NumPy seed. Defaults to `0`.
    """
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, *input_shape)).astype("float32")
    y = rng.integers(0, num_classes, size=(n,)).astype("int32")
    return x, y


def fit_with_callbacks(callbacks, model=None, data=None, epochs=2, batch_size=8, lr=0.05, **fit):
    """Compiles (SGD, sparse CE from logits) and fits a tiny model with `callbacks`.

    Args:
        callbacks: list of callbacks.
        model: the model. Defaults to `tiny_model()`.
        data: `(x, y)`. Defaults to `tiny_data()`.
        epochs: epochs. Defaults to `2`.
        batch_size: batch size. Defaults to `8`.
        lr: SGD learning rate. Defaults to `0.05`.
        **fit: more `Model.fit` arguments.

    Returns:
        `(model, history)`.

    Example:

    ```python
    model, history = fit_with_callbacks([StabilityStopping(patience=1)])
    ```
    """
    model = tiny_model() if model is None else model
    x, y = tiny_data() if data is None else data
    model.compile(
        keras.optimizers.SGD(lr),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    fit.setdefault("verbose", 0)
    history = model.fit(
        x, y, batch_size=batch_size, epochs=epochs, callbacks=list(callbacks), **fit
    )
    return model, history


def dense_kernel_map(layer):
    """`(rows, cols)` in `layer.dense_kernel()` of every compact kernel entry.

    For factorized pointwise layers (GPW, RPW): entry `i` of the flattened
    compact kernel sits at `dense[rows[i], cols[i]]`.
    """
    weights = layer.get_weights()
    probe = np.arange(1, weights[0].size + 1, dtype="float32").reshape(weights[0].shape)
    layer.set_weights([probe] + weights[1:])
    dense = layer.dense_kernel()
    layer.set_weights(weights)
    rows, cols = np.nonzero(dense)
    order = np.argsort(dense[rows, cols])
    return rows[order], cols[order]


def output_and_gradients(layer, x, training):
    """`[y, dL/dx, dL/dkernel, dL/dbias]` (numpy) of a layer with `kernel` and `bias`.

    The loss weighs the output channels differently (`sin(channel)`), so a
    permuted output channel changes the gradients.
    """
    x = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = layer(x, training=training)
        weights = tf.sin(tf.range(y.shape[-1], dtype="float32"))
        loss = tf.reduce_sum(tf.cast(y, "float32") * weights)
    grads = tape.gradient(loss, [x, layer.kernel, layer.bias])
    return [y.numpy().astype("float32")] + [g.numpy() for g in grads]
