"""The OlympiadBench and PolyMath judges of the authors' scorer give the authors' verdicts.

(a) Facts tables, one behaviour per row group with cases that must pass and cases that must
not; every expected value was obtained by running the authors' own judges on the same call.
(b) Agreement >= 99 % per kind with the authors' verdicts on the hold-out pairs
(``tests/data/authors_judges_holdout.jsonl``, labelled by running their judges).
Both run in ``.venv-authors`` (sympy 1.13.1, antlr 4.11.0, PolyMath's LaTeX parser), through
one ``.venv-authors/bin/python -c`` process per batch with JSON lines in and out.
(c) In ``.venv``: the modules import only the standard library, and their text handling (box
cutting, comma splitting, ``\\pm``, first box, numbers) needs no sympy.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from deepmath.answers.authors import olympiad, polymath
from tests.authors_env import AUTHORS_PYTHON, available

REPO = Path(__file__).resolve().parents[2]
HOLDOUT = REPO / "tests" / "data" / "authors_judges_holdout.jsonl"
NEEDS_ENV = pytest.mark.skipif(
    not available(), reason=f"{AUTHORS_PYTHON} is missing: `make venv-authors` builds it"
)
B = "\\boxed"
UNLOADED_SECONDS = 60.0

_SERVER = r"""
import json, sys
from deepmath.answers.authors import olympiad, polymath

polymath.SYMBOLIC_SECONDS = float(sys.argv[1])
for line in sys.stdin:
    call = json.loads(line)
    try:
        if call["judge"] == "olympiad":
            out = {"result": olympiad.judge(call["gold"], call["text"], call.get("precision"))}
        else:
            out = {"result": polymath.judge(call["gold"], call["text"])}
    except Exception as exc:
        out = {"error": type(exc).__name__}
    print(json.dumps(out), flush=True)
