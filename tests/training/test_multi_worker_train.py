"""`kerascnn train --strategy multi_worker`: two worker processes on 127.0.0.1.

The workers run through `harness.run_workers` (one process group per worker,
a TF_CONFIG on free loopback ports). Checked: both workers finish, only the
chief's run directory holds outputs, the other worker's temporary directory
is gone, report.json says 2 workers and how the input was sharded, the model
loads in another process (this one); a bad TF_CONFIG fails before anything
runs; a worker that dies stops the chief with a clear error naming it and the
run resumes from the chief's checkpoint on every worker (slow).
"""

import glob
import json
import os

import pytest
from harness import run_workers

from kerascnn.training import workers
from kerascnn.training.config import TrainConfig

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
    "2",
    "--strategy",
    "multi_worker",
    "--collective-timeout",
    "60",
    "--verbose",
    "0",
]

CLI_SCRIPT = """
import glob, tempfile
from kerascnn import cli

out = sys.argv[1]
mine = os.path.join(tempfile.gettempdir(), f"kerascnn-worker{TASK_INDEX}-*")
before = set(glob.glob(mine))
os.environ["KERASCNN_WORKER_REPORT"] = os.path.join(sys.argv[2], f"worker{TASK_INDEX}.json")
code = cli.main(json.loads(sys.argv[3]) + ["--output-dir", out])
after = set(glob.glob(mine))
print(json.dumps({"code": code, "new_temp_dirs": sorted(after - before)}))
"""


@pytest.fixture(scope="module")
def two_workers(tmp_path_factory):
    root = tmp_path_factory.mktemp("mw")
    run_dir, reports, tmp = root / "run", root / "reports", root / "tmp"
    reports.mkdir()
    tmp.mkdir()  # the workers' TMPDIR
    outs = run_workers(
        CLI_SCRIPT,
        2,
        run_dir,
        reports,
        json.dumps(ARGS),
        env={"KERASCNN_DATA_DIR": None, "KERASCNN_CACHE_DIR": root / "cache", "TMPDIR": tmp},
        timeout=240,
    )
    worker_reports = [json.loads((reports / f"worker{i}.json").read_text()) for i in (0, 1)]
    return dict(outs=outs, run_dir=str(run_dir), reports=worker_reports, root=root)


def test_two_workers_train_and_only_the_chief_writes(two_workers):
    outs, run_dir = two_workers["outs"], two_workers["run_dir"]
    assert [o["code"] for o in outs] == [0, 0]
    assert all(not o["new_temp_dirs"] for o in outs)  # worker 1's temp dir removed
    written = sorted(os.listdir(run_dir))
    assert {"model.keras", "report.json", "run_config.json", "logs"} <= set(written)
    assert "checkpoint" not in written  # removed when the run finished
    # Nothing but the run dir and the test's own folders was written (no worker1 copy).
    root = two_workers["root"]
    assert set(os.listdir(root)) <= {"cache", "reports", "run", "tmp"}
    assert not glob.glob(str(root / "tmp" / "kerascnn-worker*"))
    chief, other = two_workers["reports"]
    assert chief["is_chief"] and not other["is_chief"]
    assert other["output_dir"] != run_dir and not os.path.exists(other["output_dir"])
    assert other["output_dir"].startswith(str(root / "tmp" / "kerascnn-worker1-"))
    assert other["run_dir"] == chief["run_dir"] == chief["output_dir"] == run_dir


def test_report_records_the_workers_and_sharding(two_workers):
    with open(os.path.join(two_workers["run_dir"], "report.json")) as f:
        report = json.load(f)
    assert report["strategy"] == "MultiWorkerMirroredStrategy"
    assert report["num_workers"] == 2 and report["num_replicas"] == 2
    assert report["worker_index"] == 0 and report["is_chief"]
    assert report["input_sharding"]["policy"] == "DATA"
    assert report["global_batch_size"] == 64 and report["per_worker_batch_size"] == 32
    assert report["collective_timeout_s"] == 60
    assert report["trained_epochs"] == 2 and report["args"]["strategy"] == "multi_worker"
    # Synchronous training: both workers end with the same history.
    other = two_workers["reports"][1]
    assert other["history"]["loss"] == pytest.approx(report["history"]["loss"], rel=1e-6)
    assert other["test_accuracy"] == pytest.approx(report["test_accuracy"], abs=1e-6)


def test_chief_model_loads_in_another_process(two_workers):
    import keras

    from kerascnn import data

    with open(os.path.join(two_workers["run_dir"], "report.json")) as f:
        report = json.load(f)
    model = keras.saving.load_model(os.path.join(two_workers["run_dir"], "model.keras"))
    test = data.load("embedded", "test", batch_size=128, shuffle=False)
    result = model.evaluate(test, verbose=0, return_dict=True)
    assert result["accuracy"] == pytest.approx(report["test_accuracy"], abs=1e-6)


