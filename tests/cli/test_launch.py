"""`kerascnn launch` (kerascnn.training.launch): N local multi-worker processes.

The mechanics (TF_CONFIG, arguments, a dead worker, Ctrl-C) are tested with
stand-in workers (a few lines of Python that read TF_CONFIG), which cost no
TensorFlow start-up; the end-to-end tests run real `kerascnn train` workers.
"""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest
from harness import ROOT, subprocess_env

from kerascnn import cli
from kerascnn.training import launch as launch_lib

# A stand-in worker: records its TF_CONFIG and arguments, then behaves as FAKE_MODE says.
FAKE_WORKER = textwrap.dedent(
    """
    import json, os, signal, sys, time
    index = json.loads(os.environ["TF_CONFIG"])["task"]["index"]
    out = os.environ["FAKE_DIR"]
    mode = os.environ["FAKE_MODE"]

    def on_signal(signum, frame):
        open(os.path.join(out, f"signal{index}"), "w").write(str(signum))
        sys.exit(130)

    signal.signal(signal.SIGINT, on_signal)
    json.dump({"tf_config": json.loads(os.environ["TF_CONFIG"]), "argv": sys.argv[1:],
               "report": os.environ["KERASCNN_WORKER_REPORT"], "pid": os.getpid()},
              open(os.path.join(out, f"worker{index}.json"), "w"))
    print(f"worker {index} up", flush=True)
    if mode == "ok":
        sys.exit(0)
    if mode == "kill1" and index == 1:
        time.sleep(0.5)
        os.kill(os.getpid(), signal.SIGKILL)
    if mode == "status3" and index == 0:
        print("chief: something went wrong", flush=True)
        sys.exit(3)
    time.sleep(120)
    """
)
PROGRAM = [sys.executable, "-c", FAKE_WORKER]


def _fake_launch(tmp_path, mode, workers=2, **kwargs):
    env = {"FAKE_DIR": str(tmp_path), "FAKE_MODE": mode}
    args = ["--epochs", "1", "--output-dir", str(tmp_path / "run")]
    return launch_lib.launch(
        args, workers=workers, program=PROGRAM, env=env, log_dir=tmp_path / "logs", **kwargs
    )


def _worker_record(tmp_path, index):
    with open(tmp_path / f"worker{index}.json") as f:
        return json.load(f)


def test_tf_config_and_arguments_of_every_worker(tmp_path):
    result = _fake_launch(tmp_path, "ok", workers=3)
    assert result["workers"] == 3 and result["run_dir"] == str(tmp_path / "run")
    records = [_worker_record(tmp_path, i) for i in range(3)]
    cluster = records[0]["tf_config"]["cluster"]
    assert len(set(cluster["worker"])) == 3
    assert all(address.startswith("127.0.0.1:") for address in cluster["worker"])
    for i, record in enumerate(records):
        assert record["tf_config"] == {"cluster": cluster, "task": {"type": "worker", "index": i}}
        assert record["argv"] == [
            "--epochs", "1", "--output-dir", str(tmp_path / "run"), "--strategy", "multi_worker"
        ]  # fmt: skip
        assert record["report"] == str(tmp_path / "logs" / f"worker{i}.report.json")
        assert "worker" in (tmp_path / "logs" / f"worker{i}.log").read_text()


def test_a_killed_worker_is_named_and_the_others_stopped(tmp_path, capsys):
    start = time.monotonic()
    with pytest.raises(launch_lib.WorkerFailed) as info:
        _fake_launch(tmp_path, "kill1", grace_period=2)
    assert time.monotonic() - start < 30
    error = info.value
    pid = _worker_record(tmp_path, 1)["pid"]
    assert (error.index, error.pid, error.returncode) == (1, pid, -signal.SIGKILL)
    assert str(error).startswith(f"worker 1 (pid {pid}) was killed by signal SIGKILL;")
    assert "kerascnn launch --workers 2 -- --resume" in str(error)
    chief = _worker_record(tmp_path, 0)["pid"]
    with pytest.raises(ProcessLookupError):
        os.kill(chief, 0)  # stopped and reaped
    assert "last lines of worker 1" in capsys.readouterr().err


