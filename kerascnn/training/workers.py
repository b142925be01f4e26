"""Multi-worker runs of `kerascnn train`: TF_CONFIG, sharding, chief-only outputs, failures.

`kerascnn train --strategy multi_worker` (`train(strategy="multi_worker")`)
runs the same command in every worker process, each with its own standard
`TF_CONFIG` environment variable (the cluster and its own task):

```
TF_CONFIG='{"cluster": {"worker": ["host0:12345", "host1:12345"]},
            "task": {"type": "worker", "index": 0}}'
```

This module holds what the run needs besides the strategy itself
(`kerascnn.training.recipe.make_strategy` builds the one
`tf.distribute.MultiWorkerMirroredStrategy` of the process):

- `read_tf_config`: the checked `TF_CONFIG` (a ValueError naming it and its
  value when it is missing or wrong, before anything is written);
- `shard_policy`: how each worker reads its share of the input
  (`tf.data.experimental.AutoShardPolicy` DATA or FILE) and why;
- `worker_output_dir` / `remove_worker_dir`: the chief writes into the run
  directory; every other worker writes the same files (saving may need
  collectives, so every worker must save) into a temporary directory that
  it removes at the end;
- `WorkerFailure` and `failure_message`: a dead or unresponsive peer turns
  into one clear error with the command that resumes the run.

The chief is the task of type `"chief"`, else worker 0
(`kerascnn._distribute.is_chief`). Nothing here imports TensorFlow.

Example:

```python
from kerascnn.training import workers

workers.shard_policy(in_memory=True, num_workers=2)  # ("DATA", "in-memory source: ...")
```
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import tempfile

from kerascnn import _checks

#: Seconds a collective (all-reduce, broadcast) may wait for a peer before failing.
DEFAULT_COLLECTIVE_TIMEOUT = 120.0
#: The exit status of `kerascnn train` when a peer worker died or stopped responding.
WORKER_FAILURE_EXIT_CODE = 3
#: Environment variable: when set, every worker writes its final report (JSON) to this path.
WORKER_REPORT_ENV = "KERASCNN_WORKER_REPORT"
#: Prefix of a non-chief worker's temporary output directory.
WORKER_DIR_PREFIX = "kerascnn-worker"
_EXAMPLE = (
    'TF_CONFIG=\'{"cluster": {"worker": ["host0:12345", "host1:12345"]}, '
    '"task": {"type": "worker", "index": 0}}\''
)
_JOBS = ("chief", "worker")


class WorkerFailure(RuntimeError):
    """A peer worker of a multi-worker run died or stopped responding.

    The message names the worker (when TensorFlow's error does), says after
    which epoch the run stopped and ends with `resume with: <command>`.
    `worker` is the failed worker's index (None when unknown).
    """

    def __init__(self, message, worker=None):
        super().__init__(message)
        self.worker = worker


def _tf_config_error(problem, raw):
    shown = None if raw is None else raw
    return ValueError(
        f"strategy='multi_worker' reads the cluster from the TF_CONFIG environment variable: "
        f"{problem}. Set it on every worker, e.g. {_EXAMPLE} (worker 1 with index 1), or start "
        f"the workers with `kerascnn launch --workers N -- <train options>`. "
        f"{_checks.received('TF_CONFIG', shown)}"
    )


def read_tf_config(raw=None):
    """The checked `TF_CONFIG` of this process.

    Args:
        raw: the JSON text. Defaults to None: `os.environ["TF_CONFIG"]`.

    Returns:
        A dict: `cluster` (`{job: [addresses]}`), `task_type`, `task_index`,
        `num_workers` (`"chief"` plus `"worker"` tasks), `worker_index`
        (0 for the chief) and `is_chief`.

    Raises:
        ValueError: TF_CONFIG is missing, not JSON, or its cluster or task
            is malformed (the message names TF_CONFIG and its value).

    Example:

    >>> info = read_tf_config('{"cluster": {"worker": ["127.0.0.1:5000", "127.0.0.1:5001"]}, '
    ...                       '"task": {"type": "worker", "index": 1}}')
    >>> info["num_workers"], info["is_chief"]
    (2, False)
    """
    raw = os.environ.get("TF_CONFIG") if raw is None else raw
    if raw is None or not str(raw).strip():
        raise _tf_config_error("it is not set", raw)
    try:
        parsed = json.loads(raw)
    except ValueError as error:
        raise _tf_config_error(f"it is not valid JSON ({error})", raw) from None
    cluster = parsed.get("cluster") if isinstance(parsed, dict) else None
    if not isinstance(cluster, dict) or not any(cluster.get(job) for job in _JOBS):
        raise _tf_config_error('it needs a "cluster" with a "worker" (or "chief") list', raw)
    for job, addresses in cluster.items():
        if not isinstance(addresses, list) or not all(
            isinstance(a, str) and ":" in a for a in addresses
        ):
            raise _tf_config_error(f'cluster "{job}" must be a list of "host:port" strings', raw)
    task = parsed.get("task")
    task_type = task.get("type") if isinstance(task, dict) else None
    index = task.get("index", 0) if isinstance(task, dict) else None
    if task_type not in _JOBS or isinstance(index, bool) or not isinstance(index, int):
        raise _tf_config_error(
            'it needs a "task" with "type" "worker" or "chief" and an integer "index"', raw
        )
    if not 0 <= index < len(cluster.get(task_type) or []):
        raise _tf_config_error(
            f"task {task_type} {index} is not in the cluster's {task_type!r} list", raw
        )
    chiefs = len(cluster.get("chief") or [])
    return dict(
        cluster=cluster,
        task_type=task_type,
        task_index=index,
        num_workers=chiefs + len(cluster.get("worker") or []),
        worker_index=0 if task_type == "chief" else index + chiefs,
        is_chief=task_type == "chief" or (chiefs == 0 and index == 0),
    )


def strategy_workers(strategy):
    """The worker dict of `read_tf_config` for a multi-worker strategy, else None.

    Asks the strategy's cluster resolver (`kerascnn._distribute` says who
    the chief is), so a `tf.distribute.MultiWorkerMirroredStrategy` passed
    as an object is handled like `strategy="multi_worker"`.
    """
    from kerascnn import _distribute

    resolver = getattr(strategy, "cluster_resolver", None) if strategy is not None else None
    cluster = resolver.cluster_spec().as_dict() if resolver is not None else {}
    if not cluster:
        return None
    return dict(
        cluster={job: list(tasks) for job, tasks in cluster.items()},
        task_type=resolver.task_type,
        task_index=int(resolver.task_id or 0),
        num_workers=_distribute.num_workers(strategy),
        worker_index=_distribute.worker_index(strategy),
        is_chief=_distribute.is_chief(strategy),
    )


def is_loopback(cluster):
    """Whether every address of `cluster` is on this host (127.0.0.1 / localhost)."""
    hosts = [a.rpartition(":")[0] for job in cluster.values() for a in job]
    return all(h in ("127.0.0.1", "localhost", "[::1]") for h in hosts)


def shard_policy(*, in_memory, num_workers, num_files=None, limit=None):
    """How the workers split the input: `("DATA" | "FILE", reason)`.

    DATA (every worker reads the whole pipeline and keeps its share of every
    global batch) is used for in-memory sources (`from_tensor_slices`: the
    embedded set, idx, npz, the decoded JPEG zip): the global batches are then
    those of a single-process run. FILE (each worker reads its own files) is
    used for file-based (tfds) sources with at least one file per worker and
    no `limit` (which cuts the file order); DATA otherwise.

    Args:
        in_memory: whether the source is in memory.
        num_workers: the worker count.
        num_files: the split's file count (file-based sources), or None.
        limit: the run's `limit`, or None.

    Example:

    >>> shard_policy(in_memory=False, num_workers=2, num_files=8)[0]
    'FILE'
    """
    if in_memory:
        return "DATA", "in-memory source: every worker keeps its share of each global batch"
    if limit is not None:
        return "DATA", "limit cuts the file order: every worker reads the same examples"
    if num_files is None or num_files < num_workers:
        return "DATA", f"{num_files or 'unknown'} file(s) for {num_workers} workers"
    return "FILE", f"{num_files} files over {num_workers} workers"


def worker_output_dir(output_dir, info):
    """Where this worker writes: `output_dir` on the chief, a new temporary directory elsewhere.

    The directory is `<tmp>/kerascnn-worker<i>-<pid>-<random>`; directories
    of processes that no longer run (a killed worker cannot remove its own)
    are removed first.
    """
    if info is None or info["is_chief"]:
        return output_dir
    remove_stale_worker_dirs()
    return tempfile.mkdtemp(prefix=f"{WORKER_DIR_PREFIX}{info['worker_index']}-{os.getpid()}-")


def _pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # another user's process
        return True
    return True


def remove_stale_worker_dirs(directory=None):
    """Removes the temporary worker directories of dead processes; returns their paths."""
    directory = directory or tempfile.gettempdir()
    pattern = re.compile(rf"^{WORKER_DIR_PREFIX}\d+-(\d+)-")
    removed = []
    for name in os.listdir(directory):
        match = pattern.match(name)
        path = os.path.join(directory, name)
        if match and os.path.isdir(path) and not _pid_alive(int(match.group(1))):
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed


def remove_worker_dir(path, output_dir):
    """Removes a non-chief worker's temporary directory (never the run directory)."""
    if path and os.path.abspath(path) != os.path.abspath(output_dir):
        shutil.rmtree(path, ignore_errors=True)