@pytest.mark.parametrize(
    "tf_config, problem",
    [
        (None, "it is not set"),
        ("{not json", "not valid JSON"),
        ('{"cluster": {}}', 'needs a "cluster"'),
        ('{"cluster": {"worker": ["127.0.0.1:1"]}, "task": {"type": "ps"}}', 'needs a "task"'),
        (
            '{"cluster": {"worker": ["127.0.0.1:1"]}, "task": {"type": "worker", "index": 3}}',
            "task worker 3 is not in",
        ),
    ],
)
def test_bad_tf_config_fails_before_anything_runs(monkeypatch, tmp_path, tf_config, problem):
    if tf_config is None:
        monkeypatch.delenv("TF_CONFIG", raising=False)
    else:
        monkeypatch.setenv("TF_CONFIG", tf_config)
    config = TrainConfig(strategy="multi_worker", output_dir=str(tmp_path / "run"))
    with pytest.raises(ValueError, match=problem) as info:
        config.validate()
    assert "TF_CONFIG" in str(info.value) and f"Received: TF_CONFIG={tf_config!r}" in str(
        info.value
    )
    assert not os.path.exists(tmp_path / "run")


def test_cli_bad_tf_config_is_one_line_and_status_2(monkeypatch, tmp_path, capsys):
    from kerascnn import cli

    monkeypatch.setenv("TF_CONFIG", "[]")
    code = cli.main(["train", "--strategy", "multi_worker", "--output-dir", str(tmp_path / "r")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    assert "kerascnn train: error:" in err and "Received: TF_CONFIG='[]'" in err
    assert not os.path.exists(tmp_path / "r")


def test_multi_worker_strategy_after_tensorflow_ran_is_a_clear_error(monkeypatch):
    import tensorflow as tf

    from kerascnn.training import recipe

    tf.constant(1.0) + 1.0  # the runtime has started: collectives can no longer be configured
    tf_config = '{"cluster": {"worker": ["127.0.0.1:1"]}, "task": {"type": "worker", "index": 0}}'
    monkeypatch.setenv("TF_CONFIG", tf_config)
    with pytest.raises(ValueError, match="must be created before TensorFlow runs any operation"):
        recipe.make_strategy("multi_worker", collective_timeout=5)


def test_collective_timeout_is_checked():
    with pytest.raises(ValueError, match="collective_timeout"):
        TrainConfig(collective_timeout=0).validate()


def test_force_drop_reaches_layer_dropping():
    from kerascnn.training.plugins import make_plugin_callbacks

    config = TrainConfig(layer_dropping=True, force_drop="0:4").validate()
    assert config.force_drop == {0: 4}
    assert make_plugin_callbacks(config)["layer_dropping"].force_drops == {0: 4}
    # As read back from run_config.json (JSON keys are strings), or a layer name.
    assert TrainConfig(layer_dropping=True, force_drop={"1": "conv_3"}).validate().force_drop == {
        1: "conv_3"
    }
    with pytest.raises(ValueError, match="force_drop needs layer_dropping"):
        TrainConfig(force_drop="0:4").validate()
    for bad in ("4", "x:4", "0:0", "-1:2"):
        with pytest.raises(ValueError, match="force_drop must be 'EPOCH:CUT'"):
            TrainConfig(layer_dropping=True, force_drop=bad).validate()


def test_shard_policy_and_failure_message():
    assert workers.shard_policy(in_memory=True, num_workers=2)[0] == "DATA"
    assert workers.shard_policy(in_memory=False, num_workers=2, num_files=4)[0] == "FILE"
    assert workers.shard_policy(in_memory=False, num_workers=4, num_files=2)[0] == "DATA"
    assert workers.shard_policy(in_memory=False, num_workers=2, num_files=4, limit=9)[0] == "DATA"
    info = workers.read_tf_config(
        '{"cluster": {"worker": ["127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3"]}, '
        '"task": {"type": "worker", "index": 0}}'
    )
    error = RuntimeError(
        "Graph execution error:\n\nDetected at node CollectiveReduceV2 defined at (most recent "
        'call last):\n  File "x.py", line 1, in <module>\n\nCollective ops is aborted by: '
        "cluster check alive failed, /job:worker/replica:0/task:2 is down\nThe error could be "
        "from a previous operation.\n\t [[{{node CollectiveReduceV2}}]] [Op:__inference_f_1]"
    )
    assert workers.is_peer_failure(error)
    worker, message = workers.failure_message(error, info, 1, "/runs/x")
    assert worker == 2
    assert message.startswith(
        "worker 2 of 3 stopped responding (RuntimeError: Collective ops is aborted by: cluster "
        "check alive failed, /job:worker/replica:0/task:2 is down); the run stopped after epoch 1."
    )
    assert message.endswith("resume with: kerascnn launch --workers 3 -- --resume /runs/x")
    assert not workers.is_peer_failure(ValueError("bad shape"))


def test_stale_worker_dirs_of_dead_processes_are_removed(tmp_path):
    import subprocess
    import sys

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = tmp_path / f"kerascnn-worker1-{dead.pid}-abc"
    live = tmp_path / f"kerascnn-worker1-{os.getpid()}-abc"
    other = tmp_path / "kerascnn-worker1-notapid"
    for path in (stale, live, other):
        path.mkdir()
    assert workers.remove_stale_worker_dirs(str(tmp_path)) == [str(stale)]
    assert sorted(os.listdir(tmp_path)) == sorted([live.name, other.name])


KILL_SCRIPT = """
import glob, tempfile, time
from kerascnn.training import run as train_module

out, resume = sys.argv[1], sys.argv[2] == "resume"
kwargs = dict(model="compact_mnist_1k5_dw", dataset="embedded", limit=256, batch_size=64,
              epochs=3, strategy="multi_worker", collective_timeout=20, verbose=0)


class DieAtEpoch(keras.callbacks.Callback):
    # Worker 1 leaves abruptly after the first step of epoch 2 (the chief has
    # committed epoch 1's checkpoint by then).
    def on_train_batch_end(self, batch, logs=None):
        if self._epoch == 1 and batch == 0:
            print(json.dumps({"died": True}), flush=True)
            os._exit(0)

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch


start = time.monotonic()
result = {}
if resume:
    report = train_module.train(resume=out, verbose=0)
    result.update(trained=report["trained_epochs"], resumed=report["resumed_from_epoch"])
elif TASK_INDEX == 1:
    train_module.train(output_dir=out, callbacks=[DieAtEpoch()], **kwargs)
else:  # the chief, through the command line
    import contextlib, io
    from kerascnn import cli

    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        code = cli.main(["train", *json.loads(sys.argv[3]), "--output-dir", out])
    result.update(code=code, stderr=err.getvalue())
result["seconds"] = time.monotonic() - start
mine = os.path.join(tempfile.gettempdir(), f"kerascnn-worker{TASK_INDEX}-*")
result["temp_dirs"] = sorted(glob.glob(mine))
print(json.dumps(result), flush=True)
"""


@pytest.mark.slow
def test_dead_worker_stops_the_chief_and_the_run_resumes(tmp_path):
    run_dir = tmp_path / "run"
    (tmp_path / "tmp").mkdir()
    env = {"KERASCNN_DATA_DIR": None, "KERASCNN_CACHE_DIR": tmp_path / "cache"}
    env["TMPDIR"] = tmp_path / "tmp"
    cli_args = ["--model", "compact_mnist_1k5_dw", "--dataset", "embedded", "--limit", "256"]
    cli_args += ["--batch-size", "64", "--epochs", "3", "--strategy", "multi_worker"]
    cli_args += ["--collective-timeout", "20", "--verbose", "0"]
    chief, dead = run_workers(
        KILL_SCRIPT, 2, run_dir, "new", json.dumps(cli_args), env=env, timeout=240
    )
    print(json.dumps(chief))
    assert dead == {"died": True}
    # One line on stderr, exit status 3.
    assert chief["code"] == 3 and chief["stderr"].count("\n") == 1
    line = chief["stderr"].strip()
    assert line.startswith("kerascnn train: error: worker 1 of 2 stopped responding")
    assert "the run stopped after epoch 1" in line
    assert line.endswith(f"resume with: kerascnn launch --workers 2 -- --resume {run_dir}")
    with open(run_dir / "report.json") as f:
        partial = json.load(f)
    assert partial["interrupted"] and partial["trained_epochs"] == 1
    assert partial["failed_worker"] == 1
    assert os.path.exists(run_dir / "checkpoint" / "state.json")
    # Within the collective timeout (20 s) plus set-up and 1 epoch.
    assert chief["seconds"] < 120
    # Relaunch every worker on the same run directory: it resumes after epoch 1
    # (worker 1 removes the temporary directory its killed predecessor left).
    outs = run_workers(KILL_SCRIPT, 2, run_dir, "resume", "[]", env=env, timeout=240)
    assert [(o["trained"], o["resumed"]) for o in outs] == [(3, 1), (3, 1)]
    assert not os.path.exists(run_dir / "checkpoint")
    assert chief["temp_dirs"] == [] and all(o["temp_dirs"] == [] for o in outs)
    assert not glob.glob(str(run_dir / "*.tmp"))
    assert not glob.glob(str(tmp_path / "tmp" / "kerascnn-worker*"))
