"""OlympiadBench's official answer judge, as the DeepMath authors ran it on OlympiadBench.

The authors score an OlympiadBench sample correct when, among other checks, this judge accepts
the text after the response's first ``</think>`` against the gold answer at precision 1e-8.
Everything here reproduces that judge's verdicts, quirks included, because a benchmark number
is only comparable when the same pairs are accepted:

- Both sides are cut the same way: every ``\\boxed{...}`` joined with commas; with no box, the
  ``$...$`` spans of the last line; else the whole text. A box whose braces never close makes
  the pair wrong.
- Cleaning: ``\\in`` keeps what follows it; a fixed table of signs is rewritten (``\\left``,
  ``\\right``, ``$`` and ``%`` removed, ``\\approx``/``\\simeq``/``\\sim`` become ``=``, primes,
  degrees, full-width comma and colon); outer punctuation is stripped; ``\\mathrm{}`` and
  ``\\mathbf{}`` are unwrapped.
- Equal strings after cleaning are correct (two empty answers included). Otherwise CJK
  characters are dropped, both sides are split at commas outside ``()``/``[]``, each ``\\pm`` item
  becomes a ``+`` and a ``-`` item, and every gold item must pair with a distinct predicted item
  (greedy, in the judge's own visiting order), with the same item count on both sides.
- Two items are equal when identical, or both intervals with equal bounds, or numbers within
  ``precision * 1.01`` absolutely (gold, gold/100 or gold*100), or equal sympy expressions of
  their right-hand sides (numbers within the precision, expressions with symbols when the
  simplified difference is below 1e-3; not when both sides are equations), or equations whose
  ``lhs - rhs`` differ by a non-zero integer factor. Parsing is sympy's ``parse_latex``.

Only the standard library is imported here: sympy is loaded on first use, so the module imports
in any environment (``parse_latex`` itself needs antlr4-python3-runtime 4.11).
"""

from __future__ import annotations

import functools
import math
import re
from types import SimpleNamespace
from typing import Any

DEFAULT_PRECISION = 1e-8

# OlympiadBench's symbol map, shared with our checker's olympiad judge (answers/judges.py).
# Rewrites applied in this order to both sides (the order matters: ``\simeq`` before ``\sim``).
SIGN_REWRITES: tuple[tuple[str, str], ...] = (
    ("\\left", ""),
    ("\\right", ""),
    ("∶", ":"),
    ("，", ","),
    ("$", ""),
    ("\\approx", "="),
    ("\\simeq", "="),
    ("\\sim", "="),
    ("^\\prime", "'"),
    ("^{\\prime}", "'"),
    ("^\\circ", ""),
    ("%", ""),
)
OUTER_PUNCTUATION = "\n$,.:;^_=+`!@#$%^&*~，。"
FONT_WRAPPER = re.compile(r"\\(?:mathrm|mathbf)\{~?([^}]*)\}")
_BOX_OPENING = re.compile(r"\\boxed{")
_DOLLAR_SPAN = re.compile(r"\$(.*?)\$")
CJK = re.compile(r"[\u4e00-\u9fff]+")
_LARGEST_EXPONENT = 1000
_SYMBOLIC_TOLERANCE = 1e-3


@functools.lru_cache(maxsize=1)
def _sympy() -> SimpleNamespace:
    """The sympy pieces the judge uses, imported once on first need (keeps import stdlib-only)."""
    import sympy
    from sympy.parsing.latex import parse_latex

    return SimpleNamespace(
        sympy=sympy,
        parse_latex=parse_latex,
        # The judge treats the letter pi as the number pi before comparing numerically.
        pi=parse_latex("\\pi"),
    )


def _boxed_or_dollar(text: str) -> str:
    """What the judge compares: all boxes joined by commas, else last-line ``$..$``, else all.

    Raises ValueError when a box never closes: the judge then calls the pair wrong.
    """
    joined = ""
    for opening in _BOX_OPENING.finditer(text):
        depth, end = 1, opening.end()
        while depth > 0 and end < len(text):
            if text[end] == "{":
                depth += 1
            elif text[end] == "}":
                depth -= 1
            end += 1
        if depth != 0:
            raise ValueError("a \\boxed{ never closes")
        joined += text[opening.end() : end - 1] + ","
    if joined:
        return joined
    last_line = text.strip().split("\n")[-1]
    spans = _DOLLAR_SPAN.findall(last_line)
    return "".join(span + "," for span in spans) if spans else text


