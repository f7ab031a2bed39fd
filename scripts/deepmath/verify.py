"""verify_answers: keep a question only if its solutions and its reference agree.

Paper: extract the final answer of each of the 3 R1 solutions (last ``\\boxed{}``) and of the
source solution where one exists; keep the question only if all agree. How many solutions must
agree and whether a reference is required are config, so the same code serves the paper
(``agreement: all``, ``reference: if_present``) and a weak demo model (``agreement: any``,
``reference: required``). Every comparison is bounded in time by the shared checker.
"""

from __future__ import annotations

import argparse
import json
import logging
from collections import Counter
from dataclasses import dataclass
from typing import Any

import pandas as pd

from deepmath.answers import TIMEOUT, VERIFY, check_pairs
from deepmath.io import run_cli, setup_logging, text_column, write_json, write_parquet

log = logging.getLogger("deepmath.verify")

SOLUTION_PREFIX = "r1_solution_"


def solution_columns(table: pd.DataFrame) -> list[str]:
    cols = [c for c in table.columns if c.startswith(SOLUTION_PREFIX)]
    return sorted(cols, key=lambda c: int(c[len(SOLUTION_PREFIX) :]))


def final_of(solution: str | None) -> str | None:
    """Final answer of a solution, as the verification policy reads it (deepmath.answers.policy):
    after the last </think> when there is one, the last box (with the boxes listed right before
    it), else "The answer is X"; an answer stated without a box does not count here."""
    if not isinstance(solution, str) or not solution:
        return None  # missing (None, or NaN from a parquet null)
    return VERIFY.answer(solution)


@dataclass(frozen=True)
class Decision:
    keep: bool
    reason: str
    final_answer: str | None
    agreeing: int


def needed(agreement: str, k: int) -> int:
    return {"all": k, "majority": k // 2 + 1, "any": 1}[agreement]


def plan_pairs(answers: list[str | None], reference: str | None) -> list[tuple[int, int]]:
    """Index pairs to compare: each answer with the reference (-1), or answers pairwise."""
    if reference is not None:
        return [(i, -1) for i, a in enumerate(answers) if a is not None]
    present = [i for i, a in enumerate(answers) if a is not None]
    return [(i, j) for n, i in enumerate(present) for j in present[n + 1 :]]


def decide(
    answers: list[str | None],
    reference: str | None,
    verdicts: dict[tuple[int, int], tuple[bool, str]],
    agreement: str,
    reference_policy: str,
) -> Decision:
    """Apply the agreement policy to one question's compared answers."""
    k = len(answers)
    need = needed(agreement, k)
    present = sum(a is not None for a in answers)
    if reference is None and reference_policy == "required":
        return Decision(False, "no_reference", None, 0)
    if present < need:
        return Decision(False, "no_answer", None, 0)
    timed_out = any(reason == TIMEOUT for _, reason in verdicts.values())
    if reference is not None:
        agree = [i for i in range(k) if verdicts.get((i, -1), (False, ""))[0]]
        if len(agree) >= need:
            return Decision(True, "agree", reference, len(agree))
        return Decision(False, "timeout" if timed_out else "disagree_reference", None, len(agree))
    best, best_count = None, 0
    for i in range(k):
        if answers[i] is None:
            continue
        count = 1 + sum(
            1 for j in range(k) if j != i and verdicts.get((min(i, j), max(i, j)), (False, ""))[0]
        )
        if count > best_count:
            best, best_count = i, count
    if best is not None and best_count >= need:
        return Decision(True, "agree", answers[best], best_count)
    return Decision(False, "timeout" if timed_out else "disagree_solutions", None, best_count)


def verify_table(
    table: pd.DataFrame,
    agreement: str = "all",
    reference_policy: str = "if_present",
    timeout_s: float = 5.0,
    workers: int | None = None,
) -> pd.DataFrame:
    """All rows with per-solution answers, the decision, its reason and the final answer."""
    cols = solution_columns(table)
    answers = [[final_of(row[c]) for c in cols] for _, row in table.iterrows()]
    refs: list[str | None] = [
        None if reference_policy == "ignore" or not isinstance(r, str) or not r.strip() else r
        for r in table.get("reference_answer", pd.Series([None] * len(table)))
    ]
    jobs: list[tuple[int, tuple[int, int]]] = []
    pairs: list[tuple[str, str]] = []
    for row, (ans, ref) in enumerate(zip(answers, refs, strict=True)):
        for i, j in plan_pairs(ans, ref):
            jobs.append((row, (i, j)))
            pairs.append((ans[i], ref if j == -1 else ans[j]))
    results = (
        check_pairs(pairs, timeout_s=timeout_s, workers=workers, extract=False) if pairs else []
    )
    verdicts: list[dict[tuple[int, int], tuple[bool, str]]] = [{} for _ in range(len(table))]
    for (row, key), res in zip(jobs, results, strict=True):
        verdicts[row][key] = (bool(res.equivalent), res.reason)
    decisions = [
        decide(a, r, v, agreement, reference_policy)
        for a, r, v in zip(answers, refs, verdicts, strict=True)
    ]
    out = table.copy()
    for n in range(len(cols)):
        out[f"answer_{n + 1}"] = text_column((a[n] for a in answers), out.index)
    out["final_answer"] = text_column((d.final_answer for d in decisions), out.index)
    out["verify_reason"] = [d.reason for d in decisions]
    out["agreeing_solutions"] = [d.agreeing for d in decisions]
    out["verified"] = [d.keep for d in decisions]
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m deepmath.verify",
        description="Keep questions whose solutions and reference answer agree.",
    )
    parser.add_argument("--in", dest="inp", required=True, help="solutions shard parquet")
    parser.add_argument("--spec", required=True, help="config verify, as JSON")
    parser.add_argument("--out", required=True, help="output parquet (verified questions)")
    parser.add_argument("--rejected", required=True, help="output parquet (rejected, with reason)")
    parser.add_argument("--stats", required=True, help="output stats JSON")
    parser.add_argument("--workers", type=int, default=None, help="checker processes")
    args = parser.parse_args(argv)
    setup_logging()
    spec: dict[str, Any] = json.loads(args.spec)
    table = pd.read_parquet(args.inp)
    checked = verify_table(
        table, spec["agreement"], spec["reference"], spec["timeout_s"], args.workers
    )
    kept = checked[checked["verified"]].reset_index(drop=True)
    rejected = checked[~checked["verified"]].reset_index(drop=True)
    reasons = Counter(checked["verify_reason"])
    stats = {
        "questions": int(len(table)),
        "verified": int(len(kept)),
        "reasons": dict(sorted(reasons.items())),
    }
    log.info("%d of %d questions verified; reasons %s", len(kept), len(table), stats["reasons"])
    write_parquet(kept, args.out)
    write_parquet(rejected, args.rejected)
    write_json(stats, args.stats)


if __name__ == "__main__":
    run_cli(main)
