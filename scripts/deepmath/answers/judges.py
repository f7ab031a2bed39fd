"""Benchmark-specific judges that the DeepMath authors' evaluation ORs into correctness.

Their evaluation accepts a response when the shared math check accepts it, or when the
benchmark's own judge does: OlympiadBench's official judge (its own extraction, an absolute
per-problem precision, tuples in any order), PolyMath's (the first box of the space-free text)
and, for multiple-choice sets, the letter the response commits to. Reproducing their numbers
needs these rules; reproducing them with a second comparator would make "equal" mean two
things, so each judge keeps its benchmark's *extraction and matching rules* and leaves the
comparison of two items to :func:`~deepmath.answers.equivalence._compare`.

Nothing here is time-bounded (like the comparator, the callers bound it: the timer of
:func:`~deepmath.answers.check.check_answer` and the pool's hard kill); no judge raises: an
answer a judge cannot read is an answer it does not accept.
"""

from __future__ import annotations

import re
from fractions import Fraction
from typing import Any

from deepmath.answers.authors.olympiad import (
    CJK,
    FONT_WRAPPER,
    OUTER_PUNCTUATION,
    SIGN_REWRITES,
    expand_plus_minus,
    looks_like_interval,
    split_top_level_commas,
)
from deepmath.answers.equivalence import _compare
from deepmath.answers.extract import _matching_brace, boxes
from deepmath.answers.normalize import normal_form, normalize_answer
from deepmath.answers.values import _parse_number

JUDGES = ("olympiad", "polymath")

OLYMPIAD_PRECISION = 1e-8


# OlympiadBench's symbol map, outer punctuation and font wrappers: the official judge's, kept
# once with the authors' reproduction of it.
_OLYMPIAD_SIGNALS = SIGN_REWRITES
_OLYMPIAD_STRIP = OUTER_PUNCTUATION
_OLYMPIAD_FONT = FONT_WRAPPER
_CJK = CJK
_DOLLAR_MATH = re.compile(r"\$\$(.+?)\$\$|\$(.+?)\$", re.S)


def _olympiad_extract(text: str) -> str | None:
    """OlympiadBench's reading of a text: all its boxes, else the math of its last line, else
    all of it. None when a box never closes (the official judge rejects such a text)."""
    found = boxes(text)
    if found:
        if any(content is None for _, _, content in found):
            return None
        outer: list[str] = []
        end = -1
        for start, stop, content in found:
            if start < end:  # a box inside a box is part of the outer one
                continue
            outer.append(content or "")
            end = stop
        return ",".join(outer)
    stripped = text.strip()
    last = stripped.split("\n")[-1] if stripped else ""
    math = [next(g for g in m.groups() if g is not None) for m in _DOLLAR_MATH.finditer(last)]
    if math:
        return ",".join(math)
    return text


def _olympiad_symbols(s: str) -> str:
    """OlympiadBench's symbol clean-up of one extracted answer."""
    if "\\in " in s:
        s = s.split("\\in ", 1)[1]  # x \in [1, 3): the set is the answer
    for old, new in _OLYMPIAD_SIGNALS:
        s = s.replace(old, new)
    s = s.strip(_OLYMPIAD_STRIP)
    return _OLYMPIAD_FONT.sub(r"\1", s)


def _split_items(s: str) -> list[str]:
    """Items separated by commas outside ``()`` / ``[]`` (braces do not group, as in the
    official judge), with an item holding ``\\pm`` standing for its + and - variants."""
    return expand_plus_minus(split_top_level_commas(s))


def _constant(s: str) -> Any:
    """The value of an item that is a number or a constant expression (``\\frac{1}{3}``,
    ``\\sqrt{2}``, ``2\\pi``): a Fraction when it is a plain number, else a sympy number; None
    for anything with a variable, a relation or that does not parse."""
    plain = _parse_number(normalize_answer(s))
    if plain is not None:
        return plain.value
    import sympy
    from latex2sympy2_extended import latex2sympy

    try:
        value = latex2sympy(normal_form(s))
    except Exception:  # unparsable: not a constant
        return None
    if not isinstance(value, sympy.Expr) or value.free_symbols or not value.is_number:
        return None
    return value