def _clean(expression: str) -> str:
    """The judge's sign table, outer punctuation strip and font unwrapping."""
    if "\\in " in expression:
        expression = expression.split("\\in ")[1]
    for sign, replacement in SIGN_REWRITES:
        expression = expression.replace(sign, replacement)
    expression = expression.strip(OUTER_PUNCTUATION)
    return FONT_WRAPPER.sub(r"\1", expression)


def split_top_level_commas(expression: str) -> list[str]:
    """Items separated by commas outside ``()``/``[]`` (braces do not nest here), stripped."""
    items: list[str] = []
    depth, start = 0, 0
    for position, char in enumerate(expression):
        if char in "([":
            depth += 1
        elif char in ")]":
            depth -= 1
        elif char == "," and depth == 0:
            items.append(expression[start:position].strip())
            start = position + 1
    if start < len(expression):
        items.append(expression[start:].strip())
    return items


def expand_plus_minus(items: list[str]) -> list[str]:
    """Each item with ``\\pm`` stands for two answers: one with ``+``, one with ``-``."""
    expanded: list[str] = []
    for item in items:
        if "\\pm" in item:
            expanded.extend((item.replace("\\pm", "+"), item.replace("\\pm", "-")))
        else:
            expanded.append(item)
    return expanded


def looks_like_interval(item: str) -> bool:
    """Opens with ``(`` or ``[`` and closes with ``)`` or ``]``."""
    return item.startswith(("(", "[")) and item.endswith((")", "]"))


def _numbers_equal(gold: str, pred: str, tolerance: float) -> bool:
    """Both parse as Python floats and pred is within the tolerance of gold, gold/100 or gold*100.

    Raises ValueError when either side is not a float literal (the caller moves on).
    """
    reference, prediction = float(gold), float(pred)
    return any(
        abs(candidate - prediction) <= tolerance * 1.01
        for candidate in (reference / 100, reference, reference * 100)
    )


def _power_computable(value: Any) -> bool:
    """False for a numeric power whose exponent exceeds 1000 in size (or a symbolic power)."""
    sympy = _sympy().sympy
    if not isinstance(value, sympy.Pow):
        return True
    base, exponent = value.as_base_exp()
    if not (base.is_number and exponent.is_number):
        return False
    return not abs(exponent.evalf()) > _LARGEST_EXPONENT


def _right_of_equals(item: str) -> str:
    """The part after the first ``=`` (up to a second one), or the item itself, stripped."""
    if "=" in item:
        item = item.split("=")[1]
    return item.strip()


def _expressions_equal(gold: str, pred: str, tolerance: float) -> Any:
    """sympy comparison of the two right-hand sides.

    Returns True/False, or for expressions with symbols the raw sympy comparison of the
    simplified difference with 1e-3: when that comparison stays symbolic its truth value is
    undecidable and the caller's ``bool()`` raises, which the judge counts as "not equal by this
    route" (and, inside an interval, as a wrong pair). Parsing errors propagate likewise.
    """
    sp = _sympy()
    gold_value = sp.sympy.sympify(sp.parse_latex(_right_of_equals(gold)))
    pred_value = sp.sympy.sympify(sp.parse_latex(_right_of_equals(pred)))
    if gold_value == pred_value:
        return True
    gold_value = gold_value.subs(sp.pi, math.pi)
    pred_value = pred_value.subs(sp.pi, math.pi)
    gold_symbolic = gold_value.has(sp.sympy.Symbol)
    pred_symbolic = pred_value.has(sp.sympy.Symbol)
    if gold_symbolic != pred_symbolic:
        return False
    if not gold_symbolic:
        try:
            if not (_power_computable(gold_value) and _power_computable(pred_value)):
                return False
            return bool(abs(gold_value.evalf() - pred_value.evalf()) <= tolerance * 1.01)
        except Exception:
            return False
    try:
        return abs(sp.sympy.simplify(gold_value - pred_value).evalf()) < _SYMBOLIC_TOLERANCE
    except Exception:
        return False


def _equation_difference(equation: str) -> Any:
    """``simplify(lhs - rhs)`` of an equation with exactly one ``=`` (else ValueError)."""
    sp = _sympy()
    left, right = equation.split("=")
    relation = sp.sympy.Eq(sp.parse_latex(left), sp.parse_latex(right))
    return sp.sympy.simplify(relation.lhs - relation.rhs)


