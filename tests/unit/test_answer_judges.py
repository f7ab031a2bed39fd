"""Benchmark judges OR-ed into correctness: OlympiadBench's, PolyMath's, choice letters.

Hand-made cases, positives and negatives for each rule the judges add on top of the shared
comparator, then the same rules reached through :func:`check_answer`, a policy and the pool.
"""

from __future__ import annotations

import pytest

from deepmath.answers import (
    EVAL,
    MATCH,
    MISMATCH,
    NO_ANSWER,
    TIMEOUT,
    CheckerPool,
    Policy,
    check_answer,
    choice_letter,
    gold_letter,
    olympiad_judge,
    polymath_judge,
    scored_text,
)

OLYMPIAD_EQUAL = [
    # (prediction text, gold, precision)
    ("(1,2), (3,4)", "(3,4),(1,2)", None),  # tuples in any order
    ("\\boxed{(3,4), (1,2)}", "(1,2), (3,4)", None),
    ("1+\\sqrt{2}, 1-\\sqrt{2}", "1 \\pm \\sqrt{2}", None),  # \pm counts twice
    ("\\boxed{1-\\sqrt{2}, 1+\\sqrt{2}}", "1 \\pm \\sqrt{2}", None),
    ("\\boxed{3.1416}", "3.14159", 1e-3),  # the problem's precision
    ("\\boxed{0.5}", "50", None),  # a percentage given as a fraction
    ("\\boxed{50}", "0.5", None),  # and the other way round
    ("\\boxed{\\frac{1}{3}}", "0.333333333", None),  # constants evaluated, within 1e-8
    ("\\boxed{\\pi}", "3.14159265358979", None),
    ("[1,3)", "[1, 3)", None),  # intervals
    ("\\boxed{y = 2x + 1}", "2x - y + 1 = 0", None),  # the same line
    ("\\boxed{30}", "30^\\circ", None),  # degrees
    ("\\boxed{30^\\circ}", "30", None),
    ("\\boxed{x \\in [1, 3)}", "[1, 3)", None),  # the \in prefix
    ("\\boxed{1}, \\boxed{2}", "1, 2", None),  # all boxes, joined
    ("So the answer is $x=3$", "3", None),  # no box: the math of the last line
    ("\\boxed{\\left( 2, 5 \\right)}", "(2,5)", None),
    ("\\boxed{12\\%}", "12", None),
]

OLYMPIAD_UNEQUAL = [
    ("\\boxed{3.1416}", "3.14159", None),  # 1e-8 by default
    ("\\boxed{3.1416}", "3.14159", 1e-6),
    ("\\boxed{0.3333}", "\\frac{1}{3}", None),
    ("\\boxed{1, 2}", "1, 2, 3", None),  # item counts differ
    ("\\boxed{1, 2, 3}", "1, 2", None),
    ("\\boxed{1+\\sqrt{2}}", "1 \\pm \\sqrt{2}", None),  # one root of two
    ("\\boxed{(1,2), (3,5)}", "(3,4),(1,2)", None),
    ("\\boxed{(1, 3)}", "[1, 3)", None),  # open is not half-open
    ("\\boxed{y = 2x - 1}", "2x - y + 1 = 0", None),
    ("\\boxed{31^\\circ}", "30^\\circ", None),
    ("\\boxed{1}, \\boxed{2}", "1, 3", None),
    ("\\boxed{5", "5", None),  # a box that never closes
    ("", "5", None),
    ("\\boxed{5}", "", None),
    ("\\boxed{2x}", "x", None),
]


@pytest.mark.parametrize(("text", "gold", "precision"), OLYMPIAD_EQUAL)
def test_olympiad_judge_accepts(text: str, gold: str, precision: float | None) -> None:
    ok, pred = olympiad_judge(text, gold, precision)
    assert ok, (text, gold, pred)
    assert pred


@pytest.mark.parametrize(("text", "gold", "precision"), OLYMPIAD_UNEQUAL)
def test_olympiad_judge_rejects(text: str, gold: str, precision: float | None) -> None:
    assert not olympiad_judge(text, gold, precision)[0], (text, gold)


def test_olympiad_judge_reports_what_it_read() -> None:
    assert olympiad_judge("\\boxed{1}, \\boxed{2}", "1, 2") == (True, "1,2")
    assert olympiad_judge("\\boxed{7}", "1, 2") == (False, "7")


def test_olympiad_judge_reads_only_after_the_thinking() -> None:
    inside = "<think>so \\boxed{5}</think> Hence the answer is 6."
    assert not olympiad_judge(scored_text(inside, "prefer"), "5")[0]
    after = "<think>maybe 6</think> Hence $x = 5$"
    assert olympiad_judge(scored_text(after, "prefer"), "5")[0]
    no_think = "First 4, then \\boxed{5}"
    assert olympiad_judge(scored_text(no_think, "prefer"), "5")[0]


