"""`kerascnn train` interrupted by real signals (SIGINT, SIGKILL) and resumed.

The CLI runs in subprocesses through a small driver that forces an early
Learn&Drop drop (a drop at the end of epoch 0, so the interrupted epochs
already train the head on cached features) and, when asked, stops at the
first batch of a given epoch, after saving the weights there (half an
epoch trained), until the test sends its signal. Also: stale feature-cache
directories of dead processes are removed at the next start.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from kerascnn.callbacks.learn_drop import feature_cache
from kerascnn.callbacks.learn_drop.feature_cache import FeatureCache, remove_stale_caches

EPOCHS = 5
ARGS = [
    "train",
    "--model",
    "compact_mnist_1k5_dw",
    "--dataset",
    "embedded",
    "--limit",
    "256",
    "--batch-size",
    "64",
    "--epochs",
    str(EPOCHS),
    "--layer-dropping",
    "--verbose",
    "2",
]

DRIVER = textwrap.dedent(
    """
    import os, signal, sys, time

    # A shell starts background jobs with SIGINT ignored; the test sends a real
    # SIGINT, so Python's own handler (KeyboardInterrupt) is installed here.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    import numpy as np
    from kerascnn.training import run as train_module
    from kerascnn.callbacks import LayerDropping

    pause_epoch, _, ready = os.environ.get("KERASCNN_TEST_PAUSE", "-1:").partition(":")
    pause_epoch = int(pause_epoch)  # pause at this epoch's first batch; READY_FILE tells


    class PausingDropping(LayerDropping):
        def on_epoch_begin(self, epoch, logs=None):
            self._test_epoch = epoch
            super().on_epoch_begin(epoch, logs)

        def on_train_batch_end(self, batch, logs=None):
            super().on_train_batch_end(batch, logs)
            if self._test_epoch == pause_epoch and batch == 0:
                np.savez(ready + ".npz", *self.model.get_weights())
                open(ready, "w").close()
                deadline = time.monotonic() + 300
                while time.monotonic() < deadline:
                    time.sleep(0.05)


    def factory(config):
        # Only the forced drop (4 convolutions, at the end of epoch 0): no score decision.
        return PausingDropping(warmup_epochs=100, force_drops={0: 4}, verbose=1)


    _, _, reporter = train_module.CALLBACK_FACTORIES["layer_dropping"]
    train_module.CALLBACK_FACTORIES["layer_dropping"] = ("layer_dropping", factory, reporter)
    from kerascnn.cli import main

    sys.exit(main(sys.argv[1:]))
    """
)

# Loads each model (a fresh process importing only keras and kerascnn), compares
# its weights with a checkpoint and with the weights saved mid-epoch, evaluates it.
CHECK_MODELS = textwrap.dedent(
    """
    import json, sys
    import keras, kerascnn
    import numpy as np
    from kerascnn import data

    test = data.load("embedded", "test", 256, shuffle=False)
    results = []
    for model_path, checkpoint, halfway in json.loads(sys.argv[1]):
        model = keras.saving.load_model(model_path)
        weights = [np.asarray(w) for w in model.get_weights()]
        result = {}
        if checkpoint:
            other = keras.saving.load_model(model_path)
            other.load_weights(checkpoint)
            pairs = zip(weights, other.get_weights())
            result["equals_checkpoint"] = all(np.array_equal(a, b) for a, b in pairs)
            saved = np.load(halfway)
            result["equals_halfway"] = all(
                np.array_equal(a, saved[f"arr_{i}"]) for i, a in enumerate(weights)
            )
        evaluation = model.evaluate(test, verbose=0, return_dict=True)
        result["accuracy"] = float(evaluation["accuracy"])
        results.append(result)
    print("RESULT " + json.dumps(results))
    """
)


@pytest.fixture
def env(tmp_path):
    env = dict(os.environ)
    env.pop("KERASCNN_DATA_DIR", None)
    env.update(
        TF_CPP_MIN_LOG_LEVEL="2",
        MPLBACKEND="Agg",
        KERASCNN_CACHE_DIR=str(tmp_path / "cache"),
        PYTHONPATH=os.pathsep.join(filter(None, [os.getcwd(), env.get("PYTHONPATH")])),
    )
    env.pop("KERASCNN_TEST_PAUSE", None)
    return env


def _driver(tmp_path):
    path = tmp_path / "driver.py"
    path.write_text(DRIVER)
    return str(path)


def _start(tmp_path, env, args, pause=None):
    env = dict(env)
    ready = None
    if pause is not None:
        ready = tmp_path / f"ready-{pause}-{time.monotonic_ns()}"
        env["KERASCNN_TEST_PAUSE"] = f"{pause}:{ready}"
    log = open(tmp_path / f"log-{time.monotonic_ns()}.txt", "w+")
    process = subprocess.Popen(
        [sys.executable, _driver(tmp_path), *args],
        cwd=tmp_path,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    return process, log, ready


def _output(log):
    log.flush()
    log.seek(0)
    return log.read()


def _wait_ready(process, log, ready, timeout=240):
    deadline = time.monotonic() + timeout
    while not ready.exists():
        assert process.poll() is None, f"the run ended before pausing:\n{_output(log)[-3000:]}"
        assert time.monotonic() < deadline, f"no pause in {timeout} s:\n{_output(log)[-3000:]}"
        time.sleep(0.2)


def _finish(process, log, timeout=300):
    try:
        code = process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        raise
    return code, _output(log)


def _run_dir(tmp_path):
    runs = sorted((tmp_path / "runs").iterdir())
    assert len(runs) == 1, runs
    return runs[0]


def _report(run_dir):
    with open(run_dir / "report.json") as f:
        return json.load(f)


def _check_models(tmp_path, env, jobs):
    script = tmp_path / "check_models.py"
    script.write_text(CHECK_MODELS)
    out = subprocess.run(
        [sys.executable, str(script), json.dumps([[str(p) if p else "" for p in j] for j in jobs])],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    line = [x for x in out.stdout.splitlines() if x.startswith("RESULT ")][-1]
    return json.loads(line[len("RESULT ") :])


@pytest.mark.slow
def test_sigint_then_sigkill_then_resume_to_the_planned_epochs(tmp_path, env):
    # 1. Ctrl-C in epoch 3 (index 2): the drop happened at the end of epoch 1.
    process, log, ready_sigint = _start(tmp_path, env, ARGS, pause=2)
    _wait_ready(process, log, ready_sigint)
    run_dir = _run_dir(tmp_path)
    state = json.loads((run_dir / "checkpoint" / "state.json").read_text())
    assert state["epoch"] == 2
    process.send_signal(signal.SIGINT)
    code, output = _finish(process, log)
    assert code == 130, output[-3000:]
    relative = os.path.join("runs", run_dir.name)
    resume_lines = [line for line in output.splitlines() if line.startswith("resume with:")]
    assert resume_lines == [f"resume with: kerascnn train --resume {relative}"], output[-3000:]
    report = _report(run_dir)
    assert report["interrupted"] is True
    assert report["trained_epochs"] == 2 and report["planned_epochs"] == EPOCHS
    assert len(report["history"]["loss"]) == 2
    assert report["history"]["learn_drop/dropped_convs"] == [0.0, 4.0]
    assert report["resume_command"] == f"kerascnn train --resume {relative}"
    # Kept for the fresh-process check at the end (the resumed run replaces them).
    interrupted = [tmp_path / "interrupted.keras", tmp_path / "interrupted.weights.h5"]
    shutil.copy(run_dir / "model.keras", interrupted[0])
    shutil.copy(run_dir / "checkpoint" / state["weights"], interrupted[1])
    interrupted_accuracy = report["history"]["val_accuracy"][-1]

    # 2. Resume, then SIGKILL in epoch 4 (index 3): nothing is written on the way out.
    process, log, ready = _start(tmp_path, env, ["train", "--resume", relative], pause=3)
    _wait_ready(process, log, ready)
    process.send_signal(signal.SIGKILL)
    code, output = _finish(process, log)
    assert code == -signal.SIGKILL
    assert "resuming" in output and "after epoch 2 of 5" in output, output[-3000:]
    assert json.loads((run_dir / "checkpoint" / "state.json").read_text())["epoch"] == 3
    assert _report(run_dir)["trained_epochs"] == 2  # still the SIGINT's partial report

    # 3. Resume the killed run: it reaches the planned epochs with the drop restored.
    process, log, _ = _start(tmp_path, env, ["train", "--resume", relative])
    code, output = _finish(process, log)
    assert code == 0, output[-3000:]
    report = _report(run_dir)
    assert report["interrupted"] is False and report["resumed_from_epoch"] == 3
    assert report["trained_epochs"] == report["planned_epochs"] == EPOCHS
    assert len(report["history"]["loss"]) == len(report["epoch_times_s"]) == EPOCHS
    assert report["history"]["learn_drop/dropped_convs"][2:] == [4.0, 4.0, 4.0]
    assert report["layer_dropping"]["dropped_convs"] == 4
    assert report["args"]["epochs"] == EPOCHS and report["args"]["limit"] == 256
    assert not (run_dir / "checkpoint").exists()  # removed once finished

    # Both models load in a fresh process. The interrupted run's model.keras holds
    # the last finished epoch (the checkpoint), not the half-trained weights.
    jobs = [(*interrupted, f"{ready_sigint}.npz"), (run_dir / "model.keras", None, None)]
    first, final = _check_models(tmp_path, env, jobs)
    assert first["equals_checkpoint"] is True and first["equals_halfway"] is False
    assert first["accuracy"] == pytest.approx(interrupted_accuracy, abs=1e-6)
    assert final["accuracy"] == pytest.approx(report["test_accuracy"], abs=1e-6)
    # (A finished run, or changed options, given to --resume: tests/test_train.py.)


def _owned_cache_dir(parent, pid, start_time, name, host=None):
    path = parent / f"{feature_cache.CACHE_PREFIX}{name}"
    path.mkdir()
    (path / "shard-000.tfrecord").write_bytes(b"0" * 1024)
    owner = {"host": host or feature_cache.socket.gethostname(), "pid": pid}
    owner["start_time"] = start_time
    (path / feature_cache.OWNER_FILE).write_text(json.dumps(owner))
    return path


def _dead_pid():
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_stale_feature_cache_of_a_dead_process_is_removed_at_the_next_start(tmp_path):
    me = os.getpid()
    my_start = feature_cache._process_start_time(me)
    dead = _owned_cache_dir(tmp_path, _dead_pid(), None, "dead")
    # pid reuse: a live pid whose process started at another time is not the owner.
    reused = _owned_cache_dir(tmp_path, me, (my_start or 0) + 12345, "reused")
    live = _owned_cache_dir(tmp_path, me, my_start, "live")
    other_host = _owned_cache_dir(tmp_path, _dead_pid(), None, "host", host="elsewhere.invalid")
    no_owner = tmp_path / f"{feature_cache.CACHE_PREFIX}noowner"
    no_owner.mkdir()
    foreign = tmp_path / "not_a_cache"
    foreign.mkdir()
    (foreign / feature_cache.OWNER_FILE).write_text(json.dumps({"host": "x", "pid": 1}))

    cache = FeatureCache(directory=str(tmp_path))
    assert not dead.exists()
    assert reused.exists() is (my_start is None)  # without /proc only the pid is checked
    for kept in (live, other_host, no_owner, foreign):
        assert kept.exists(), kept
    owner = json.loads((tmp_path / os.path.basename(cache.path) / "owner.json").read_text())
    assert owner["pid"] == me and owner["start_time"] == my_start
    cache.append(np.ones((2, 3), "float32"), np.arange(2))
    cache.finalize()
    assert sum(1 for _ in cache.dataset(2, repeat=False)) == 1  # the owner file is not read
    assert remove_stale_caches(str(tmp_path)) == []  # the live cache stays
    cache.cleanup()


@pytest.mark.slow
def test_sigkilled_cache_owner_leaves_a_directory_the_next_cache_removes(tmp_path):
    script = (
        "import os, sys, time\n"
        "from kerascnn.callbacks.learn_drop.feature_cache import FeatureCache\n"
        "cache = FeatureCache(directory=sys.argv[1])\n"
        "print(cache.path, flush=True)\n"
        "time.sleep(300)\n"
    )
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    process = subprocess.Popen(
        [sys.executable, "-c", script, str(tmp_path)], stdout=subprocess.PIPE, text=True, env=env
    )
    path = process.stdout.readline().strip()
    assert os.path.isdir(path)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=60)
    process.stdout.close()
    assert os.path.isdir(path)  # SIGKILL: no cleanup ran
    cache = FeatureCache(directory=str(tmp_path))
    assert not os.path.exists(path)
    cache.cleanup()