"""


def _start(calls: list[dict[str, Any]], symbolic_seconds: float) -> tuple[subprocess.Popen, str]:
    """One ``.venv-authors`` judge process fed the calls as JSON lines."""
    env = dict(os.environ, PYTHONPATH=str(REPO / "scripts"))
    process = subprocess.Popen(
        [str(AUTHORS_PYTHON), "-c", _SERVER, str(symbolic_seconds)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    return process, "".join(json.dumps(c, ensure_ascii=False) + "\n" for c in calls)


def judge_all(
    calls: list[dict[str, Any]],
    symbolic_seconds: float = UNLOADED_SECONDS,
    timeout_s: float = 1800.0,
) -> list[dict[str, Any]]:
    """Every call judged in ``.venv-authors``: two processes (one per judge) side by side.

    ``symbolic_seconds`` is PolyMath's wall-clock bound per symbolic comparison. The pairs here
    were chosen so that their verdicts are the same at the judge's 1 s and at 60 s on an idle
    machine; the tests raise it so that a busy test machine cannot turn a slow comparison into a
    timeout. The bound itself has its own test. One result per call, in order:
    ``{"result": bool}`` or ``{"error": "<exception type>"}``.
    """
    batches = {name: [c for c in calls if c["judge"] == name] for name in ("olympiad", "polymath")}
    started = {name: _start(batch, symbolic_seconds) for name, batch in batches.items() if batch}
    answers: dict[str, list[dict[str, Any]]] = {}
    for name, (process, payload) in started.items():
        stdout, stderr = process.communicate(payload, timeout=timeout_s)
        answers[name] = [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]
        if len(answers[name]) != len(batches[name]):
            raise RuntimeError(
                f"{AUTHORS_PYTHON} answered {len(answers[name])} of {len(batches[name])} "
                f"{name} calls (exit {process.returncode}): {stderr[-2000:]}"
            )
    cursors = {name: iter(results) for name, results in answers.items()}
    return [next(cursors[c["judge"]]) for c in calls]


# (behaviour, gold, text after the first </think>, precision, authors' verdict)
OLYMPIAD_FACTS = [
    ("absolute precision 1e-8 by default", "3", B + "{3.000000001}", None, True),
    ("absolute precision 1e-8 by default", "3", B + "{3.0000001}", None, False),
    ("absolute precision 1e-8 by default", "1000", B + "{1000.0000001}", None, False),
    ("precision given", "2.5", B + "{2.51}", 0.02, True),
    ("precision given", "2.5", B + "{2.6}", 0.02, False),
    ("gold, gold/100 or gold*100", "12", B + "{0.12}", None, True),
    ("gold, gold/100 or gold*100", "12", B + "{1200}", None, True),
    ("gold, gold/100 or gold*100", "12", B + "{1.2}", None, False),
    ("all boxes, joined by commas", "1, 2", "So " + B + "{2} and " + B + "{1}.", None, True),
    ("all boxes, joined by commas", "2", B + "{1} or rather " + B + "{2}", None, False),
    ("a box that never closes: wrong", "5", B + "{5} and " + B + "{5", None, False),
    ("a box that never closes: wrong", "5", B + "{5", None, False),
    ("a box that never closes: wrong", "5", B + "{5}", None, True),
    ("no box: dollar spans of the last line", "3", "Work $x=2$.\nSo $3$", None, True),
    ("no box: dollar spans of the last line", "2, 3", "Roots\n$2$ and $3$", None, True),
    ("no box: dollar spans of the last line", "3", "So $3$.\nDone.", None, False),
    ("no box, no dollars: the whole text", "7", "7", None, True),
    ("no box, no dollars: the whole text", "7", "the answer is 7", None, False),
    ("gold goes through the same cut", "$\\frac{1}{2}$", B + "{0.5}", None, True),
    ("gold goes through the same cut", "$\\frac{1}{2}$", B + "{0.51}", None, False),
    ("\\in keeps what follows", "[0,1]", B + "{x \\in [0,1]}", None, True),
    ("\\in keeps what follows", "(0,1)", B + "{x \\in [0,1]}", None, False),
    ("sign table and outer punctuation", "2", B + "{\\approx 2}", None, True),
    ("sign table and outer punctuation", "90", B + "{90^\\circ}", None, True),
    ("sign table and outer punctuation", "x", B + "{\\mathrm{x}}", None, True),
    ("sign table and outer punctuation", "25", B + "{25%}", None, True),
    ("sign table and outer punctuation", "f'(x)", B + "{f^{\\prime}(x)}", None, True),
    ("sign table and outer punctuation", "25", B + "{25\\%}", None, False),
    ("sign table and outer punctuation", "f'(x)", B + "{f(x)}", None, False),
    ("CJK characters dropped", "5", B + "{5个}", None, True),
    ("CJK characters dropped", "5", B + "{6个}", None, False),
    (
        "items at commas outside brackets, any order",
        "(1, 2), (3, 4)",
        B + "{(3, 4), (1, 2)}",
        None,
        True,
    ),
    ("items at commas outside brackets, any order", "1, 2, 3", B + "{3, 1, 2}", None, True),
    ("items at commas outside brackets, any order", "(1, 2)", B + "{(2, 1)}", None, False),
    ("same item count", "1, 2", B + "{2, 1}", None, True),
    ("same item count", "1, 2", B + "{1, 2, 3}", None, False),
    ("same item count", "1, 2, 3", B + "{1, 2}", None, False),
    ("\\pm is two items", "1 \\pm \\sqrt{2}", B + "{1-\\sqrt{2}, 1+\\sqrt{2}}", None, True),
    ("\\pm is two items", "3, -3", B + "{\\pm 3}", None, True),
    ("\\pm is two items", "\\pm 3", B + "{3}", None, False),
    ("intervals: same brackets, equal bounds", "[1, 3)", B + "{[1.0, 3)}", None, True),
    ("intervals: same brackets, equal bounds", "(0, \\frac{1}{2})", B + "{(0, 0.5)}", None, True),
    ("intervals: same brackets, equal bounds", "[1, 3)", B + "{[1, 3]}", None, False),
    (
        "intervals: same brackets, equal bounds",
        "[-2,-1] \\cup [1,2]",
        B + "{[1,2] \\cup [-2,-1]}",
        None,
        False,
    ),
    ("intervals: a symbolic bound ends the item", "(a, 1)", B + "{(a, 1.0)}", None, True),
    ("intervals: a symbolic bound ends the item", "(a, b)", B + "{(a, c)}", None, False),
    ("expressions through parse_latex", "x^2-1", B + "{(x-1)(x+1)}", None, True),
    (
        "expressions through parse_latex",
        "\\frac{\\sqrt{3}}{2}",
        B + "{\\sin\\frac{\\pi}{3}}",
        None,
        True,
    ),
    ("expressions through parse_latex", "x^2-1", B + "{x^2+1}", None, False),
    ("expressions through parse_latex", "2\\pi", B + "{6.28}", None, False),
    ("equations: lhs - rhs up to an integer factor", "x+y=1", B + "{2x+2y=2}", None, True),
    ("equations: lhs - rhs up to an integer factor", "y = 2x + 1", B + "{2x+1}", None, True),
    ("equations: lhs - rhs up to an integer factor", "x=3", B + "{y=3}", None, False),
    ("equations: lhs - rhs up to an integer factor", "x+y=1", B + "{x+y=2}", None, False),
    ("empty answers are equal", "", "", None, True),
    ("empty answers are equal", "", B + "{}", None, True),
    ("empty answers are equal", "1", B + "{}", None, False),
    ("empty answers are equal", "1", "", None, False),
    ("precision list: one per gold item", "1.5, 2.5", B + "{2.49, 1.51}", [0.02, 0.02], True),
    ("precision list: one per gold item", "1.5, 2.5", B + "{2.49, 1.6}", [0.02, 0.02], False),
]

# (behaviour, gold, whole response, authors' verdict)
POLYMATH_FACTS = [
    ("first balanced box only", "1", B + "{1} then " + B + "{2}", True),
    ("first balanced box only", "6", B + "{5 " + B + "{6}", True),
    ("first balanced box only", "7", "boxed{7}", True),
    ("first balanced box only", "2", B + "{1} then " + B + "{2}", False),
    ("first balanced box only", "5", B + "{5 " + B + "{6}", False),
    ("no box: wrong", "3", "so " + B + "{3}", True),
    ("no box: wrong", "3", "The answer is 3", False),
    ("no box: wrong", "3", "$3$", False),
    ("spaces removed", "1000", B + "{1 000}", True),
    ("spaces removed", "x+1", B + "{x + 1}", True),
    ("spaces removed", "1000", B + "{1 001}", False),
    ("case-insensitive strings", "Yes", B + "{yes}", True),
    ("case-insensitive strings", "Yes", B + "{no}", False),
    ("gold A-E: last standalone letter", "C", B + "{(C) 12}", True),
    ("gold A-E: last standalone letter", "C", B + "{A, C}", True),
    ("gold A-E: last standalone letter", "B", B + "{A, C}", False),
    ("numbers: relative 1e-4, percent forms, no symbolic step", "2", B + "{2.0001}", True),
    ("numbers: relative 1e-4, percent forms, no symbolic step", "0.5", B + "{50\\%}", True),
    ("numbers: relative 1e-4, percent forms, no symbolic step", "12", B + "{0.12}", True),
    ("numbers: relative 1e-4, percent forms, no symbolic step", "1,000", B + "{1000}", True),
    ("numbers: relative 1e-4, percent forms, no symbolic step", "2", B + "{2.001}", False),
    ("numbers: relative 1e-4, percent forms, no symbolic step", "100", B + "{101}", False),
    ("numbers: relative 1e-4, percent forms, no symbolic step", "0", B + "{0.00001}", False),
    ("empty prediction: wrong unless the gold is empty", "", B + "{}", True),
    ("empty prediction: wrong unless the gold is empty", "1", B + "{}", False),
    ("brackets and braces dropped", "\\{1, 2\\}", B + "{\\{1,2\\}}", True),
    ("brackets and braces dropped", "(1, 2)", B + "{[1,2]}", True),
    ("brackets and braces dropped", "(1, 2)", B + "{[1,3]}", False),
    ("tuples item by item, in order", "(\\frac{1}{2}, 3)", B + "{(0.5,3)}", True),
    ("tuples item by item, in order", "(1, 2)", B + "{(2,1)}", False),
    (
        "matrices cell by cell",
        "\\begin{pmatrix} 1 & 2 \\\\ 3 & 4 \\end{pmatrix}",
        B + "{\\begin{bmatrix}1&2\\\\3&4\\end{bmatrix}}",
        True,
    ),
    (
        "matrices cell by cell",
        "\\begin{pmatrix} 1 & 2 \\\\ 3 & 4 \\end{pmatrix}",
        B + "{\\begin{pmatrix}1&2\\\\3&5\\end{pmatrix}}",
        False,
    ),
    ("equations: lhs - (rhs), also negated", "x+y=1", B + "{y+x=1}", True),
    ("equations: lhs - (rhs), also negated", "y=x", B + "{x=y}", True),
    ("equations: lhs - (rhs), also negated", "x+y=1", B + "{2x+2y=2}", False),
    ("a short lhs on one side is dropped", "3", B + "{x=3}", True),
    ("a short lhs on one side is dropped", "x=3", B + "{3}", True),
    ("a short lhs on one side is dropped", "3", B + "{abc=3}", False),
    ("symbolic: parse_latex, parse_expr, latex2sympy", "x^2-1", B + "{(x-1)(x+1)}", True),
    (
        "symbolic: parse_latex, parse_expr, latex2sympy",
        "\\frac{\\sqrt{3}}{2}",
        B + "{0.8660254}",
        True,
    ),
    ("symbolic: parse_latex, parse_expr, latex2sympy", "\\frac{1}{2}", B + "{1/2}", True),
    ("symbolic: parse_latex, parse_expr, latex2sympy", "\\frac{\\sqrt{3}}{2}", B + "{0.87}", False),
    ("symbolic: parse_latex, parse_expr, latex2sympy", "\\frac{\\pi}{4}", B + "{45^\\circ}", False),
]


def _fact_calls() -> list[dict[str, Any]]:
    """Both facts tables as judge calls, each carrying its expected verdict and behaviour."""
    calls = [
        {"judge": "olympiad", "gold": g, "text": t, "precision": p, "expected": e, "what": w}
        for w, g, t, p, e in OLYMPIAD_FACTS
    ]
    calls += [
        {"judge": "polymath", "gold": g, "text": t, "expected": e, "what": w}
        for w, g, t, e in POLYMATH_FACTS
    ]
    return calls


def test_facts_tables_cover_both_verdicts_per_behaviour() -> None:
    """Each behaviour has at least one accepted and one rejected case (else it proves little)."""
    verdicts: dict[tuple[str, str], set[bool]] = {}
    for call in _fact_calls():
        verdicts.setdefault((call["judge"], call["what"]), set()).add(call["expected"])
    one_sided = [key for key, seen in verdicts.items() if seen != {True, False}]
    assert not one_sided, f"behaviours with only one verdict: {one_sided}"


@NEEDS_ENV
def test_facts_tables_hold_in_the_authors_env() -> None:
    """Every row of both facts tables gives the authors' verdict."""
    calls = _fact_calls()
    results = judge_all(calls)
    wrong = [
        f"{c['judge']} / {c['what']}: gold={c['gold']!r} text={c['text']!r} -> {r}"
        f" (authors: {c['expected']})"
        for c, r in zip(calls, results, strict=True)
        if r.get("result") != c["expected"]
    ]
    assert not wrong, "\n".join(wrong)