def copy_checkpoint(run_dir, worker_dir, checkpoint_dir):
    """Copies the chief's checkpoint files into a worker's own directory (for a resume)."""
    source = os.path.join(run_dir, checkpoint_dir)
    if not os.path.isdir(source) or os.path.abspath(run_dir) == os.path.abspath(worker_dir):
        return
    target = os.path.join(worker_dir, checkpoint_dir)
    os.makedirs(target, exist_ok=True)
    for name in os.listdir(source):
        if os.path.isfile(os.path.join(source, name)) and not name.endswith(".tmp"):
            shutil.copy2(os.path.join(source, name), os.path.join(target, name))


def write_worker_report(report):
    """Writes `report` to `$KERASCNN_WORKER_REPORT` when it is set (every worker)."""
    path = os.environ.get(WORKER_REPORT_ENV)
    if path:
        from kerascnn.training.report import write_json

        write_json(path, report)


def resume_command(output_dir, info):
    """The command that resumes a multi-worker run in `output_dir`.

    `kerascnn launch --workers N -- --resume DIR` for a cluster on this
    host, else `kerascnn train --resume DIR` (run on every worker).
    """
    path = os.path.relpath(output_dir)
    path = shlex.quote(output_dir if path.startswith(os.pardir) else path)
    if is_loopback(info["cluster"]):
        return f"kerascnn launch --workers {info['num_workers']} -- --resume {path}"
    return f"kerascnn train --resume {path}"


