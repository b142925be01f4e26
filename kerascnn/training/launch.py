"""Local multi-worker training: N `kerascnn train` processes on one host.

`launch(train_args, workers=N)` (the command line's `kerascnn launch
--workers N -- <train arguments>`) starts N worker processes, each running
`python -m kerascnn train <train arguments> --strategy multi_worker` with its
own `TF_CONFIG` on free loopback ports (127.0.0.1 only; worker 0 is the
chief), the single-host way to use and test `MultiWorkerMirroredStrategy`.
On several hosts, run the same `kerascnn train ... --strategy multi_worker`
on every host with its `TF_CONFIG` (see docs/distributed.md).

- **Output.** The chief's output (stdout and stderr) is streamed to this
  process's stdout; every worker's output also goes to `<log_dir>/worker<i>.log`
  (`log_dir`: a new temporary directory unless given, removed after a
  successful run, kept after a failure). When a worker fails, the tail of its
  log is printed.
- **One run directory.** Every worker gets the same `--output-dir` (the one
  given, or `runs/<timestamp>` chosen once here); only the chief writes into
  it. Each worker also gets `KERASCNN_WORKER_REPORT=<log_dir>/worker<i>.report.json`,
  where it writes its own report (the per-worker view used by the tests).
- **Failure.** If a worker exits with a non-zero status or is killed, the
  others are stopped (SIGTERM, then SIGKILL after `grace_period` seconds) and
  `WorkerFailed` names the worker: index, pid, exit status or signal. If a
  worker finished and another is still running `finish_timeout` seconds
  later, that one is stopped and reported the same way.
- **Ctrl-C** (SIGINT) is forwarded to every worker, which write their partial
  results and exit; a second Ctrl-C kills them. SIGTERM is forwarded too.
- **Resume.** A run stopped by a failure or Ctrl-C continues with
  `kerascnn launch --workers N -- --resume <run dir>` (the same run directory;
  the run's own options are read back from it).

Example:

```python
from kerascnn.training.launch import free_ports, tf_config

ports = free_ports(2)
tf_config(ports, 1)  # {"cluster": {"worker": ["127.0.0.1:P0", "127.0.0.1:P1"]}, "task": {...}}
```
"""

from __future__ import annotations

import argparse
import codecs
import datetime
import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

#: The strategy every worker is started with.
STRATEGY = "multi_worker"
#: Environment variable naming the file where a worker writes its own report.
WORKER_REPORT_ENV = "KERASCNN_WORKER_REPORT"
#: Seconds between SIGTERM and SIGKILL when the workers are stopped.
DEFAULT_GRACE_PERIOD = 10.0
#: Seconds the other workers may run on after one has finished.
DEFAULT_FINISH_TIMEOUT = 300.0
#: Lines of a failed worker's log printed with the error.
TAIL_LINES = 25
_POLL_S = 0.1


class WorkerFailed(RuntimeError):
    """A worker of `launch` failed; the others were stopped.

    Attributes:
        index: the worker's task index (0 is the chief).
        pid: its process id.
        returncode: its exit status (negative: killed by that signal; None:
            it did not finish in time and was stopped).
        log_path: its log file.
        resume_command: the command that resumes the run.
    """

    def __init__(self, message, index, pid, returncode, log_path, resume_command):
        super().__init__(message)
        self.index, self.pid, self.returncode = index, pid, returncode
        self.log_path, self.resume_command = log_path, resume_command


