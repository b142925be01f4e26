"""keras-tuner's chief/worker mode on localhost: one chief (the oracle server)
and two workers, as subprocesses, running one `kerascnn.tuning.search`."""

import json
import socket
import subprocess
import sys
import textwrap
import time

import pytest
from harness import subprocess_env

TRIALS = 4

SCRIPT = textwrap.dedent(
    """
    import json, os, sys
    import numpy as np
    from kerascnn import tuning as tuner

    rng = np.random.default_rng(0)
    x = rng.random((64, 12, 12, 1), dtype=np.float32)
    y = rng.integers(0, 3, 64).astype("int32")
    result = tuner.search(
        x, y, validation_data=(x[:32], y[:32]), input_shape=(12, 12, 1), classes=3,
        models=["compact_mnist_1k5_dw"], width_multipliers=(0.125, 0.25),
        templates=("base", "uniform"), layouts=("base", "free"), optimizers=("adam",),
        stability_stopping=False, max_trials=TRIALS, epochs=1, batch_size=32,
        directory=sys.argv[1], project_name="dist", seed=3,
    )
    print("RESULT " + json.dumps({
        "tuner_id": os.environ["KERASTUNER_TUNER_ID"], "role": result.role,
        "ran": [t["trial_id"] for t in getattr(result.tuner, "trials_run", [])],
        "trials": [[t["trial_id"], t["status"]] for t in result.trials],
    }))
    """
).replace("TRIALS", str(TRIALS))


def _free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_listening(port, proc, timeout):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc.poll() is not None:
            return False
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.settimeout(0.5)
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return True
        time.sleep(0.5)
    return False


def _result(output):
    lines = [line for line in output.splitlines() if line.startswith("RESULT ")]
    assert lines, output[-3000:]
    return json.loads(lines[-1][len("RESULT ") :])


@pytest.mark.slow
def test_chief_and_two_workers_on_localhost(tmp_path):
    script = tmp_path / "tune_job.py"
    script.write_text(SCRIPT)
    port = _free_port()
    env = subprocess_env(
        KERASTUNER_ORACLE_IP="127.0.0.1", KERASTUNER_ORACLE_PORT=port, CUDA_VISIBLE_DEVICES=""
    )
    procs = {}
    try:
        procs["chief"] = subprocess.Popen(
            [sys.executable, str(script), str(tmp_path / "runs")],
            env=dict(env, KERASTUNER_TUNER_ID="chief"),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        # The chief deletes the project folder (overwrite) before serving:
        # start the workers once it listens.
        assert _wait_listening(port, procs["chief"], 120), "the chief never listened"
        for name in ("tuner0", "tuner1"):
            procs[name] = subprocess.Popen(
                [sys.executable, str(script), str(tmp_path / "runs")],
                env=dict(env, KERASTUNER_TUNER_ID=name),
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
        outputs = {}
        for name in ("tuner0", "tuner1", "chief"):
            # The chief polls its workers every 20 s once the last trial is handed out.
            outputs[name], _ = procs[name].communicate(timeout=240)
            assert procs[name].returncode == 0, (name, outputs[name][-3000:])
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=30)

    chief = _result(outputs["chief"])
    workers = [_result(outputs[n]) for n in ("tuner0", "tuner1")]
    assert chief["role"] == "chief"
    assert chief["ran"] == []  # the chief only serves the oracle
    # Every trial completed, and the chief's oracle knows all of them.
    assert len(chief["trials"]) == TRIALS
    assert all(status == "COMPLETED" for _, status in chief["trials"]), chief["trials"]
    # Both workers ran trials, and together exactly the chief's trials.
    assert all(w["role"] == "worker" and w["ran"] for w in workers), workers
    ran = sorted(t for w in workers for t in w["ran"])
    assert ran == sorted(t for t, _ in chief["trials"])


@pytest.mark.parametrize("tuner_id", ["tuner0"])
def test_worker_never_overwrites(monkeypatch, tuner_id, tmp_path):
    # A worker must not delete the chief's files: make_tuner forces overwrite=False.
    # (No server here: check the tuner's settings before any request.)
    from kerascnn import tuning as tuner

    monkeypatch.setenv("KERASTUNER_TUNER_ID", tuner_id)
    monkeypatch.setenv("KERASTUNER_ORACLE_IP", "127.0.0.1")
    monkeypatch.setenv("KERASTUNER_ORACLE_PORT", str(_free_port()))
    marker = tmp_path / "proj" / "keep.txt"
    marker.parent.mkdir()
    marker.write_text("chief's file")
    hm = tuner.CNNHyperModel(
        (12, 12, 1), 3, models=["compact_mnist_1k5_dw"], stability_stopping=False
    )
    tuner.make_tuner(hm, "random", max_trials=2, directory=str(tmp_path), project_name="proj")
    assert marker.read_text() == "chief's file"
    assert tuner.role() == "worker"