def _within(gold: Any, pred: Any, precision: float) -> bool:
    """OlympiadBench's numeric rule: ``|gold * f - pred| <= 1.01 * precision`` for f in 1/100,
    1, 100 (an answer given as a percentage or as a fraction of one), an absolute tolerance.

    Plain numbers are compared exactly (no float rounding), constants to 30 digits.
    """
    bound = Fraction(repr(float(precision))) * Fraction(101, 100)
    factors = (Fraction(1, 100), Fraction(1), Fraction(100))
    if isinstance(gold, Fraction) and isinstance(pred, Fraction):
        return any(abs(gold * f - pred) <= bound for f in factors)
    import sympy

    def exact(x: Any) -> Any:
        return sympy.Rational(x.numerator, x.denominator) if isinstance(x, Fraction) else x

    g, p = exact(gold), exact(pred)
    tol = sympy.Rational(bound.numerator, bound.denominator)
    for f in factors:
        diff = complex(sympy.N(g * sympy.Rational(f.numerator, f.denominator) - p, 30))
        if abs(diff) <= tol:
            return True
    return False


def _olympiad_item_equal(pred: str, gold: str, precision: float) -> bool:
    if pred == gold and pred != "":
        return True
    if looks_like_interval(pred) and looks_like_interval(gold):
        return _compare(pred, gold)[0]
    gold_value = _constant(gold)
    pred_value = _constant(pred) if gold_value is not None else None
    if gold_value is not None and pred_value is not None:
        # Two numbers: the benchmark's absolute precision decides, not the comparator's
        # relative tolerance (3.1416 is not 3.14159 to 1e-8).
        return _within(gold_value, pred_value, precision)
    return _compare(pred, gold)[0]


def _match_all(preds: list[str], golds: list[str], equal: Any) -> bool:
    """Whether each gold item pairs with its own predicted item (a bipartite matching)."""
    if len(preds) != len(golds):
        return False
    memo: dict[tuple[int, int], bool] = {}

    def eq(i: int, j: int) -> bool:
        if (i, j) not in memo:
            memo[(i, j)] = bool(equal(preds[j], golds[i]))
        return memo[(i, j)]

    owner: dict[int, int] = {}  # predicted item -> the gold item it is paired with

    def place(i: int, seen: set[int]) -> bool:
        for j in range(len(preds)):
            if j in seen or not eq(i, j):
                continue
            seen.add(j)
            if j not in owner or place(owner[j], seen):
                owner[j] = i
                return True
        return False

    return all(place(i, set()) for i in range(len(golds)))


def olympiad_judge(
    text: str | None, gold: str | None, precision: float | None = OLYMPIAD_PRECISION
) -> tuple[bool, str | None]:
    """OlympiadBench's official judge, as the DeepMath authors apply it; ``(accepted, pred)``.

    ``text`` is the part of the response the authors give it: what follows the last
    ``</think>`` when there is one, else the whole response
    (``scored_text(response, "prefer")``). Both sides are read the benchmark's way: the
    contents of *all* boxes joined by commas, else the ``$...$`` math of the last line, else
    the whole text; then its symbol clean-up (``\\in`` prefix, ``\\left``/``\\right``,
    ``^\\circ``, ``%``, ``\\approx`` as ``=``, the punctuation stripped from both ends). Equal
    strings are accepted; otherwise the comma-separated items (``\\pm`` counting twice) must
    pair up one to one in any order, numbers within the absolute ``precision`` (also as a
    percentage either way), anything else by the shared comparator.
    """
    pred: str | None = None
    try:
        if not text or gold is None or not str(gold).strip():
            return False, None
        raw_pred, raw_gold = _olympiad_extract(text), _olympiad_extract(str(gold))
        if raw_pred is None or raw_gold is None:
            return False, None
        pred, gold_s = _olympiad_symbols(raw_pred), _olympiad_symbols(raw_gold)
        if not pred:
            return False, None
        if pred == gold_s:
            return True, pred
        prec = float(precision) if precision is not None else OLYMPIAD_PRECISION
        preds = _split_items(_CJK.sub("", pred))
        golds = _split_items(_CJK.sub("", gold_s))
        ok = _match_all(preds, golds, lambda p, g: _olympiad_item_equal(p, g, prec))
        return ok, pred
    except Exception:  # an answer the judge cannot read is one it does not accept
        return False, pred


def _first_box_spaceless(text: str) -> str | None:
    s = text.replace(" ", "")
    at = s.find("boxed{")
    if at == -1:
        return None
    close = _matching_brace(s, at + len("boxed"))
    if close is None:
        return None
    return s[at + len("boxed{") : close]