def free_ports(n):
    """`n` distinct free TCP ports on 127.0.0.1 (bound to port 0 together, then released).

    Args:
        n: how many ports.

    Returns:
        A list of `n` port numbers.
    """
    sockets = [socket.socket(socket.AF_INET, socket.SOCK_STREAM) for _ in range(n)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def tf_config(ports, index, host="127.0.0.1"):
    """The `TF_CONFIG` dict of worker `index` in a cluster of `len(ports)` workers on `host`.

    Args:
        ports: one port per worker.
        index: this worker's index (0 is the chief).
        host: the host of every worker. Defaults to `"127.0.0.1"`.
    """
    return {
        "cluster": {"worker": [f"{host}:{port}" for port in ports]},
        "task": {"type": "worker", "index": int(index)},
    }


def _scan_parser():
    """The run-directory and strategy options of `kerascnn train` (prefixes allowed, as there)."""
    parser = argparse.ArgumentParser(add_help=False)
    for option in ("--strategy", "--output-dir", "--resume"):
        parser.add_argument(option)
    return parser


def worker_arguments(train_args, now=None):
    """The `kerascnn train` arguments every worker gets, and the run directory.

    Adds `--strategy multi_worker` (an other `--strategy` is an error) and,
    without `--output-dir` or `--resume`, `--output-dir runs/<timestamp>`, so
    that every worker names the same run directory.

    Args:
        train_args: the `kerascnn train` arguments (strings).
        now: the `datetime` of the default run directory. Defaults to now.

    Returns:
        `(arguments, run_dir)`.
    """
    args = [str(a) for a in train_args]
    try:
        known, _ = _scan_parser().parse_known_args(args)
    except SystemExit:
        raise ValueError(
            f"Cannot read the train arguments. Received: train_args={args!r}"
        ) from None
    if known.strategy is None:
        args += ["--strategy", STRATEGY]
    elif known.strategy != STRATEGY:
        raise ValueError(
            f"launch starts every worker with --strategy {STRATEGY}; leave --strategy out. "
            f"Received: --strategy {known.strategy!r}"
        )
    run_dir = known.resume or known.output_dir
    if run_dir is None:
        run_dir = os.path.join("runs", (now or datetime.datetime.now()).strftime("%Y%m%d-%H%M%S"))
        args += ["--output-dir", run_dir]
    return args, run_dir


def resume_command(workers, run_dir):
    """`kerascnn launch --workers N -- --resume <run_dir>`."""
    return f"kerascnn launch --workers {workers} -- --resume {shlex.quote(str(run_dir))}"


def _check_workers(workers):
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers must be an integer >= 1. Received: workers={workers!r}")
    return workers


class _Worker:
    """One worker process, its log and (for the chief) the thread echoing its output."""

    def __init__(self, index, command, env, log_path, echo):
        self.index, self.log_path = index, log_path
        self.log = open(log_path, "wb")  # noqa: SIM115 (closed by `close`)
        self.pump = None
        self.proc = subprocess.Popen(
            command,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE if echo is not None else self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: signals reach its children too
        )
        if echo is not None:
            self.pump = threading.Thread(target=self._copy, args=(echo,), daemon=True)
            self.pump.start()

    def _copy(self, echo):
        fd = self.proc.stdout.fileno()
        decoder = codecs.getincrementaldecoder("utf-8")("replace")  # characters split by reads
        while chunk := os.read(fd, 65536):
            self.log.write(chunk)
            self.log.flush()
            try:
                echo.write(decoder.decode(chunk))
                echo.flush()
            except (OSError, ValueError):  # a closed terminal must not stop the log
                pass

    def signal(self, signum):
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signum)
            except (ProcessLookupError, PermissionError):
                pass

    def close(self):
        if self.pump is not None:
            self.pump.join(timeout=5)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self.log.close()

    def describe(self, finish_timeout):
        code = self.proc.returncode
        if code is None:
            return f"was still running {finish_timeout:g} s after another worker finished"
        if code < 0:
            try:
                return f"was killed by signal {signal.Signals(-code).name}"
            except ValueError:
                return f"was killed by signal {-code}"
        return f"exited with status {code}"

    def tail(self, lines=TAIL_LINES):
        with open(self.log_path, "rb") as f:
            text = f.read().decode("utf-8", "replace").replace("\r", "\n")
        kept = [line for line in text.splitlines() if line.strip()]
        return "\n".join(kept[-lines:])


