"""Tests of the package layout (issue #15): old paths forward, the rules of the tree hold.

- Every module path of kerascnn 0.1 that moved imports with a
  `DeprecationWarning` and IS the new module (one release of grace).
- No module of `kerascnn/` (other than those forwarders), the tests, examples,
  benchmarks or tools imports an old path.
- No function in `kerascnn/` is longer than 80 lines (`tools/function_lengths.py`).
- No `try/except ImportError` wraps an import of the package's own modules.
"""

import ast
import importlib
import os
import subprocess
import sys

import pytest
from harness import ROOT

import kerascnn

PACKAGE = os.path.join(ROOT, "kerascnn")

#: Old module path -> the module it now is.
MOVED = {
    "kerascnn.spec": "kerascnn.arch.spec",
    "kerascnn.templates": "kerascnn.transforms.templates",
    "kerascnn.rf3d": "kerascnn.transforms.rf3d",
    "kerascnn.organizer": "kerascnn.transforms.organizer",
    "kerascnn.decomposer": "kerascnn.transforms.decomposer",
    "kerascnn.summary": "kerascnn.observe.summary",
    "kerascnn.train": "kerascnn.training.run",
    "kerascnn.tuner": "kerascnn.tuning",
    "kerascnn.sam": "kerascnn.training.sam",
    "kerascnn.schedules": "kerascnn.training.schedules",
    "kerascnn.model_split": "kerascnn.callbacks.learn_drop.model_split",
    "kerascnn.plots": "kerascnn.observe.plots",
    "kerascnn.stability_plot": "kerascnn.observe.stability_logs",
}
FORWARDERS = {os.path.join(PACKAGE, old.split(".")[1] + ".py") for old in MOVED}


def _package_files(skip_forwarders=True, top=PACKAGE):
    for folder, _, names in os.walk(top):
        for name in sorted(names):
            path = os.path.join(folder, name)
            if name.endswith(".py") and not (skip_forwarders and path in FORWARDERS):
                yield path


def _repository_files():
    """The package (less its forwarders), tests, examples, benchmarks and tools."""
    yield from _package_files()
    for top in ("tests", "examples", "benchmarks", "tools"):
        for path in _package_files(top=os.path.join(ROOT, top)):
            if path != os.path.abspath(__file__):
                yield path


def _parse(path):
    with open(path, encoding="utf-8") as f:
        return ast.parse(f.read(), filename=path)


def _imported_modules(node):
    """The absolute module names an `import` / `from ... import` node reads."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
        return [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
    return []


@pytest.mark.filterwarnings("default::DeprecationWarning")
@pytest.mark.parametrize("old, new", sorted(MOVED.items()))
def test_old_path_warns_and_is_the_new_module(old, new, monkeypatch):
    monkeypatch.delitem(sys.modules, old, raising=False)
    leaf = old.rpartition(".")[2]
    if leaf in vars(kerascnn):
        monkeypatch.delattr(kerascnn, leaf)
    with pytest.warns(DeprecationWarning, match=rf"`{old}` is deprecated.*`{new}`"):
        module = importlib.import_module(old)
    assert module is importlib.import_module(new)


def test_every_top_level_forwarder_is_listed():
    # A new forwarding module must be added to MOVED (and so tested above).
    found = set()
    for path in _package_files(skip_forwarders=False):
        if os.path.dirname(path) != PACKAGE:
            continue
        for node in ast.walk(_parse(path)):
            if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "forward_module":
                found.add("kerascnn." + os.path.basename(path)[:-3])
    assert found == set(MOVED)


def test_no_module_imports_an_old_path():
    offenders = []
    for path in _repository_files():
        for node in ast.walk(_parse(path)):
            for name in _imported_modules(node):
                if name in MOVED:
                    offenders.append(f"{os.path.relpath(path, ROOT)}:{node.lineno} {name}")
    assert not offenders, "internal code must import the new paths:\n" + "\n".join(offenders)


def test_no_function_longer_than_80_lines():
    proc = subprocess.run(
        [sys.executable, os.path.join(ROOT, "tools", "function_lengths.py")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def _catches_import_error(handler):
    if handler.type is None:
        return False
    types = handler.type.elts if isinstance(handler.type, ast.Tuple) else [handler.type]
    return any(getattr(t, "id", "") in ("ImportError", "ModuleNotFoundError") for t in types)


def _imports_own_module(statements):
    for statement in statements:
        for node in ast.walk(statement):
            if isinstance(node, ast.ImportFrom) and node.level > 0:
                return True
            if any(n.split(".")[0] == "kerascnn" for n in _imported_modules(node)):
                return True
    return False


def test_no_import_error_guard_around_own_modules():
    offenders = []
    for path in _package_files(skip_forwarders=False):
        for node in ast.walk(_parse(path)):
            if (
                isinstance(node, ast.Try)
                and any(_catches_import_error(h) for h in node.handlers)
                and _imports_own_module(node.body)
            ):
                offenders.append(f"{os.path.relpath(path, ROOT)}:{node.lineno}")
    assert not offenders, "try/except ImportError around kerascnn imports:\n" + "\n".join(offenders)