def polymath_judge(text: str | None, gold: str | None) -> tuple[bool, str | None]:
    """PolyMath's own check; ``(accepted, pred)``.

    PolyMath reads the *first* ``boxed{...}`` of the response with all spaces removed (the
    authors give it the whole response, thinking included); no box, no answer. The answer is
    compared with the gold by the shared comparator.
    """
    pred: str | None = None
    try:
        if not text or gold is None or not str(gold).strip():
            return False, None
        pred = _first_box_spaceless(text)
        if not pred:
            return False, pred
        return _compare(pred, str(gold).strip())[0], pred
    except Exception:  # an answer the judge cannot read is one it does not accept
        return False, pred


_LETTERS = "A-J"
_FLATTEN = re.compile(r"\\(?:text|textbf|textit|textrm|mathrm|mathbf|mbox|bf|rm)\s*\{([^{}]*)\}")
# A box's content as a choice: "B", "(B)", "B.", "B) 10^{-4} eV", "(C) 5", "B: text".
_BOX_LETTER = re.compile(
    rf"\(\s*(?P<paren>[{_LETTERS}])\s*\)(?:\s*[.:]?\s*(?P<after_paren>.*))?"
    rf"|(?P<bare>[{_LETTERS}])(?:\s*[.:)]\s*(?P<after_mark>.*)|\s+(?P<after_space>.+))?",
    re.S,
)
# What after "B " shows the box holds no choice: "A + B", "A = 5", "A B", "A and C", "A, C".
_NOT_CHOICE_REST = re.compile(
    rf"[=+\-*/^_<>,&|\\]|(?:and|or)\b|[{_LETTERS}](?![a-zA-Z])|\(\s*[{_LETTERS}]\s*\)"
)
# "The answer is (B)", "The correct answer is: B", "Answer: B", "**Final Answer:** (C)".
_SAID_LETTER = re.compile(
    r"(?i:answer)(?:\s*(?i:is))?\s*[:：]?[\s*_$]*"
    rf"(?:\(\s*([{_LETTERS}])\s*\)|([{_LETTERS}])(?![A-Za-z0-9'’]))"
)


def _letter_of(content: str | None) -> str | None:
    """The choice letter a box's content states, else None (``42``, ``AB``, ``A+B``)."""
    if not content:
        return None
    s = content.strip()
    for _ in range(3):  # \text{\textbf{(C)}}
        flat = _FLATTEN.sub(r"\1", s)
        if flat == s:
            break
        s = flat
    s = s.strip().strip("*$").strip()
    m = _BOX_LETTER.fullmatch(s)
    if m is None:
        return None
    letter = m.group("paren") or m.group("bare")
    for rest in (m.group("after_paren"), m.group("after_space")):
        if rest and _NOT_CHOICE_REST.match(rest.strip()):
            return None  # "A + B", "(A) + (B)", "A = 5", "A and C"
    rest = (m.group("after_mark") or "").strip()
    if re.fullmatch(rf"\(?[{_LETTERS}]\)?", rest):
        return None  # "A. B", "A) B)": two letters
    return letter


def _said_letter(text: str) -> str | None:
    """The letter of the last "The answer is (B)" / "Answer: B" sentence, else None."""
    last = None
    for m in _SAID_LETTER.finditer(text):
        letter = m.group(1) or m.group(2)
        if m.group(2) in ("A", "I"):
            # English words: "The answer is A positive integer", "the answer is I think"
            after = text[m.end() : m.end() + 3]
            if re.match(r"\s+[a-z]", after):
                continue
        last = letter
    return last


def choice_letter(text: str | None) -> str | None:
    """The multiple-choice letter (A-J) a response commits to, else None.

    The last box decides when there is one (``\\boxed{B}``, ``\\boxed{(B)}``,
    ``\\boxed{\\text{B}}``, ``\\boxed{B) 10^{-4} eV}``): a box holding anything else
    (``\\boxed{42}``, ``\\boxed{A+B}``) states no letter. Without a box, the last "The answer
    is (B)" / "Answer: B" sentence does.
    """
    if not text:
        return None
    found = [b for b in boxes(text) if b[2] is not None]
    if found:
        return _letter_of(found[-1][2])
    return _said_letter(text)


def gold_letter(gold: str | None) -> str | None:
    """The choice letter of a gold answer ("B", "(b)", "\\boxed{B}", "B. 17"), else None."""
    if not gold:
        return None
    s = gold.strip()
    inner = choice_letter(s) if "\\boxed" in s or "\\fbox" in s else None
    if inner is not None:
        return inner
    s = s.strip("$ ").strip()
    m = re.fullmatch(r"\(?\s*([A-Ja-j])\s*\)?", s)
    if m:
        return m.group(1).upper()
    return _letter_of(s)
