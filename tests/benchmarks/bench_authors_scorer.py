#!/usr/bin/env python
"""The authors' scorer (deepmath.answers.authors) against the verdicts of the authors' own code.

The pairs files (``tests/data/authors_pairs_{dev,holdout}.jsonl``) hold (response, gold, rule)
rows labelled by running the DeepMath authors' eval and reward code in their environment: the
verdict of each branch and the final ``correct``. Printed:

* agreement of our scorer (run in ``.venv-authors``) with that verdict, per kind and overall,
  and the time per pair (pairs whose verdict under the authors' code changes with the
  process's hash seed, such as sympy simplifying ``0/0``, are marked ``seed_dependent`` and
  left out);
* the same for the project's own checker under ``--policy eval`` (eval rows only), to show how
  far the project's policy is from the authors' rule;
* how many math-verify (C) verdicts change from 0.7.0 (the authors', in the labels) to the
  0.9.0 in ``.venv``, on the same calls, with examples.

Usage: ``.venv/bin/python tests/benchmarks/bench_authors_scorer.py [--pairs FILE ...]
[--show 20] [--no-policy] [--no-mv]``
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
sys.path.insert(0, str(REPO))

from tests.authors_env import score_pairs  # noqa: E402

DATA = REPO / "tests" / "data"
DEFAULT_PAIRS = [DATA / "authors_pairs_dev.jsonl", DATA / "authors_pairs_holdout.jsonl"]


def load(path: Path) -> list[dict]:
    with open(path, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def agreement(rows: list[dict], verdicts: list[bool | None]) -> dict[str, Counter]:
    """Per kind and TOTAL: pairs, agreements, false accepts and false rejects (None: skipped)."""
    by: dict[str, Counter] = defaultdict(Counter)
    for row, got in zip(rows, verdicts, strict=True):
        if got is None or row["oracle"].get("seed_dependent"):
            continue
        want = row["oracle"]["correct"]
        for key in (row["kind"], "TOTAL"):
            c = by[key]
            c["n"] += 1
            c["agree"] += got == want
            c["false_accept"] += got and not want
            c["false_reject"] += not got and want
    return by


def print_table(title: str, by: dict[str, Counter]) -> None:
    print(f"\n{title}\n| kind | pairs | agree | false accept | false reject |")
    print("|---|---:|---:|---:|---:|")
    for key in sorted(k for k in by if k != "TOTAL") + ["TOTAL"]:
        c = by[key]
        name = f"**{key}**" if key == "TOTAL" else key
        pct = 100 * c["agree"] / c["n"]
        print(f"| {name} | {c['n']} | {pct:.2f}% | {c['false_accept']} | {c['false_reject']} |")


def show_wrong(rows: list[dict], verdicts: list, limit: int) -> None:
    wrong = [(r, v) for r, v in zip(rows, verdicts, strict=True) if v is not None]
    wrong = [(r, v) for r, v in wrong if not r["oracle"].get("seed_dependent")]
    wrong = [(r, v) for r, v in wrong if v != r["oracle"]["correct"]]
    for row, got in wrong[:limit]:
        print(
            f"  {row['id']} {row['kind']} ours={got} oracle={row['oracle']} "
            f"gold={row['gold']!r} response={row['response'][-120:]!r}"
        )


def project_policy(rows: list[dict]) -> list[bool | None]:
    """The project's checker under the eval policy on the eval rows (None for reward rows)."""
    from deepmath.answers import POLICIES, CheckerPool

    todo = [(i, r) for i, r in enumerate(rows) if r["rule"] != "reward"]
    out: list[bool | None] = [None] * len(rows)
    with CheckerPool(2) as pool:
        pairs = [(r["response"], str(r["gold"])) for _, r in todo]
        results = pool.map(pairs, policy=POLICIES["eval"])
    for (i, _), res in zip(todo, results, strict=True):
        out[i] = res.equivalent
    return out


def _only_c(labels: dict) -> bool:
    """True when (C) alone accepted the pair (so another (C) verdict flips the OR)."""
    return labels.get("C") is True and not any(
        v is True for k, v in labels.items() if k not in ("C", "correct")
    )


def math_verify_090(rows: list[dict], limit: int) -> None:
    """(C) recomputed with the math-verify in this interpreter, against the 0.7.0 labels."""
    import logging
    from importlib.metadata import version

    from math_verify import parse, verify

    logging.getLogger("math_verify").setLevel(logging.ERROR)
    differ, compared = [], 0
    for row in rows:
        label = row["oracle"].get("C")
        if row["rule"] == "reward" or not isinstance(label, bool):
            continue
        gold = row["gold"] if isinstance(row["gold"], str) else str(row["gold"])
        try:
            got = bool(verify(parse("\\boxed{$" + gold + "}$"), parse(row["response"])))
        except Exception:
            got = False
        compared += 1
        if got != label:
            differ.append((row, got, label))
    flips = sum(not row["oracle"]["correct"] or _only_c(row["oracle"]) for row, _, _ in differ)
    print(
        f"\nmath-verify {version('math-verify')} vs 0.7.0 on (C): {len(differ)} of {compared} "
        f"eval pairs differ, {flips} of them change the final verdict"
    )
    for row, got, label in differ[:limit]:
        print(
            f"  {row['id']} {row['kind']} new={got} 0.7.0={label} gold={row['gold']!r} "
            f"response={row['response'][-100:]!r}"
        )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--pairs", type=Path, nargs="+", default=DEFAULT_PAIRS)
    ap.add_argument("--show", type=int, default=20, help="list up to N disagreements")
    ap.add_argument("--no-policy", action="store_true", help="skip the project's eval policy")
    ap.add_argument("--no-mv", action="store_true", help="skip the math-verify version diff")
    args = ap.parse_args(argv)
    ok = True
    for path in args.pairs:
        rows = load(path)
        t0 = time.perf_counter()
        results = score_pairs(rows)
        wall = time.perf_counter() - t0
        ours = [bool(r.get("result", {}).get("correct", False)) for r in results]
        per_pair = sorted(r["seconds"] for r in results)
        by = agreement(rows, ours)
        print(f"\n## {path.name}: {len(rows)} pairs, {wall:.1f} s in two .venv-authors processes")
        print(
            f"time per pair: mean {1000 * sum(per_pair) / len(per_pair):.1f} ms, median "
            f"{1000 * per_pair[len(per_pair) // 2]:.1f} ms, max {per_pair[-1]:.2f} s"
        )
        unstable = sum(bool(r["oracle"].get("seed_dependent")) for r in rows)
        print_table("ours vs the authors' code", by)
        if unstable:
            print(f"({unstable} pairs left out: the authors' verdict depends on PYTHONHASHSEED)")
        show_wrong(rows, ours, args.show)
        ok &= all(c["agree"] / c["n"] >= 0.99 for c in by.values())
        if not args.no_policy:
            policy = project_policy(rows)
            print_table("the project's --policy eval vs the authors' code", agreement(rows, policy))
        if not args.no_mv:
            math_verify_090(rows, args.show)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