@NEEDS_ENV
def test_a_precision_list_shorter_than_the_items_raises_as_the_authors_judge_does() -> None:
    """Two tolerances for three gold items: the judge's pairing loop runs out (IndexError)."""
    call = {
        "judge": "olympiad",
        "gold": "1, 2, 3",
        "text": B + "{3, 2, 1}",
        "precision": [0.1, 0.1],
    }
    assert judge_all([call]) == [{"error": "IndexError"}]


@NEEDS_ENV
def test_polymath_symbolic_step_is_bounded_to_one_second_per_comparison() -> None:
    """A power tower that sympy would evaluate for ages: the forked check is killed, "wrong"."""
    call = {"judge": "polymath", "gold": "1", "text": B + "{9^{9^{9^{9}}}}"}
    start = time.monotonic()
    assert judge_all([call], symbolic_seconds=polymath.SYMBOLIC_SECONDS) == [{"result": False}]
    assert time.monotonic() - start < 30


@NEEDS_ENV
def test_holdout_agreement_with_the_authors_judges_per_kind() -> None:
    """>= 99 % of the hold-out pairs get the authors' verdict, per judge and kind."""
    rows = [json.loads(line) for line in HOLDOUT.read_text(encoding="utf-8").splitlines()]
    assert Counter(r["judge"] for r in rows)["olympiad"] >= 300
    assert Counter(r["judge"] for r in rows)["polymath"] >= 300
    results = judge_all(rows)
    total: Counter[tuple[str, str]] = Counter()
    agreed: Counter[tuple[str, str]] = Counter()
    misses: list[str] = []
    for row, result in zip(rows, results, strict=True):
        key = (row["judge"], row["kind"])
        total[key] += 1
        if result.get("result") == row["oracle"]:
            agreed[key] += 1
        else:
            misses.append(f"{row['id']}: {result} (authors: {row['oracle']})")
    low = {k: f"{agreed[k]}/{total[k]}" for k in total if agreed[k] < 0.99 * total[k]}
    assert not low, f"agreement below 99 %: {low}\n" + "\n".join(misses[:40])