def _start(program, args, workers, log_dir, echo, env):
    """Starts the workers (worker 0, the chief, echoed) and returns them."""
    ports = free_ports(workers)
    command = [*program, *args]
    started = []
    try:
        for index in range(workers):
            worker_env = dict(
                os.environ,
                **(env or {}),
                TF_CONFIG=json.dumps(tf_config(ports, index)),
                PYTHONUNBUFFERED="1",
            )
            worker_env[WORKER_REPORT_ENV] = os.path.join(log_dir, f"worker{index}.report.json")
            log_path = os.path.join(log_dir, f"worker{index}.log")
            started.append(
                _Worker(index, command, worker_env, log_path, echo if index == 0 else None)
            )
    except BaseException:
        _stop(started, 0)
        raise
    return started


def _stop(workers, grace_period):
    """SIGTERM to the running workers, SIGKILL after `grace_period` s; waits for all."""
    for worker in workers:
        worker.signal(signal.SIGTERM)
    deadline = time.monotonic() + grace_period
    while any(w.proc.poll() is None for w in workers) and time.monotonic() < deadline:
        time.sleep(_POLL_S)
    for worker in workers:
        worker.signal(signal.SIGKILL)
        worker.proc.wait()
        worker.close()


class _Signals:
    """Forwards SIGINT / SIGTERM to the workers while installed (main thread only)."""

    def __init__(self, workers):
        self.workers, self.received, self.saved = workers, None, {}

    def _handle(self, signum, frame):
        if self.received is not None:  # a second Ctrl-C: no more waiting
            for worker in self.workers:
                worker.signal(signal.SIGKILL)
            return
        self.received = signum
        for worker in self.workers:
            worker.signal(signum)

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGINT, signal.SIGTERM):
                self.saved[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc):
        for signum, handler in self.saved.items():
            signal.signal(signum, handler)


def _first_failure(workers, finished_at, finish_timeout):
    """The worker that failed (a killed one first), or one still running too long, or None."""
    failed = [w for w in workers if w.proc.returncode not in (None, 0)]
    if failed:
        return min(failed, key=lambda w: (w.proc.returncode >= 0, w.index))
    if finished_at is not None and time.monotonic() - finished_at > finish_timeout:
        return next(w for w in workers if w.proc.returncode is None)
    return None


def _watch(workers, signals, grace_period, finish_timeout):
    """Waits for the workers; returns the failed one (or None), or the signal received."""
    finished_at = None
    while True:
        codes = [w.proc.poll() for w in workers]
        if signals.received is not None:
            deadline = time.monotonic() + 3 * grace_period
            while any(w.proc.poll() is None for w in workers) and time.monotonic() < deadline:
                time.sleep(_POLL_S)
            return None
        if all(code == 0 for code in codes):
            return None
        if finished_at is None and 0 in codes:
            finished_at = time.monotonic()
        failed = _first_failure(workers, finished_at, finish_timeout)
        if failed is not None:
            return failed
        time.sleep(_POLL_S)


def _failure(failed, description, returncode, workers, run_dir, log_dir, stream):
    """Prints the failed worker's log tail; returns the `WorkerFailed` error."""
    if failed.index != 0:
        print(f"--- last lines of worker {failed.index} ({failed.log_path}):", file=stream)
        print(failed.tail(), file=stream, flush=True)
    resume = resume_command(workers, run_dir)
    message = (
        f"worker {failed.index} (pid {failed.proc.pid}) {description}; the other workers "
        f"were stopped. Logs: {log_dir}. Resume with: {resume}"
    )
    return WorkerFailed(message, failed.index, failed.proc.pid, returncode, failed.log_path, resume)