def _equations_equal(gold: str, pred: str) -> bool:
    """Equal when one ``lhs - rhs`` is a non-zero integer multiple of the other's."""
    simplify = _sympy().sympy.simplify
    gold_difference = _equation_difference(gold)
    pred_difference = _equation_difference(pred)
    for ratio in (
        simplify(gold_difference / pred_difference),
        simplify(pred_difference / gold_difference),
    ):
        if ratio.is_Integer and ratio != 0:
            return True
    return False


def _interval_pieces_equal(gold: str, pred: str, tolerance: float) -> bool:
    """Same bracket kinds at both ends and, pairwise (zip), equal expressions between them."""
    if gold[0] != pred[0] or gold[-1] != pred[-1]:
        return False
    gold_bounds = gold.strip("[]()").split(",")
    pred_bounds = pred.strip("[]()").split(",")
    return all(
        _expressions_equal(g, p, tolerance) for g, p in zip(gold_bounds, pred_bounds, strict=False)
    )


def _intervals_equal(gold: str, pred: str, tolerance: float) -> bool:
    """Unions (``\\cup``) of intervals compared piece by piece, in order."""
    if gold == pred:
        return True
    gold_pieces = gold.split("\\cup")
    pred_pieces = pred.split("\\cup")
    if len(gold_pieces) != len(pred_pieces):
        return False
    return all(
        _interval_pieces_equal(g, p, tolerance)
        for g, p in zip(gold_pieces, pred_pieces, strict=True)
    )


def _items_equal(gold: str, pred: str, tolerance: float) -> bool:
    """One gold item against one predicted item, each route tried in the judge's order."""
    if gold == pred and gold != "" and pred != "":
        return True
    if looks_like_interval(gold) and looks_like_interval(pred):
        try:
            if _intervals_equal(gold, pred, tolerance):
                return True
        except Exception:
            # An interval that cannot be compared is a wrong pair, with no further routes.
            return False
    try:
        if _numbers_equal(gold, pred, tolerance):
            return True
    except Exception:
        pass
    try:
        both_equations = "=" in gold and "=" in pred
        if _expressions_equal(gold, pred, tolerance) and not both_equations:
            return True
    except Exception:
        pass
    try:
        if _equations_equal(gold, pred):
            return True
    except Exception:
        pass
    return False


def _tolerances(precision: float | list | None, count: int) -> list:
    """One tolerance per gold item: a single value repeated, or the caller's list as given."""
    if precision is None:
        precision = DEFAULT_PRECISION
    tolerances = list(precision) if isinstance(precision, list) else [precision]
    return tolerances * count if len(tolerances) <= 1 else tolerances


def _pair_all(gold_items: list[str], pred_items: list[str], tolerances: list) -> bool:
    """Greedy pairing: each gold item takes the first still-free predicted item equal to it.

    Gold items are visited with a cursor that advances by one after every pairing (wrapping
    around the shrinking list), as the judge does; the first gold item with no partner fails
    the pair. A tolerance list shorter than the gold items raises IndexError, as the judge does.
    """
    gold_left, pred_left = list(gold_items), list(pred_items)
    cursor = -1
    while gold_left:
        cursor = (cursor + 1) % len(gold_left)
        gold_item, tolerance = gold_left[cursor], tolerances[cursor]
        for pred_item in pred_left:
            if _items_equal(gold_item, pred_item, tolerance):
                break
        else:
            return False
        gold_left.remove(gold_item)
        pred_left.remove(pred_item)
        tolerances.remove(tolerance)
    return True


def judge(gold: str, text: str, precision: float | list | None = None) -> bool:
    """OlympiadBench's verdict on ``text`` (the response after its first ``</think>``).

    ``precision`` is the absolute tolerance for numbers: one value for every answer item, or a
    list with one per gold item; None means 1e-8, the value the authors used.
    """
    try:
        gold_answer = _clean(_boxed_or_dollar(gold))
        pred_answer = _clean(_boxed_or_dollar(text))
    except Exception:
        return False
    if gold_answer == pred_answer:
        return True
    gold_items = expand_plus_minus(split_top_level_commas(CJK.sub("", gold_answer)))
    pred_items = expand_plus_minus(split_top_level_commas(CJK.sub("", pred_answer)))
    tolerances = _tolerances(precision, len(gold_items))
    if len(gold_items) != len(pred_items):
        return False
    return _pair_all(gold_items, pred_items, tolerances)
