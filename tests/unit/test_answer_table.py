"""The checker against plain math-verify on the project's answer-equivalence tables.

``tests/data/answer_cases.jsonl`` was written, by category, from the answers of MATH-500, MATH
test, GSM8K and Minerva reformatted the ways models write them, plus hand-made hard cases;
``answer_cases_holdout.jsonl`` was written afterwards, independently, and the checker was not
tuned on it; ``answer_cases_fresh.jsonl`` (324 graded full responses, 18 categories) was written
by someone who had not read the checker, measured before and after the fixes of the categories
it showed (``scripts/measure_fresh_table.py``), never tuned on. On each table the checker must
make no more false positives and no more false negatives
than math-verify, called either as ``verify(parse(gold), parse(response))`` or with the gold in
``$...$``. ``tests/benchmarks/bench_checker.py`` prints the full table.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from pathlib import Path

import pytest

from deepmath.answers import EVAL, CheckerPool

DATA = Path(__file__).resolve().parents[1] / "data"
TABLES = ["answer_cases.jsonl", "answer_cases_holdout.jsonl", "answer_cases_fresh.jsonl"]
FIELDS = {"id", "category", "gold", "response", "expected", "source", "note"}


def load(name: str) -> list[dict]:
    with open(DATA / name, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def errors(cases: list[dict], verdicts: list[bool]) -> Counter:
    out: Counter = Counter()
    for case, got in zip(cases, verdicts, strict=True):
        out["fp"] += got and not case["expected"]
        out["fn"] += case["expected"] and not got
    return out


def math_verify(cases: list[dict], delimit: bool) -> list[bool]:
    from math_verify import parse, verify

    logging.getLogger("math_verify").setLevel(logging.ERROR)
    out = []
    for c in cases:
        gold = f"${c['gold']}$" if delimit else c["gold"]
        try:
            out.append(bool(verify(parse(gold), parse(c["response"]))))
        except Exception:
            out.append(False)
    return out


def test_the_main_table_is_big_and_balanced() -> None:
    cases = load(TABLES[0])
    assert len(cases) >= 300
    assert len({c["id"] for c in cases}) == len(cases)
    assert all(set(c) == FIELDS and isinstance(c["expected"], bool) for c in cases)
    by = Counter((c["category"], c["expected"]) for c in cases)
    categories = {c["category"] for c in cases}
    assert len(categories) >= 15
    for cat in categories:
        assert by[(cat, True)] and by[(cat, False)], f"{cat} needs positives and negatives"
    real = sum(1 for c in cases if c["source"] != "hand")
    assert real >= len(cases) // 2  # mostly real dataset answers


@pytest.mark.parametrize("name", TABLES)
def test_checker_dominates_math_verify(name: str) -> None:
    if not (DATA / name).exists():
        pytest.fail(f"{name} is missing")
    cases = load(name)
    # The tables' verdicts score the text after the last </think> when there is one.
    policy = EVAL.but(think="prefer")
    with CheckerPool(2) as pool:
        ours = [
            r.equivalent
            for r in pool.map([(c["response"], c["gold"]) for c in cases], policy=policy)
        ]
    mine = errors(cases, ours)
    for delimit in (False, True):
        theirs = errors(cases, math_verify(cases, delimit))
        assert mine["fp"] <= theirs["fp"] and mine["fn"] <= theirs["fn"], (delimit, mine, theirs)
    wrong = [c["id"] for c, o in zip(cases, ours, strict=True) if o != c["expected"]]
    assert len(wrong) <= 0.05 * len(cases), wrong