def test_olympiad_judge_never_raises() -> None:
    for text in ("\\boxed{\\frac{1}{0}}", "\\boxed{((}", "\\boxed{\\sqrt{}}", "}{", "$$"):
        ok, _ = olympiad_judge(text, "1")
        assert ok is False


POLYMATH = [
    ("\\boxed{12} and later \\boxed{5}", "12", True),  # the first box wins
    ("\\boxed{5} and later \\boxed{12}", "12", False),
    ("\\boxed{ 1 2 }", "12", True),  # spaces removed
    ("\\boxed {\\frac{1}{2}}", "0.5", True),
    ("<think>\\boxed{12}</think> \\boxed{7}", "12", True),  # the whole response
    ("the answer is 12", "12", False),  # no box, no answer
    ("\\boxed{12", "12", False),
    ("\\boxed{13}", "12", False),
]


@pytest.mark.parametrize(("text", "gold", "expected"), POLYMATH)
def test_polymath_judge(text: str, gold: str, expected: bool) -> None:
    assert polymath_judge(text, gold)[0] is expected


def test_polymath_judge_reports_the_first_box() -> None:
    assert polymath_judge("\\boxed{5} then \\boxed{12}", "12") == (False, "5")


LETTERS = [
    ("\\boxed{B}", "B"),
    ("\\boxed{(B)}", "B"),
    ("\\boxed{\\text{B}}", "B"),
    ("\\boxed{B) 10^{-4} eV}", "B"),
    ("\\boxed{\\textbf{(C)}}", "C"),
    ("\\boxed{B.}", "B"),
    ("\\boxed{\\text{(D) } 5}", "D"),
    ("\\boxed{J}", "J"),
    ("$\\boxed{\\mathrm{E}}$", "E"),
    ("First \\boxed{A}, on reflection \\boxed{C}", "C"),  # the last box
    ("The answer is (B)", "B"),
    ("Answer: B", "B"),
    ("so the answer is B.", "B"),
    ("**Final Answer:** (C)", "C"),
    ("The correct answer is: **J**", "J"),
    ("Answer: A\nThe answer is (D).", "D"),  # the last sentence
]

NO_LETTER = [
    "\\boxed{42}",
    "\\boxed{AB}",
    "\\boxed{A+B}",
    "\\boxed{A = 5}",
    "\\boxed{A, C}",
    "\\boxed{A and C}",
    "\\boxed{(A)(B)}",
    "\\boxed{K}",
    "The answer is (B), so \\boxed{12}",  # the box decides
    "Answer: Based on the table, 12",
    "The answer is I think 5",
    "no answer here",
    "",
]


@pytest.mark.parametrize(("text", "letter"), LETTERS)
def test_choice_letter(text: str, letter: str) -> None:
    assert choice_letter(text) == letter


@pytest.mark.parametrize("text", NO_LETTER)
def test_no_choice_letter(text: str) -> None:
    assert choice_letter(text) is None


def test_gold_letter() -> None:
    assert [gold_letter(g) for g in ("B", "(b)", "\\boxed{C}", "B. 17", "(D) 5")] == list("BBCBD")
    assert gold_letter("17") is None and gold_letter("") is None


def check(response: str, gold: str, **opts) -> object:
    return check_answer(response, gold, timeout_s=None, **{**EVAL.options(), **opts})


def test_choice_right_letter() -> None:
    res = check("Thinking... so \\boxed{B}", "B", choice=True)
    assert (res.equivalent, res.reason, res.pred, res.method) == (True, MATCH, "B", "choice")
    res = check("The answer is (C).", "c", choice=True)  # the gold's case does not matter
    assert res.equivalent and res.method == "choice"


def test_choice_wrong_letter_is_decisive() -> None:
    # The usual path rescues a wrong last box with an earlier "The answer is B" sentence; a
    # committed letter is final and nothing rescues it.
    text = "So the answer is B.\nWait, checking option C again, it holds: \\boxed{C}"
    assert check(text, "B").equivalent
    res = check(text, "B", choice=True)
    assert (res.equivalent, res.reason, res.pred, res.method) == (False, MISMATCH, "C", "choice")
    assert not check("\\boxed{A}", "B", choice=True, judges=("olympiad", "polymath")).equivalent


def test_choice_parenthesised_gold() -> None:
    assert check("\\boxed{B}", "(B)", choice=True).method == "choice"
    assert check("\\boxed{B}", "(B)", choice=True).equivalent
    assert not check("\\boxed{A}", "(B)", choice=True).equivalent