def test_modules_import_only_the_standard_library() -> None:
    """Importing the judges pulls in no sympy, antlr or latex2sympy2 (they load on first use)."""
    code = (
        "import sys; import deepmath.answers.authors.olympiad, deepmath.answers.authors.polymath;"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in"
        " ('sympy', 'antlr4', 'latex2sympy2', 'mpmath', 'math_verify')))"
    )
    env = dict(os.environ, PYTHONPATH=str(REPO / "scripts"))
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
    )
    assert done.stdout.strip() == "[]"


@pytest.mark.parametrize(
    ("text", "cut"),
    [
        (B + "{1} and " + B + "{\\frac{1}{2}}", "1,\\frac{1}{2},"),
        (B + "{" + B + "{4}}", B + "{4},4,"),
        ("Work $x$.\nSo $2$ and $3$", "2,3,"),
        ("plain 7", "plain 7"),
        ("So $3$.\nDone.", "So $3$.\nDone."),
    ],
)
def test_olympiad_cut_all_boxes_else_last_line_dollars_else_everything(text: str, cut: str) -> None:
    """The judge's own answer cut, applied to both gold and text."""
    assert olympiad._boxed_or_dollar(text) == cut


@pytest.mark.parametrize("text", [B + "{5", B + "{1} " + B + "{{2}"])
def test_olympiad_cut_rejects_a_box_that_never_closes(text: str) -> None:
    """An unclosed box raises (the judge then calls the pair wrong)."""
    with pytest.raises(ValueError):
        olympiad._boxed_or_dollar(text)
    assert olympiad.judge("5", text) is False


