"""Every ```python block of README.md and docs/*.md runs as written.

Each block is extracted and run in a fresh Python process whose working
directory is a temporary directory (so whatever it writes relatively lands
there), with `HOME` and `TMPDIR` pointed inside it and `KERASCNN_DATA_DIR`
unset (a block must bring its own small data: synthetic arrays or the
embedded dataset shipped in the package). It must exit 0 having used at
most `BLOCK_CPU_SECONDS` of CPU time ("well under a minute on 2 cores";
CPU time rather than wall time so that the check holds on a busy machine)
and is killed after `BLOCK_TIMEOUT` wall-clock seconds. Blocks run two at a
time (`DOC_TEST_WORKERS`), each in its own process. Blocks are also checked
statically for absolute paths written as string literals (e.g.
`"/scratch/features"`), the one way a block could still write outside its
working directory.

Fences:

- ```python: run by this test.
- ```python no-run: an illustrative fragment that cannot run here (a script
  for several machines with `TF_CONFIG`, a TPU). It is only compiled. Use it
  sparingly: `NO_RUN_BLOCKS` lists how many each file may have, so a new
  one must be added there deliberately.
- ```bash, ```text and bare fences: not run (the CLI is tested elsewhere).
"""

import ast
import concurrent.futures
import os
import pathlib
import re
import subprocess
import sys
import threading

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
DOC_FILES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BLOCK_CPU_SECONDS = 60  # CPU seconds (user + system) per block; importing TensorFlow takes ~6
BLOCK_TIMEOUT = 180  # wall-clock seconds per block: a hang guard, generous for busy machines
# Blocks run side by side (each in its own process); KERASCNN_DOC_TEST_WORKERS overrides.
DOC_TEST_WORKERS = int(os.environ.get("KERASCNN_DOC_TEST_WORKERS", min(2, os.cpu_count() or 1)))

# Illustrative python fragments allowed per file (fence ```python no-run).
NO_RUN_BLOCKS = {
    "docs/distributed.md": 2,  # the multi-worker TF_CONFIG script, the TPU set-up
}

_FENCE = re.compile(r"^(?P<indent> *)(?P<ticks>`{3,})(?P<info>[^`]*)$")


def extract_blocks(path):
    """Returns `[(line, info, source)]` for every fenced block of a markdown file.

    `line` is the 1-based line of the opening fence and `info` its info
    string (e.g. `"python"`, `"python no-run"`, `""`).
    """
    blocks = []
    lines = pathlib.Path(path).read_text(encoding="utf-8").splitlines()
    i = 0
    while i < len(lines):
        match = _FENCE.match(lines[i])
        if not match:
            i += 1
            continue
        indent, ticks = len(match["indent"]), match["ticks"]
        body = []
        j = i + 1
        while j < len(lines) and lines[j].strip() != ticks:
            body.append(lines[j][indent:] if lines[j][:indent].isspace() else lines[j])
            j += 1
        if j == len(lines):
            raise ValueError(f"{path}:{i + 1}: unclosed code fence")
        blocks.append((i + 1, match["info"].strip(), "\n".join(body) + "\n"))
        i = j + 1
    return blocks


def _python_blocks():
    """Returns pytest params `(relpath, line, runnable, source)` of every python block."""
    params = []
    for path in DOC_FILES:
        rel = path.relative_to(ROOT).as_posix()
        index = 0
        for line, info, source in extract_blocks(path):
            words = info.split()
            if not words or words[0] not in ("python", "py"):
                continue
            runnable = "no-run" not in words[1:]
            params.append(pytest.param(rel, line, runnable, source, id=f"{rel}:{index}"))
            index += 1
    return params


PYTHON_BLOCKS = _python_blocks()
RUNNABLE = [p for p in PYTHON_BLOCKS if p.values[2]]

# An absolute path written as a string literal: "/scratch/x", '/tmp/y', "~/z".
_ABSOLUTE_LITERAL = re.compile(r"""(?<![\w.])[rbfRBF]?(['"])(?:/|~/|[A-Za-z]:[\\/])""")


def test_docs_have_python_blocks():
    """The extractor finds the blocks (guards against a parser that finds none)."""
    files = {p.values[0] for p in PYTHON_BLOCKS}
    for expected in (
        "README.md",
        "docs/stability_stopping.md",
        "docs/layer_dropping.md",
        "docs/efficient_techniques.md",
        "docs/templates.md",
        "docs/tuning.md",
        "docs/distributed.md",
    ):
        assert expected in files, f"no ```python block found in {expected}"
    assert len(RUNNABLE) >= 8


def test_no_run_blocks_are_few_and_compile():
    """`python no-run` fragments are limited to `NO_RUN_BLOCKS` and are valid Python."""
    counts = {}
    for rel, line, runnable, source in (p.values for p in PYTHON_BLOCKS):
        if runnable:
            continue
        counts[rel] = counts.get(rel, 0) + 1
        ast.parse(source, filename=f"{rel}:{line}")
    assert counts == NO_RUN_BLOCKS


