#!/usr/bin/env python
"""The answer checker against plain math-verify on the project's equivalence table.

Both score the same cases (``tests/data/answer_cases.jsonl``: gold, model response, expected
verdict, by category): the checker under a consumer's policy (``--policy eval`` by default),
math-verify as anyone would call it, ``verify(parse(gold), parse(response))``. Printed: per
category and in total, agreement with the expected verdict, false positives (called equal,
expected unequal) and false negatives (the reverse) for both, then the cases either gets wrong.

Usage: ``python tests/benchmarks/bench_checker.py [--policy eval] [--show 40] [--json out.json]``
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "scripts"))

from deepmath.answers import POLICIES, CheckerPool  # noqa: E402

TABLE = REPO / "tests" / "data" / "answer_cases.jsonl"


def load_cases(path: Path = TABLE) -> list[dict]:
    with open(path, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def plain_math_verify(cases: list[dict], delimit: bool = False) -> list[bool]:
    """math-verify as a user calls it, with its own default timeouts.

    ``delimit=True`` hands it the gold as ``$gold$``: math-verify reads LaTeX only between
    delimiters, so a bare ``288\\pi`` or ``F'`` gold is otherwise read as a plain number or not
    at all. Both ways are reported; the checker must do better than either.
    """
    import logging

    from math_verify import parse, verify

    logging.getLogger("math_verify").setLevel(logging.ERROR)
    out = []
    for case in cases:
        try:
            gold = f"${case['gold']}$" if delimit else case["gold"]
            out.append(bool(verify(parse(gold), parse(case["response"]))))
        except Exception:  # math-verify's own failures count as "not equal"
            out.append(False)
    return out


def checker(cases: list[dict], policy: str, workers: int, think: str | None) -> list[bool]:
    chosen = POLICIES[policy] if think is None else POLICIES[policy].but(think=think)
    with CheckerPool(workers) as pool:
        results = pool.map([(c["response"], c["gold"]) for c in cases], policy=chosen)
    return [r.equivalent for r in results]


def tally(cases: list[dict], verdicts: list[bool]) -> dict[str, Counter]:
    by: dict[str, Counter] = defaultdict(Counter)
    for case, got in zip(cases, verdicts, strict=True):
        for key in (case["category"], "TOTAL"):
            c = by[key]
            c["n"] += 1
            c["agree"] += got == case["expected"]
            c["fp"] += got and not case["expected"]
            c["fn"] += not got and case["expected"]
    return by


def table(cases: list[dict], columns: dict[str, list[bool]]) -> str:
    """Markdown: per category, agreement / FP / FN for each column of verdicts."""
    tallies = {name: tally(cases, v) for name, v in columns.items()}
    first = next(iter(tallies.values()))
    keys = sorted(k for k in first if k != "TOTAL") + ["TOTAL"]
    head = (
        "| category | cases | " + " | ".join(f"{n} agree | {n} FP | {n} FN" for n in columns) + " |"
    )
    lines = [head, "|---|---:|" + "---:|---:|---:|" * len(columns)]
    for k in keys:
        cells = []
        for t in tallies.values():
            x = t[k]
            cells.append(f"{100 * x['agree'] / x['n']:.1f}% | {x['fp']} | {x['fn']}")
        name = f"**{k}**" if k == "TOTAL" else k
        lines.append(f"| {name} | {first[k]['n']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--table", type=Path, default=TABLE)
    ap.add_argument("--policy", default="eval", choices=sorted(POLICIES))
    ap.add_argument(
        "--think",
        default="prefer",
        choices=["whole", "prefer", "require", "policy"],
        help="scored part of a response (default prefer: after the last </think> when there "
        "is one, as the table's verdicts are written; 'policy': the policy's own)",
    )
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--show", type=int, default=40, help="list up to N wrong verdicts")
    ap.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = ap.parse_args(argv)
    cases = load_cases(args.table)
    t0 = time.perf_counter()
    ours = checker(cases, args.policy, args.workers, None if args.think == "policy" else args.think)
    t1 = time.perf_counter()
    plain = plain_math_verify(cases)
    delimited = plain_math_verify(cases, delimit=True)
    t2 = time.perf_counter()
    print(
        f"{len(cases)} cases; checker ({args.policy} policy, think={args.think}, "
        f"{args.workers} workers) {t1 - t0:.1f} s; math-verify twice, 1 process, {t2 - t1:.1f} s\n"
    )
    columns = {"checker": ours, "math-verify": plain, "math-verify $gold$": delimited}
    print(table(cases, columns))
    totals = {name: tally(cases, v)["TOTAL"] for name, v in columns.items()}
    ok = all(totals["checker"][k] <= totals[other][k] for other in columns for k in ("fp", "fn"))
    print(f"\ndominance (checker FP and FN <= each math-verify's): {'yes' if ok else 'NO'}")
    wrong = [
        (c, o, t) for c, o, t in zip(cases, ours, delimited, strict=True) if o != c["expected"]
    ]
    print(f"\nchecker wrong on {len(wrong)}:")
    for c, o, t in wrong[: args.show]:
        print(
            f"  {c['id']:16} expected {c['expected']!s:5} checker {o!s:5} math-verify $gold$ "
            f"{t!s:5} gold={c['gold']!r} response={c['response'][-90:]!r}"
        )
    if args.json:
        args.json.write_text(json.dumps({n: tally(cases, v) for n, v in columns.items()}, indent=2))
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