@pytest.mark.parametrize(
    ("expression", "cleaned"),
    [
        ("x \\in [0,1]", "[0,1]"),
        ("\\left(1,2\\right)", "(1,2)"),
        ("\\approx 2.5.", " 2.5"),
        ("a \\simeq b", "a = b"),
        ("f^{\\prime}(x)", "f'(x)"),
        ("90^\\circ", "90"),
        ("12\\%", "12\\"),
        ("\\mathrm{~cm}, \\mathbf{v}", "cm, v"),
        ("1，2。", "1,2"),
    ],
)
def test_olympiad_cleaning_table(expression: str, cleaned: str) -> None:
    """``\\in``, the sign rewrites in order, outer punctuation, ``\\mathrm``/``\\mathbf``."""
    assert olympiad._clean(expression) == cleaned


@pytest.mark.parametrize(
    ("expression", "items"),
    [
        ("1, 2, 3", ["1", "2", "3"]),
        ("(1, 2), [3, 4]", ["(1, 2)", "[3, 4]"]),
        ("\\{1, 2\\}", ["\\{1", "2\\}"]),
        ("1,,2,", ["1", "", "2"]),
        ("", []),
    ],
)
def test_olympiad_split_at_commas_outside_round_and_square_brackets(
    expression: str, items: list[str]
) -> None:
    """Braces do not protect commas; a trailing comma adds no item."""
    assert olympiad.split_top_level_commas(expression) == items


def test_olympiad_plus_minus_becomes_two_items() -> None:
    """``a \\pm b`` is the two answers ``a + b`` and ``a - b``; other items stay."""
    assert olympiad.expand_plus_minus(["1 \\pm 2", "3"]) == ["1 + 2", "1 - 2", "3"]


def test_olympiad_equal_strings_need_no_sympy() -> None:
    """Equal after cleaning (or numbers within the tolerance): decided before any parsing."""
    assert olympiad.judge("$3$", "So \\boxed{3}.") is True
    assert olympiad.judge("3", B + "{3.000000001}") is True


@pytest.mark.parametrize(
    ("response", "box"),
    [
        (B + "{1} " + B + "{2}", "1"),
        (B + "{ 1 000 }", "1000"),
        ("boxed{7}", "7"),
        (B + "{5 " + B + "{6}", "6"),
        (B + "{\\frac{1}{2}}", "\\frac{1}{2}"),
        ("no box", None),
        (B + "{5", None),
    ],
)
def test_polymath_first_balanced_box_with_spaces_removed(response: str, box: str | None) -> None:
    """PolyMath's extraction: the first ``boxed{`` whose braces close."""
    assert polymath.first_box(response) == box


@pytest.mark.parametrize(
    ("text", "number"),
    [("1,000", 1000.0), ("12%", 0.12), ("12\\%", 0.12), ("-2.5", -2.5), ("1e3", 1000.0)],
)
def test_polymath_numbers(text: str, number: float) -> None:
    """Commas dropped; a trailing ``%`` (or ``\\%``) divides by 100."""
    assert polymath._number(text) == pytest.approx(number)


@pytest.mark.parametrize("text", ["x", "\\frac{1}{2}", "12%%", ""])
def test_polymath_not_numbers(text: str) -> None:
    """Anything float() refuses (after the percent forms) is not a number."""
    assert polymath._number(text) is None


def test_polymath_numbers_decide_without_symbolic_step() -> None:
    """Two numbers: the relative 1e-4 test alone decides, both ways."""
    assert polymath.judge("0.5", B + "{50\\%}") is True
    assert polymath.judge("100", B + "{101}") is False
    assert polymath.judge("1", "no box at all") is False