@pytest.mark.parametrize("rel, line, runnable, source", PYTHON_BLOCKS)
def test_block_writes_no_absolute_path(rel, line, runnable, source):
    """No block names an absolute path (it could write outside its directory)."""
    bad = [
        f"{rel}:{line + 1 + n}: {text.strip()}"
        for n, text in enumerate(source.splitlines())
        if _ABSOLUTE_LITERAL.search(text.split("#", 1)[0])
    ]
    assert not bad, "absolute paths in a doc block (use a relative or temp path):\n" + "\n".join(
        bad
    )


def _run_block(base, source):
    """Runs `source` in a fresh process with cwd `base/cwd`; returns its outcome.

    Returns a dict: `returncode`, `stderr`, `cpu` (user + system seconds of
    the child, from `os.wait4`, exact even when blocks run concurrently) and
    `timed_out`.
    """
    work = base / "cwd"
    (work / "home").mkdir(parents=True)
    (work / "tmp").mkdir()
    script = base / "block.py"
    script.write_text(source, encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if k != "KERASCNN_DATA_DIR"}
    env.update(
        HOME=str(work / "home"),
        TMPDIR=str(work / "tmp"),
        MPLBACKEND="Agg",
        TF_CPP_MIN_LOG_LEVEL="2",
        PYTHONPATH=str(ROOT) + os.pathsep + env.get("PYTHONPATH", ""),
    )
    timed_out = threading.Event()
    with open(base / "stdout.txt", "wb") as out, open(base / "stderr.txt", "wb") as err:
        proc = subprocess.Popen(
            [sys.executable, str(script)], cwd=work, env=env, stdout=out, stderr=err
        )

        def kill():
            timed_out.set()
            proc.kill()

        timer = threading.Timer(BLOCK_TIMEOUT, kill)
        timer.start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        finally:
            timer.cancel()
        proc.returncode = os.waitstatus_to_exitcode(status)
    return {
        "returncode": proc.returncode,
        "stderr": (base / "stderr.txt").read_text(errors="replace"),
        "cpu": usage.ru_utime + usage.ru_stime,
        "timed_out": timed_out.is_set(),
    }


@pytest.fixture(scope="module")
def block_results(request, tmp_path_factory):
    """Starts every selected block at once, `DOC_TEST_WORKERS` at a time.

    TensorFlow's import is mostly single-threaded, so two blocks side by side
    on 2 cores take less wall time than one after the other. Each test then
    waits for its own block's outcome.
    """
    base = tmp_path_factory.mktemp("doc_blocks")
    pool = concurrent.futures.ThreadPoolExecutor(DOC_TEST_WORKERS)
    futures = {}
    for item in request.session.items:
        if getattr(item, "originalname", None) == "test_block_runs":
            key, source = item.callspec.id, item.callspec.params["source"]
            if key not in futures:
                workdir = base / f"block{len(futures)}"
                workdir.mkdir()
                futures[key] = pool.submit(_run_block, workdir, source)
    yield futures
    pool.shutdown(wait=True, cancel_futures=True)


@pytest.mark.parametrize("rel, line, runnable, source", RUNNABLE)
def test_block_runs(rel, line, runnable, source, block_results, request):
    """The block runs as written in a fresh process, in a temp working directory."""
    result = block_results[request.node.callspec.id].result()
    assert not result["timed_out"], f"{rel}:{line}: the block ran longer than {BLOCK_TIMEOUT} s"
    assert result["returncode"] == 0, (
        f"{rel}:{line}: the block exited with {result['returncode']}\n"
        f"--- source ---\n{source}--- stderr (tail) ---\n{result['stderr'][-4000:]}"
    )
    assert result["cpu"] <= BLOCK_CPU_SECONDS, (
        f"{rel}:{line}: the block used {result['cpu']:.0f} s of CPU (limit "
        f"{BLOCK_CPU_SECONDS} s): scale its data, model or epochs down"
    )


def test_extractor_and_checks_on_a_sample(tmp_path):
    """The extractor, the absolute-path check and the runner can fail."""
    sample = tmp_path / "sample.md"
    sample.write_text(
        "text\n```python\nx = 1\n```\n```bash\nls /\n```\n"
        '  ```python no-run\n  open("/scratch/features", "w")\n  ```\n',
        encoding="utf-8",
    )
    blocks = extract_blocks(sample)
    assert [(line, info) for line, info, _ in blocks] == [
        (2, "python"),
        (5, "bash"),
        (8, "python no-run"),
    ]
    assert blocks[2][2] == 'open("/scratch/features", "w")\n'
    assert _ABSOLUTE_LITERAL.search(blocks[2][2])
    assert not _ABSOLUTE_LITERAL.search('open("features/x", "w")  # x / 2')
    (tmp_path / "run").mkdir()
    source = (
        "import os\n"
        'open("out.txt", "w").write(os.environ.get("KERASCNN_DATA_DIR", "unset"))\n'
        "raise SystemExit(3)\n"
    )
    result = _run_block(tmp_path / "run", source)
    assert result["returncode"] == 3 and not result["timed_out"]
    assert (tmp_path / "run" / "cwd" / "out.txt").read_text() == "unset"