def test_choice_without_a_letter_falls_back() -> None:
    res = check("so the value is \\boxed{42}", "42", choice=True)
    assert res.equivalent and res.method != "choice" and res.pred == "42"
    res = check("I do not know", "B", choice=True)
    assert not res.equivalent and res.reason == NO_ANSWER


def test_choice_off_keeps_the_usual_path() -> None:
    assert check("\\boxed{B}", "B").method == "string"


def test_judges_are_or_ed_after_the_usual_path() -> None:
    text = "<think>\\boxed{50}</think> \\boxed{0.5}"
    assert not check(text, "50").equivalent
    res = check(text, "50", judges=("olympiad",))
    assert (res.equivalent, res.method, res.pred) == (True, "olympiad", "0.5")
    wrong_after = "<think>\\boxed{0.5}</think> \\boxed{7}"
    assert not check(wrong_after, "50", judges=("olympiad",)).equivalent


def test_olympiad_judge_precision_in_check_answer() -> None:
    text = "\\boxed{3.14}"
    assert not check(text, "3.14159").equivalent  # the comparator's 1e-4 relative tolerance
    assert not check(text, "3.14159", judges=("olympiad",)).equivalent  # 1e-8 by default
    res = check(text, "3.14159", judges=("olympiad",), precision=1e-2)
    assert res.equivalent and res.method == "olympiad"


def test_polymath_judge_in_check_answer() -> None:
    text = "\\boxed{12} is what I first get; correcting, \\boxed{5}"
    assert not check(text, "12").equivalent
    res = check(text, "12", judges=("olympiad", "polymath"))
    assert (res.equivalent, res.method, res.pred) == (True, "polymath", "12")  # what it read
    res = check(text, "5", judges=("polymath",))
    assert res.equivalent and res.method != "polymath"  # the usual path accepts it first


def test_a_judge_can_answer_where_nothing_was_extracted() -> None:
    res = check_answer("\\boxed{0.5} then more text", "50", judges=("olympiad",), timeout_s=None)
    assert res.equivalent and res.method == "olympiad"


def test_unknown_judges_are_refused() -> None:
    with pytest.raises(ValueError, match="judges"):
        Policy("x", judges=("olympiad", "gsm8k"))
    with pytest.raises(ValueError, match="judges"):
        Policy("x", judges="olympiad")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="precision"):
        Policy("x", precision=0)
    with pytest.raises(ValueError, match="judges"):
        check_answer("\\boxed{1}", "1", judges=("nope",))


def test_policy_options_carry_the_new_fields() -> None:
    policy = EVAL.but(judges=["olympiad"], choice=True, precision=1e-3)
    opts = policy.options()
    assert opts["judges"] == ("olympiad",) and opts["choice"] and opts["precision"] == 1e-3
    assert check_answer("\\boxed{3.1416}", "3.14159", **opts).method in ("numeric", "olympiad")
    assert policy.answer("so \\boxed{(B)}") == "B"
    defaults = EVAL.options()
    assert (defaults["judges"], defaults["choice"], defaults["precision"]) == ((), False, None)


def test_pool_takes_per_pair_options() -> None:
    policy = EVAL.but(judges=("olympiad",))
    pairs = [
        ("\\boxed{3.14}", "3.14159", {"precision": 1e-2}),
        ("\\boxed{3.14}", "3.14159"),
        ("\\boxed{3.14}", "3.14159", {"precision": 1e-3}),
        ("\\boxed{B}", "B", {"choice": True}),
        ("\\boxed{2}", "2", {}),
    ]
    with CheckerPool(1, timeout_s=5) as pool:
        results = pool.map(pairs, policy=policy)
        assert [r.equivalent for r in results] == [True, False, False, True, True]
        assert [r.method for r in results][0::3] == ["olympiad", "choice"]
        with pytest.raises(ValueError, match="per-pair"):
            pool.map([("1", "1", {"timeout_s": 100})])
        with pytest.raises(ValueError, match="judges"):
            pool.map([("1", "1", {"judges": ["nope"]})])
        plain = pool.map([("\\boxed{3.14}", "3.14159")], judges=("olympiad",), precision=0.01)
        assert plain[0].method == "olympiad"


def test_pool_reports_a_lost_pair_with_options() -> None:
    tower = "\\boxed{10^{10^{10^{10}}}}"
    with CheckerPool(1, timeout_s=1, grace_s=0.5, soft_timeout=False) as pool:
        results = pool.map([(tower, "1", {"choice": True}), ("\\boxed{2}", "2", {})])
    assert results[0].reason == TIMEOUT and results[0].pred == "10^{10^{10^{10}}}"
    assert results[1].reason == MATCH
