"""The longest functions and methods in `kerascnn/` (ast scan); fails above a limit.

A function's length is the span of its body without the docstring: from the
first line of its first non-docstring statement to the last line of its last
statement (decorators and the `def` line are not counted, nested functions
count towards the function that contains them and are also listed on their
own). The scan prints the top N and exits with 1 if any function is longer
than the limit (80 lines).

Usage:

    python tools/function_lengths.py                # top 10, limit 80, kerascnn/
    python tools/function_lengths.py --top 20 --limit 60 kerascnn/training
"""

import argparse
import ast
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LIMIT = 80


def _body_length(node):
    body = node.body
    first = body[0]
    if (
        isinstance(first, ast.Expr)
        and isinstance(first.value, ast.Constant)
        and isinstance(first.value.value, str)
    ):
        body = body[1:]
    if not body:
        return 0
    return body[-1].end_lineno - body[0].lineno + 1


def _qualified(tree):
    """Yields `(qualified name, node)` for every function and method in `tree`."""
    stack = [("", tree)]
    while stack:
        prefix, node = stack.pop()
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                name = f"{prefix}{child.name}"
                if not isinstance(child, ast.ClassDef):
                    yield name, child
                stack.append((name + ".", child))
            else:
                stack.append((prefix, child))


def function_lengths(paths):
    """`(length, "path:line qualified.name")` for every function under `paths`, longest first.

    Args:
        paths: files or directories (searched for `*.py`).
    """
    files = []
    for path in paths:
        if os.path.isdir(path):
            for folder, _, names in os.walk(path):
                files += [os.path.join(folder, n) for n in names if n.endswith(".py")]
        else:
            files.append(path)
    rows = []
    for file in sorted(files):
        with open(file, encoding="utf-8") as f:
            tree = ast.parse(f.read(), filename=file)
        rel = os.path.relpath(file, ROOT)
        for name, node in _qualified(tree):
            rows.append((_body_length(node), f"{rel}:{node.lineno} {name}"))
    return sorted(rows, key=lambda r: (-r[0], r[1]))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="*", default=[os.path.join(ROOT, "kerascnn")])
    parser.add_argument("--top", type=int, default=10, help="how many to print (default 10)")
    parser.add_argument("--limit", type=int, default=LIMIT, help="longest allowed (default 80)")
    args = parser.parse_args(argv)
    rows = function_lengths(args.paths)
    for length, where in rows[: args.top]:
        print(f"{length:5d}  {where}")
    over = [r for r in rows if r[0] > args.limit]
    if over:
        print(f"{len(over)} function(s) longer than {args.limit} lines:", file=sys.stderr)
        for length, where in over:
            print(f"{length:5d}  {where}", file=sys.stderr)
        return 1
    print(f"{len(rows)} functions; none longer than {args.limit} lines.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
