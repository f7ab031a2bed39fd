"""The authors' scorer (deepmath.answers.authors) behaves as the DeepMath authors' code did.

(a) A facts table: one behaviour per row group, each with cases that must pass and cases that
must not; every expected value was obtained by running the authors' own code on the same call.
The calls run in ``.venv-authors`` (their versions: antlr 4.11.0 for sympy's ``parse_latex``,
math-verify 0.7.0) through :mod:`tests.authors_env`.
(b) Agreement >= 99 % per kind with the authors' verdicts on the hold-out pairs file
(``tests/data/authors_pairs_holdout.jsonl``: labelled by running their eval and reward code).
(c) ``env.is_exact()`` is true in ``.venv-authors`` and false in ``.venv``.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter, defaultdict
from pathlib import Path

import pytest

from deepmath.answers.authors import env, rules
from tests.authors_env import AUTHORS_PYTHON, available, run_calls, score_pairs

REPO = Path(__file__).resolve().parents[2]
HOLDOUT = REPO / "tests" / "data" / "authors_pairs_holdout.jsonl"
NEEDS_ENV = pytest.mark.skipif(
    not available(), reason=f"{AUTHORS_PYTHON} is missing: `make venv-authors` builds it"
)

# (behaviour, op, args, expected). Ops: see tests.authors_env.OPS; for eval / reward the
# expected value is the verdict's ``correct``.
FACTS = [
    # numbers: 1e-4 relative tolerance, gold x 100 and gold / 100 accepted
    ("tolerance", "math_equal", ["1000.05", "1000"], True),
    ("tolerance", "math_equal", ["1001", "1000"], False),
    ("tolerance", "math_equal", ["2.0001", "2"], True),
    ("tolerance", "math_equal", ["2.001", "2"], False),
    ("percent scale", "math_equal", ["50", "0.5"], True),
    ("percent scale", "math_equal", ["0.5", "50"], True),
    ("percent scale", "math_equal", ["5", "0.5"], False),
    # extraction: the last \boxed{ only, braces counted, nothing for \boxed 5 or \fbox
    (
        "last box",
        "last_boxed",
        [
            "\\boxed{1} then \\boxed{2}",
        ],
        "2",
    ),
    ("last box", "last_boxed", ["\\boxed{\\frac{1}{2}}"], "\\frac{1}{2}"),
    ("last box", "last_boxed", ["\\boxed{3} and finally \\boxed 5"], None),
    ("last box", "last_boxed", ["\\fbox{5}"], None),
    ("last box", "last_boxed", ["\\boxed{5"], None),
    ("last box", "last_boxed", ["no box"], None),
    ("last box", "eval", ["First \\boxed{7}, then \\boxed{8}.", "8"], True),
    ("last box", "eval", ["First \\boxed{7}, then \\boxed{8}.", "7"], False),
    # "The answer is: X": last line only, case-sensitive, colon and a space required
    ("answer is", "answer_is", ["Work.\nThe answer is: 5"], "5"),
    ("answer is", "answer_is", ["Work.\nThe answer is: 5\n"], "5"),
    ("answer is", "answer_is", ["The answer is: 5\nso done"], None),
    ("answer is", "answer_is", ["the answer is: 5"], None),
    ("answer is", "answer_is", ["The answer is 5"], None),
    ("answer is", "eval", ["Work.\nThe answer is: 1000.05", "1000"], True),
    ("answer is", "eval", ["The answer is 6", "5"], False),
    # (C) the gold wrapping: eval \boxed{$gold}$, reward \boxed{$gold$}
    ("gold wrapping", "eval", ["\\boxed{1}", "{1"], True),
    ("gold wrapping", "reward", ["</think>$1$", "{1", "think"], False),
    ("gold wrapping", "eval", ["$1$", "{1"], True),
    ("gold wrapping", "eval", ["\\boxed{2}", "{1"], False),
    # normalisation
    ("units", "normalize", ["5\\text{ cm}"], "5"),
    ("units", "normalize", ["5 cm^2"], "5"),
    ("units", "normalize", ["\\text{five}"], "five"),
    ("units", "math_equal", ["5\\text{ cm}", "5"], True),
    ("units", "math_equal", ["6\\text{ cm}", "5"], False),
    ("percent", "normalize", ["12\\%"], "12"),
    ("percent", "math_equal", ["12\\%", "12"], True),
    ("percent", "math_equal", ["13\\%", "12"], False),
    ("money", "normalize", ["\\$12"], "12"),
    ("money", "math_equal", ["\\$12.50", "12.5"], True),
    ("money", "math_equal", ["\\$13", "12"], False),
    ("million", "normalize", ["3 million"], "3*10^6"),
    ("million", "math_equal", ["3 million", "3*10^6"], True),
    ("million", "math_equal", ["3 million", "3000000"], False),  # ^ is xor in parse_expr
    ("million", "math_equal", ["3 billion", "3000000"], False),
    ("sqrt", "normalize", ["\\sqrt2"], "\\sqrt{2}"),
    ("sqrt", "normalize", ["\\sqrt113"], "\\sqrt{113}"),
    ("sqrt", "math_equal", ["\\sqrt2", "\\sqrt{2}"], True),
    ("sqrt", "math_equal", ["\\sqrt3", "\\sqrt{2}"], False),
    ("frac", "normalize", ["\\frac12"], "\\frac{1}{2}"),
    ("frac", "normalize", ["\\frac1{72}"], "\\frac{1}{72}"),
    ("frac", "math_equal", ["\\frac12", "0.5"], True),
    ("frac", "math_equal", ["\\frac13", "0.5"], False),
    ("mixed number", "normalize", ["7 3/4"], "7+3/4"),
    ("mixed number", "normalize", ["7\\frac{3}{4}"], "7+3/4"),
    ("mixed number", "math_equal", ["7 3/4", "\\frac{31}{4}"], True),
    ("mixed number", "math_equal", ["7 1/4", "\\frac{31}{4}"], False),
    ("thousands", "normalize", ["1,000,000"], "1000000"),
    ("thousands", "normalize", ["1,2"], "1,2"),
    ("thousands", "math_equal", ["10,080", "10080"], True),
    ("thousands", "math_equal", ["1,080", "10080"], False),
    ("thousands", "math_equal", ["1,5", "15"], True),
    ("case", "math_equal", ["E", "e"], True),
    ("case", "math_equal", ["Yes", "yes"], True),
    ("case", "math_equal", ["Monday", "monday"], False),  # "day" dropped without a weekday
    ("case", "math_equal", ["Tuesday", "monday"], False),
    # brackets and lists, item by item
    ("brackets", "math_equal", ["(1, 2)", "(1,2)"], True),
    ("brackets", "math_equal", ["(1,3)", "(1,2)"], False),
    ("brackets", "math_equal", ["[1,2]", "(1,2)"], False),
    ("brackets", "math_equal", ["(\\frac12, 3)", "(0.5, 3)"], True),
    ("lists", "math_equal", ["1,2,3", "1, 2, 3"], True),
    ("lists", "math_equal", ["3,2,1", "1,2,3"], False),
    # symbolic
    ("symbolic", "math_equal", ["x^2+2x+1", "(x+1)^2"], True),
    ("symbolic", "math_equal", ["x^2+2x", "(x+1)^2"], False),
    ("symbolic", "math_equal", ["\\sqrt{8}", "2\\sqrt{2}"], True),
    ("symbolic", "math_equal", ["\\pi", "3.1416"], False),  # parse_latex: \pi is a symbol
    ("empty", "math_equal", ["", ""], True),
    ("empty", "math_equal", ["", "5"], False),
    ("empty", "math_equal", [None, "5"], False),
    # reward gates
    ("gate think", "reward", ["\\boxed{3}", "3", "think"], False),
    ("gate think", "reward", ["<think>\\boxed{2}</think> so \\boxed{3}", "3", "think"], True),
    ("gate think", "reward", ["<think>\\boxed{3}</think> so \\boxed{2}", "3", "think"], False),
    ("gate think", "reward", ["a</think>\\boxed{2}</think> \\boxed{3}", "3", "think"], True),
    ("gate one_box", "reward", ["so \\boxed{3}", "3", "one_box"], True),
    ("gate one_box", "reward", ["\\boxed{2} no, \\boxed{3}", "3", "one_box"], False),
    ("gate one_box", "reward", ["the answer is 3", "3", "one_box"], False),
]


@pytest.fixture(scope="module")
def fact_results() -> list[dict]:
    if not available():
        pytest.skip(f"{AUTHORS_PYTHON} is missing: `make venv-authors` builds it")
    return run_calls([{"op": op, "args": args} for _, op, args, _ in FACTS])


@NEEDS_ENV
@pytest.mark.parametrize(
    "index", range(len(FACTS)), ids=[f"{f[0]}-{i}" for i, f in enumerate(FACTS)]
)
def test_fact(index: int, fact_results: list[dict]) -> None:
    behaviour, op, args, expected = FACTS[index]
    out = fact_results[index]
    assert "error" not in out, out
    got = out["result"]["correct"] if op in ("eval", "reward") else out["result"]
    assert got == expected, f"{behaviour}: {op}{tuple(args)} gave {got!r}, want {expected!r}"


def test_every_behaviour_has_a_positive_and_a_negative_case() -> None:
    """Each behaviour group shows what passes and what does not (normalize rows excepted)."""
    seen: dict[str, set] = defaultdict(set)
    for behaviour, op, _, expected in FACTS:
        if op in ("math_equal", "eval", "reward"):
            seen[behaviour].add(expected)
    assert {b for b, s in seen.items() if s != {True, False}} == set()


@NEEDS_ENV
def test_numbers_never_reach_sympy() -> None:
    """Two numbers are decided by the numeric test alone: sympy is not even imported."""
    code = (
        "import sys\nfrom deepmath.answers.authors.grader import math_equal\n"
        "print(math_equal('1001', '1000'), math_equal('1,000.05', '1000'), "
        "'sympy' in sys.modules)"
    )
    done = subprocess.run(
        [str(AUTHORS_PYTHON), "-c", code],
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(REPO / "scripts")},
        check=True,
    )
    assert done.stdout.split() == ["False", "True", "False"]


def test_gold_text_and_arguments() -> None:
    """A one-item list gold is its item; others are str(); bad rules and gates are refused."""
    assert rules.gold_text(["3"]) == "3"
    assert rules.gold_text([3]) == "3"
    assert rules.gold_text(2.5) == "2.5"
    with pytest.raises(ValueError, match="one item"):
        rules.gold_text(["1", "2"])
    with pytest.raises(ValueError, match="rule 'minerva'"):
        rules.eval_verdict("x", "1", rule="minerva")
    with pytest.raises(ValueError, match="gate 'bogus'"):
        rules.reward_verdict("x", "1", gate="bogus")


# --- (b) agreement with the authors' code on the hold-out pairs --------------------------------


@NEEDS_ENV
@pytest.mark.timeout(2400)
def test_holdout_agreement_per_kind() -> None:
    """Every kind of pair agrees with the authors' code on >= 99 % (minutes: real sympy work)."""
    rows = [json.loads(line) for line in HOLDOUT.read_text(encoding="utf-8").splitlines()]
    results = score_pairs(rows)
    by: dict[str, Counter] = defaultdict(Counter)
    wrong = []
    for row, out in zip(rows, results, strict=True):
        if row["oracle"].get("seed_dependent"):  # the authors' verdict varies with the hash seed
            continue
        got = bool(out.get("result", {}).get("correct", False))
        by[row["kind"]]["n"] += 1
        by[row["kind"]]["agree"] += got == row["oracle"]["correct"]
        if got != row["oracle"]["correct"]:
            wrong.append(f"{row['id']} ({row['kind']}): ours {got}, authors {row['oracle']}")
    assert len(rows) >= 1000
    low = {k: f"{c['agree']}/{c['n']}" for k, c in by.items() if c["agree"] < 0.99 * c["n"]}
    assert not low, f"agreement under 99% in {low}; first disagreements: {wrong[:10]}"


# --- (c) the environment check -----------------------------------------------------------------


@NEEDS_ENV
def test_is_exact_in_the_authors_env() -> None:
    (out,) = run_calls([{"op": "is_exact"}])
    assert out["result"] is True


def test_is_not_exact_in_the_main_env() -> None:
    assert sys.prefix != str(AUTHORS_PYTHON.parents[1])
    assert env.is_exact() is False
    versions = env.environment()
    assert set(versions) == {*env.EXACT, "python"}
