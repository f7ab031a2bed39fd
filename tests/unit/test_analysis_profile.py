"""Answer types: every category with positives and near misses."""

from __future__ import annotations

import pytest

from deepmath.analysis.profile import TYPES, answer_type, profile, profile_table

Q = "Compute the value."
CASES = {
    "proof": [
        ("Prove that there are infinitely many primes.", "Yes"),
        ("Show that $f$ is continuous on $[0,1]$.", "f is continuous"),
        ("Determine whether the series converges and justify your answer.", "converges"),
        ("Demonstrate that $x^2 \\geq 0$ for all real $x$.", None),
    ],
    "boolean": [
        (Q, "Yes"),
        (Q, "no"),
        (Q, "\\text{True}"),
        (Q, "\\boxed{False}"),
        (Q, "$\\text{No}$"),
        (Q, "YES."),
        (Q, "\\textbf{Yes}"),
    ],
    "choice": [(Q, "B"), (Q, "(C)"), (Q, "\\text{(D)}"), (Q, "$(A)$"), (Q, "E.")],
    "integer": [
        (Q, "42"),
        (Q, "-7"),
        (Q, "1,000"),
        (Q, "$2024$"),
        (Q, "x = 5"),
        (Q, "43.0"),
        (Q, "\\boxed{12}"),
    ],
    "decimal": [(Q, "3.14"), (Q, "-0.5"), (Q, ".25"), (Q, "$2.50$")],
    "fraction": [(Q, "\\frac{1}{2}"), (Q, "3/4"), (Q, "-\\dfrac{7}{3}"), (Q, "2\\frac{1}{4}")],
    "interval_set": [
        (Q, "(0, 1]"),
        (Q, "[-2, 3)"),
        (Q, "\\{1, 2, 3\\}"),
        (Q, "(-\\infty, 0) \\cup (1, \\infty)"),
        (Q, "1, 2, 3"),
        (Q, "(2, -1)"),
        (Q, "\\emptyset"),
        (Q, "\\mathbb{R}"),
    ],
    "expression": [
        (Q, "\\sqrt{2}"),
        (Q, "2\\pi"),
        (Q, "x^2 + 1"),
        (Q, "\\frac{n(n+1)}{2}"),
        (Q, "e^{-x}"),
        (Q, "\\ln 2"),
        (Q, "n"),
        (Q, "\\frac{\\sqrt{3}}{2}"),
        (Q, "10^{6}"),
    ],
    "text": [(Q, "Evelyn"), (Q, "\\text{Tuesday}"), (Q, "the empty graph"), (Q, "not possible")],
    "missing": [(Q, None), (Q, ""), (Q, "   "), (Q, float("nan"))],
}


@pytest.mark.parametrize(
    ("kind", "question", "answer"),
    [(kind, q, a) for kind, items in CASES.items() for q, a in items],
)
def test_answer_type(kind, question, answer):
    assert answer_type(question, answer) == kind


@pytest.mark.parametrize(
    ("answer", "not_kind"),
    [
        ("Yesterday", "boolean"),  # a word that starts like yes
        ("No solution exists for n = 3", "boolean"),
        ("AB", "choice"),  # a segment, not a letter
        ("F", "choice"),  # past E
        ("12a", "integer"),
        ("1.2.3", "decimal"),
        ("\\frac{x}{2}", "fraction"),  # a variable makes it an expression
        ("(x+1)(x-1)", "interval_set"),  # a product, no comma
    ],
)
def test_near_misses(answer, not_kind):
    assert answer_type(Q, answer) != not_kind


def test_profile_counts_and_guessable_share():
    questions = [Q] * 4 + ["Prove it."]
    answers = ["Yes", "B", "3", "\\frac{1}{2}", "anything"]
    prof = profile(questions, answers)
    assert prof["items"] == 5 and sum(prof["counts"].values()) == 5
    assert prof["counts"]["boolean"] == 1 and prof["counts"]["proof"] == 1
    assert prof["guessable_share"] == pytest.approx(0.4)
    table = profile_table({"ours": prof})
    assert list(table.columns) == ["dataset", "items", *TYPES, "guessable"]
    assert table.loc[0, "boolean"] == 20.0


def test_empty_dataset():
    prof = profile([], [])
    assert prof["items"] == 0 and prof["guessable_share"] == 0.0