def launch(
    train_args,
    workers=2,
    log_dir=None,
    echo=None,
    env=None,
    grace_period=DEFAULT_GRACE_PERIOD,
    finish_timeout=DEFAULT_FINISH_TIMEOUT,
    program=None,
):
    """Trains with `workers` local processes under `MultiWorkerMirroredStrategy`.

    Each worker runs `python -m kerascnn train <train_args> --strategy
    multi_worker` with its `TF_CONFIG` (module docstring). `batch_size` in
    `train_args` is the global batch, split over the workers.

    Args:
        train_args: the `kerascnn train` arguments, e.g.
            `["--model", "compact_mnist_1k5_dw", "--epochs", "2"]` (without
            `--strategy`; `--output-dir` or `--resume` name the run directory).
        workers: number of worker processes (>= 1). Defaults to `2`.
        log_dir: directory of the per-worker logs and reports. Defaults to
            None: a new temporary directory, removed when the run succeeds.
        echo: text stream receiving the chief's output. Defaults to None:
            `sys.stdout`.
        env: extra environment variables of the workers. Defaults to None.
        grace_period: seconds between SIGTERM and SIGKILL when workers are
            stopped. Defaults to `10.0`.
        finish_timeout: seconds the other workers may still run after one
            finished. Defaults to `300.0`.
        program: the worker command before the arguments. Defaults to None:
            `[sys.executable, "-m", "kerascnn", "train"]` (any program that
            reads `TF_CONFIG` and takes these arguments may stand in).

    Returns:
        A dict: `run_dir`, `log_dir` (None when removed), `workers`,
        `report` (the chief's `report.json`, or None if it wrote none).

    Raises:
        ValueError: bad arguments.
        WorkerFailed: a worker failed (the others were stopped).
        KeyboardInterrupt: Ctrl-C or SIGTERM (after the workers stopped).

    Example:

    ```python
    from kerascnn.training.launch import launch

    result = launch(["--model", "compact_mnist_1k5_dw", "--dataset", "embedded",
                     "--limit", "256", "--epochs", "1", "--verbose", "0",
                     "--output-dir", "runs/two_workers"], workers=2)
    result["report"]["num_replicas"]  # 2
    ```
    """
    workers = _check_workers(workers)
    if isinstance(train_args, (str, bytes)):
        raise TypeError(f"train_args must be a list of strings. Received: {train_args!r}")
    args, run_dir = worker_arguments(train_args)
    for name, value in (("grace_period", grace_period), ("finish_timeout", finish_timeout)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
            raise ValueError(f"{name} must be a positive number. Received: {name}={value!r}")
    keep_logs = log_dir is not None
    log_dir = os.fspath(log_dir) if keep_logs else tempfile.mkdtemp(prefix="kerascnn-launch-")
    os.makedirs(log_dir, exist_ok=True)
    echo = sys.stdout if echo is None else echo
    program = [sys.executable, "-m", "kerascnn", "train"] if program is None else list(program)
    started = _start(program, args, workers, log_dir, echo, env)
    return _run(started, run_dir, log_dir, keep_logs, grace_period, finish_timeout)


def _run(started, run_dir, log_dir, keep_logs, grace_period, finish_timeout):
    """Watches and stops the started workers (`launch` after its checks)."""
    workers = len(started)
    failure = None
    try:
        with _Signals(started) as signals:
            failed = _watch(started, signals, grace_period, finish_timeout)
            if failed is not None:  # described before the others are stopped
                failure = (failed, failed.describe(finish_timeout), failed.proc.returncode)
    finally:
        _stop(started, grace_period)
    if signals.received is not None:
        print(f"Resume with: {resume_command(workers, run_dir)}", file=sys.stderr, flush=True)
        raise KeyboardInterrupt
    if failure is not None:
        raise _failure(*failure, workers, run_dir, log_dir, sys.stderr)
    report_path = os.path.join(run_dir, "report.json")
    report = None
    if os.path.exists(report_path):
        with open(report_path) as f:
            report = json.load(f)
    if not keep_logs:
        shutil.rmtree(log_dir, ignore_errors=True)
    return {
        "run_dir": run_dir,
        "log_dir": log_dir if keep_logs else None,
        "workers": workers,
        "report": report,
    }
