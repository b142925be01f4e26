"""Prints the bad-input totals of issue #12 (raw / silent / hang / clear / ok).

Runs every case of `tests/workflows/test_bad_inputs.py` (the 112 rows of the bad-input
list) and prints, per verdict the row got when the list was made ("then"),
how many rows get each verdict now, the totals, and every row that is not
what it should be (with the file that owns it).

Usage:

    python tools/bad_inputs_report.py                  # CLI rows in-process
    python tools/bad_inputs_report.py --cli subprocess # a real `kerascnn` process per CLI row
    python tools/bad_inputs_report.py --json report.json -k LayerDropping
"""

import argparse
import collections
import json
import os
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "tests", "workflows"))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "tests"))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import test_bad_inputs as cases  # noqa: E402


def _table(rows, verdicts):
    header = ["then \\ now", *verdicts, "total"]
    lines = [" | ".join(header), " | ".join("---" for _ in header)]
    by_then = collections.defaultdict(collections.Counter)
    for row in rows:
        by_then[row["then"]][row["now"]] += 1
    totals = collections.Counter()
    for then in verdicts:
        if then not in by_then:
            continue
        counts = by_then[then]
        totals.update(counts)
        cells = [str(counts.get(v, 0)) for v in verdicts]
        lines.append(" | ".join([then, *cells, str(sum(counts.values()))]))
    cells = [str(totals.get(v, 0)) for v in verdicts]
    lines.append(" | ".join(["total", *cells, str(sum(totals.values()))]))
    return "\n".join(f"| {line} |" for line in lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cli", choices=["inprocess", "subprocess"], default="inprocess")
    parser.add_argument("-k", default=None, help="only the cases whose id contains this")
    parser.add_argument("--json", default=None, help="also write every row to this file")
    args = parser.parse_args(argv)
    selected = [c for c in cases.CASES if args.k is None or args.k in c.id]
    rows = []
    start = time.perf_counter()
    for case in selected:
        with tempfile.TemporaryDirectory(prefix="kerascnn_bad_input_") as workdir:
            t0 = time.perf_counter()
            now, message = cases.run_case(case, workdir, cli_mode=args.cli)
        rows.append(
            {
                "id": case.id,
                "section": case.section,
                "input": case.text,
                "then": case.then.split()[0],
                "expected": case.expect,
                "now": now,
                "message": message,
                "owner": case.owner,
                "seconds": round(time.perf_counter() - t0, 2),
            }
        )
        print(f"{now:6s} {case.id}  ({rows[-1]['seconds']} s)", file=sys.stderr, flush=True)
    print(f"Bad inputs: {len(rows)} cases, CLI rows {args.cli}, ", end="")
    print(f"{time.perf_counter() - start:.0f} s\n")
    print(_table(rows, cases.VERDICTS))
    now = collections.Counter(r["now"] for r in rows)
    print(
        f"\nNow: raw {now['raw']}, silent {now['silent']}, hang {now['hang']}, "
        f"clear {now['clear']}, ok {now['ok']}."
    )
    wrong = [r for r in rows if r["now"] != r["expected"]]
    print(f"Rows not as expected: {len(wrong)}")
    for r in wrong:
        print(
            f"- {r['input']!r} ({r['section']}, then {r['then']}): now {r['now']}, "
            f"expected {r['expected']} [owner: {r['owner']}]: {r['message'][:200]}"
        )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)
    return 1 if wrong else 0


if __name__ == "__main__":
    sys.exit(main())