#: TensorFlow errors of a collective whose peer died, was cut off or timed out.
_PEER_ERRORS = (
    "UnavailableError",
    "DeadlineExceededError",
    "AbortedError",
    "CancelledError",
    "FailedPreconditionError",
)


def is_peer_failure(error):
    """Whether `error` (raised during a multi-worker `fit`) means a peer died or hung."""
    names = {cls.__name__ for cls in type(error).__mro__}
    if names & set(_PEER_ERRORS):
        return True
    text = str(error).lower()
    return "collective" in text and ("abort" in text or "peer" in text or "down" in text)


def failed_worker(error, info):
    """The index of the worker TensorFlow's `error` names (not this one), or None."""
    text = str(error)
    for job, task in re.findall(r"/job:(chief|worker)(?:/replica:\d+)?/task:(\d+)", text):
        chiefs = len(info["cluster"].get("chief") or [])
        index = 0 if job == "chief" else int(task) + chiefs
        if index != info["worker_index"]:
            return index
    return None


def _error_summary(error):
    """The cause line of a TensorFlow error (without the graph traceback), shortened."""
    text = str(getattr(error, "message", None) or error)
    skip = ("Graph execution error", "Detected at node", "[[", "File ", "The error could be")
    lines = [
        line.strip()
        for line in text.splitlines()
        if line.strip() and not line.startswith((" ", "\t")) and not line.startswith(skip)
    ]
    summary = lines[0] if lines else text
    if summary.endswith(":") and len(lines) > 1:  # "... unhealthy (...):" then the tasks
        summary = f"{summary} {lines[1]}"
    summary = re.sub(r"\s*\[\[.*?\]\]|\s*\[Op:[^\]]*\]", "", summary)
    return " ".join(summary.split())[:200]


def failure_message(error, info, epochs_done, output_dir):
    """The one-line message (with `resume with: ...`) of a dead or unresponsive peer."""
    worker = failed_worker(error, info)
    if worker is None and info["num_workers"] == 2:
        worker = 1 - info["worker_index"]
    who = "a peer worker" if worker is None else f"worker {worker}"
    first = _error_summary(error)
    return worker, (
        f"{who} of {info['num_workers']} stopped responding ({type(error).__name__}: {first}); "
        f"the run stopped after epoch {epochs_done}. resume with: "
        f"{resume_command(output_dir, info)}"
    )