def test_a_failed_chief_reports_its_status(tmp_path):
    with pytest.raises(
        launch_lib.WorkerFailed, match=r"^worker 0 \(pid \d+\) exited with status 3"
    ):
        _fake_launch(tmp_path, "status3", grace_period=2)
    assert "something went wrong" in (tmp_path / "logs" / "worker0.log").read_text()


# Runs the launcher (loaded by path: no TensorFlow) with the stand-in workers, in its own process.
_LAUNCHER = """
import importlib.util, sys
spec = importlib.util.spec_from_file_location("launch", sys.argv[1])
launch = importlib.util.module_from_spec(spec)
spec.loader.exec_module(launch)
program = [sys.executable, "-c", sys.argv[2]]
try:
    launch.launch(["--output-dir", sys.argv[3]], workers=2, program=program, grace_period=5)
except KeyboardInterrupt:
    sys.exit(130)
"""


def test_ctrl_c_is_forwarded_to_every_worker(tmp_path):
    path = os.path.join(ROOT, "kerascnn", "training", "launch.py")
    env = subprocess_env(FAKE_DIR=tmp_path, FAKE_MODE="wait")
    proc = subprocess.Popen(
        [sys.executable, "-c", _LAUNCHER, path, FAKE_WORKER, str(tmp_path / "run")],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while not all((tmp_path / f"worker{i}.json").exists() for i in range(2)):
            assert time.monotonic() < deadline and proc.poll() is None, proc.communicate()
            time.sleep(0.1)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 130, err
    for i in range(2):
        assert (tmp_path / f"signal{i}").read_text() == str(int(signal.SIGINT))
    assert "Resume with: kerascnn launch --workers 2 -- --resume" in err


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--workers", "0", "--", "--epochs", "1"], "--workers must be a positive integer"),
        (["--workers", "two"], "--workers must be a positive integer"),
        (["--workers", "2", "--", "--epochs", "x"], "invalid train arguments: argument --epochs"),
        (["--workers", "2", "--", "--strategy", "mirrored"], "leave --strategy out"),
        (["--workers", "2", "--epochs", "1"], "unrecognized arguments: --epochs"),
    ],
)
def test_bad_arguments_are_one_line_errors(argv, message, capsys):
    assert cli.main(["launch", *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1, err


def test_python_api_checks_its_arguments():
    for workers in (0, 1.5, True, "2"):
        with pytest.raises(ValueError, match="workers must be an integer >= 1"):
            launch_lib.launch(["--epochs", "1"], workers=workers)
    with pytest.raises(TypeError, match="train_args must be a list"):
        launch_lib.launch("--epochs 1")
    with pytest.raises(ValueError, match="grace_period must be a positive number"):
        launch_lib.launch([], grace_period=0)


def test_one_run_directory_for_all_workers():
    args, run_dir = launch_lib.worker_arguments(["--epochs", "1"])
    assert run_dir.startswith("runs" + os.sep) and args[-2:] == ["--output-dir", run_dir]
    args, run_dir = launch_lib.worker_arguments(["--resume", "runs/a", "--strategy=multi_worker"])
    assert run_dir == "runs/a" and args == ["--resume", "runs/a", "--strategy=multi_worker"]
    _, run_dir = launch_lib.worker_arguments(["--output", "runs/b"])  # a prefix, as argparse allows
    assert run_dir == "runs/b"


# ---------------------------------------------------------------------------
# End to end: real `kerascnn train` workers started by `kerascnn launch`.

# The tiny run: 256 embedded images, global batch 32 (16 per worker), 2 epochs.
TINY = ["--model", "compact_mnist_1k5_dw", "--dataset", "embedded", "--limit", "256"]
TINY += ["--batch-size", "32", "--epochs", "2", "--verbose", "0", "--seed", "0"]
# StabilityStopping, LayerMetrics and LayerDropping with a drop forced at the end of epoch 1.
CALLBACKS = ["--stability-stopping", "--layer-metrics", "--layer-dropping", "--force-drop", "0:1"]


def _children(pid):
    """The child pids of `pid` (Linux /proc)."""
    kids = []
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{task}/children") as f:
                kids += [int(p) for p in f.read().split()]
        except OSError:
            pass
    return kids


def _worker_pid(launcher_pid, index):
    """The pid of worker `index` among the launcher's children (from its TF_CONFIG)."""
    for pid in _children(launcher_pid):
        try:
            with open(f"/proc/{pid}/environ", "rb") as f:
                env = dict(v.split(b"=", 1) for v in f.read().split(b"\0") if b"=" in v)
        except OSError:
            continue
        if json.loads(env.get(b"TF_CONFIG", b"{}")).get("task", {}).get("index") == index:
            return pid
    return None


class _Launcher:
    """`kerascnn launch ...` in a subprocess of `tmp_path`; never leaves a worker behind."""

    def __init__(self, tmp_path, argv, name="launch"):
        self.out, self.err = tmp_path / f"{name}.out", tmp_path / f"{name}.err"
        (tmp_path / "tmp").mkdir(exist_ok=True)
        env = subprocess_env(TMPDIR=tmp_path / "tmp", KERASCNN_DATA_DIR=None)
        with open(self.out, "w") as out, open(self.err, "w") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "kerascnn", "launch", *argv],
                cwd=tmp_path,
                env=env,
                stdout=out,
                stderr=err,
                start_new_session=True,
            )
        self.workers = []

    def __enter__(self):
        return self

    def wait(self, timeout):
        self.proc.wait(timeout=timeout)
        return self.proc.returncode, self.err.read_text()

    def __exit__(self, *exc):
        if self.proc.poll() is None:
            self.workers = _children(self.proc.pid)
            self.proc.terminate()  # the launcher stops its workers
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                pass
        for pid in [*self.workers, self.proc.pid]:
            try:
                os.killpg(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        self.proc.wait()


# The single-process reference: one process, two replicas (MirroredStrategy on two logical
# CPUs), the same global batches split the same way as over the two workers (batch
# normalization normalizes per replica, so a one-replica run is a different computation).
# It also loads the chief's model.keras in this new process and runs it.
_REFERENCE = """
import json, sys
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
import keras
import kerascnn
from kerascnn import data
from kerascnn.training.run import train

report = train(**json.loads(sys.argv[1]), strategy="mirrored", output_dir=sys.argv[2], plots=False)
x, _ = next(iter(data.load("embedded", "test", batch_size=32)))
chief = keras.saving.load_model(sys.argv[3])
y = chief(x, training=False)
ok = bool(tf.reduce_all(tf.math.is_finite(y))) and tuple(y.shape) == (x.shape[0], 10)
print(json.dumps({"report": report, "chief_model_ok": ok, "replicas": report["num_replicas"]}))
"""
_REFERENCE_KWARGS = dict(
    model="compact_mnist_1k5_dw", dataset="embedded", limit=256, batch_size=32, epochs=2,
    verbose=0, seed=0, stability_stopping=True, layer_metrics=True, layer_dropping=True,
    force_drop="0:1",
)  # fmt: skip


def _drop_epoch(report):
    """The first epoch (0-based) trained with layers dropped, from a report's history."""
    dropped = report["history"].get("learn_drop/dropped_convs", [])
    return next((epoch for epoch, n in enumerate(dropped) if n > 0), None)


def _assert_same_mu(a, b, tolerance):
    assert len(a) == len(b) and a, (a, b)
    for epoch_a, epoch_b in zip(a, b):
        assert epoch_a.keys() == epoch_b.keys()
        for layer in epoch_a:
            assert abs(epoch_a[layer] - epoch_b[layer]) <= tolerance, (layer, epoch_a, epoch_b)


@pytest.mark.slow
def test_launch_two_workers_end_to_end(tmp_path):
    """Closing test of #16: both workers agree, with each other and with one process."""
    from harness import run_python

    argv = ["--workers", "2", "--log-dir", "logs", "--", *TINY, *CALLBACKS, "--output-dir", "run"]
    with _Launcher(tmp_path, argv) as launcher:
        returncode, err = launcher.wait(timeout=600)
    assert returncode == 0, err[-4000:]
    workers = [
        json.loads((tmp_path / "logs" / f"worker{i}.report.json").read_text()) for i in (0, 1)
    ]
    chief = json.loads((tmp_path / "run" / "report.json").read_text())
    assert [w["worker_index"] for w in workers] == [0, 1] and chief["is_chief"]
    assert [w["is_chief"] for w in workers] == [True, False] and chief["num_workers"] == 2
    # mu per layer: equal on both workers (all-reduced), and to the one-process run.
    _assert_same_mu(workers[0]["stability_history"], workers[1]["stability_history"], 1e-12)
    # The drop (decided at the end of epoch 0): at the same epoch on both workers.
    assert _drop_epoch(workers[0]) == _drop_epoch(workers[1]) == 1
    assert [b["epoch"] for w in workers for b in w["layer_dropping"]["builds"]] == [1, 1]
    assert (
        workers[0]["layer_dropping"]["dropped_convs"]
        == workers[1]["layer_dropping"]["dropped_convs"]
    )
    # Only the chief wrote outputs: the run directory is its; worker 1's temp dir is gone.
    assert sorted(os.listdir(tmp_path)) == ["launch.err", "launch.out", "logs", "run", "tmp"]
    assert os.listdir(tmp_path / "tmp") == []
    worker_dir = os.path.dirname(workers[1]["files"]["report"])
    assert worker_dir.startswith(str(tmp_path / "tmp")) and not os.path.exists(worker_dir)
    assert os.path.exists(tmp_path / "run" / "model.keras")
    # One process over the same global batches; the chief's model loads in a new process.
    out = run_python(
        _REFERENCE,
        json.dumps(_REFERENCE_KWARGS),
        tmp_path / "single",
        tmp_path / "run" / "model.keras",
        env={"KERASCNN_DATA_DIR": None},
        timeout=600,
    )
    assert out["replicas"] == 2 and out["chief_model_ok"]
    # Up to the drop the global batches are the same; after it each worker trains the head
    # on its own shard's cached features, reshuffled per worker (other global batches).
    drop = _drop_epoch(out["report"])
    assert drop == 1
    single = out["report"]["stability_history"][:drop]
    _assert_same_mu(workers[0]["stability_history"][:drop], single, 1e-5)


@pytest.mark.slow
def test_a_killed_worker_stops_the_launch_and_the_run_resumes(tmp_path):
    """Closing test of #16: SIGKILL a worker mid-run; the relaunch resumes and finishes."""
    tiny = [a if a != "2" or i != TINY.index("--epochs") + 1 else "4" for i, a in enumerate(TINY)]
    argv = ["--workers", "2", "--log-dir", "logs", "--", *tiny, "--stability-stopping"]
    argv += ["--output-dir", "run"]
    state = tmp_path / "run" / "checkpoint" / "state.json"
    with _Launcher(tmp_path, argv) as launcher:
        deadline = time.monotonic() + 600
        while not (state.exists() and json.loads(state.read_text() or "{}").get("epoch", 0) >= 2):
            assert launcher.proc.poll() is None, launcher.err.read_text()[-4000:]
            assert time.monotonic() < deadline, "no checkpoint of epoch 2"
            time.sleep(0.05)
        victim = _worker_pid(launcher.proc.pid, 1)
        os.kill(victim, signal.SIGKILL)
        killed_at = time.monotonic()
        returncode, err = launcher.wait(timeout=120)
        elapsed = time.monotonic() - killed_at
    assert returncode == 1 and elapsed < 60, (returncode, elapsed, err[-3000:])
    print(f"the launcher exited {elapsed:.1f} s after the kill")  # shown with -s
    line = err.strip().splitlines()[-1]
    assert line.startswith(f"kerascnn launch: error: worker 1 (pid {victim}) was killed by signal")
    assert "kerascnn launch --workers 2 -- --resume run" in line
    resume = ["--workers", "2", "--log-dir", "logs2", "--", "--resume", "run"]
    with _Launcher(tmp_path, resume, name="resume") as launcher:
        returncode, err = launcher.wait(timeout=600)
    assert returncode == 0, err[-4000:]
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    assert report["trained_epochs"] == 4 and not report.get("interrupted")
    assert report["resumed_from_epoch"] >= 2
