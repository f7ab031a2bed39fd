"""``math_equal``: the answer comparator the DeepMath authors scored with (OpenMathInstruct's).

It decides "prediction equals gold" in a fixed order, and every quirk of that order changes
verdicts, so each step below keeps it: the same normalisation rewrites (units dropped, ``\\frac12``
spelled out, thousands commas removed, mixed numbers turned into sums), a case-insensitive string
test, a numeric test with a 1e-4 relative tolerance that also accepts gold x 100 and gold / 100
and that is final for numbers (they never reach sympy), brackets and comma lists compared item
by item, and last a symbolic test through sympy's ``parse_expr`` then ``parse_latex``, each step
bounded by a 10 s alarm.

sympy is imported lazily, inside the symbolic step, so importing this module costs nothing.
Exceptions escape exactly where the original lets them escape (the caller decides what an error
means); the time bounds use SIGALRM only in the main thread (a worker process), elsewhere the
step runs unbounded and the caller's process-level deadline applies.
"""

from __future__ import annotations

import contextlib
import re
import signal
import threading
import time
from collections.abc import Iterator
from math import isclose
from typing import Any

TOLERANCE = 1e-4  # relative, for numbers and for the numeric fallback of the symbolic step
STEP_TIMEOUT_S = 10.0  # each sympy parse / simplify / evaluate step
MAX_PREDICTION_CHARS = 1000  # longer predictions are cut before comparing


# --- time bounds -------------------------------------------------------------------------------


class StepTimeout(Exception):
    """One bounded step ran out of time; the comparator treats it like any failure of the step."""


class Deadline(BaseException):
    """An outer deadline (the reward's per-check bound) expired.

    A BaseException, so the comparator's own ``except Exception`` blocks cannot swallow it and
    it reaches the code that set the deadline.
    """


_deadlines: list[tuple[float, type[BaseException]]] = []


def _arm() -> None:
    """Point the real-time timer at the earliest pending deadline (or switch it off)."""
    if not _deadlines:
        signal.setitimer(signal.ITIMER_REAL, 0)
        return
    left = min(d for d, _ in _deadlines) - time.monotonic()
    signal.setitimer(signal.ITIMER_REAL, max(left, 1e-6))


def _on_alarm(signum: int, frame: Any) -> None:
    """Raise the outermost expired deadline's exception, so an outer bound beats inner ones."""
    now = time.monotonic()
    for deadline, exc in _deadlines:
        if deadline <= now + 1e-4:
            raise exc("timed out")
    _arm()


@contextlib.contextmanager
def time_limit(seconds: float, exc: type[BaseException] = StepTimeout) -> Iterator[None]:
    """Bound the block to ``seconds`` with SIGALRM; nests (the earliest deadline fires first).

    Outside the main thread signals cannot be used: the block runs unbounded there.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    entry = (time.monotonic() + seconds, exc)
    previous = signal.signal(signal.SIGALRM, _on_alarm)
    _deadlines.append(entry)
    _arm()
    try:
        yield
    finally:
        _deadlines.remove(entry)
        if _deadlines:
            _arm()
        else:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)


@contextlib.contextmanager
def rearm_after() -> Iterator[None]:
    """Restore our timer after code that resets SIGALRM itself (math-verify's own timeouts)."""
    try:
        yield
    finally:
        if _deadlines and threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGALRM, _on_alarm)
            _arm()


# --- step 1: money and percent on a plain number -----------------------------------------------

_DOLLAR_NUMBER = re.compile(r"\$\d+(\.\d+)?")
_PERCENT_NUMBER = (re.compile(r"^\d+(\.\d+)?%$"), re.compile(r"^\d+(\.\d+)?\\%$"))


def strip_money_percent(answer: Any) -> Any:
    """``$12…`` loses its dollar sign; a bare ``12%`` / ``12\\%`` loses its percent sign."""
    if not isinstance(answer, str):
        return answer
    if _DOLLAR_NUMBER.match(answer):
        return answer[1:]
    if any(p.match(answer) for p in _PERCENT_NUMBER):
        return answer.replace("\\%", "").replace("%", "")
    return answer


# --- step 2: the answer-string rewrites ----------------------------------------------------------

_UNIT_WORDS = (
    "degree", "cm", "centimeter", "meter", "mile", "second", "minute", "hour", "week", "month",
    "year", "foot", "feet", "inch", "yard", "p.m.", "PM",
)  # fmt: skip
_UNIT_PATTERNS = tuple(re.compile(rf"{u}(es)?(s)? *(\^[0-9]+)?") for u in _UNIT_WORDS)
_WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
# Wrappers whose whole-string form ``\name{X}`` becomes ``X``. The literal removed beforehand is
# the doubled-backslash spelling (two backslash characters), as in the original grader.
_WRAPPERS = ("text", "mathrm", "mathcal", "textbf", "textit")
_SCALE_WORDS = (("million", "*10^6"), ("billion", "*10^9"), ("trillion", "*10^12"))
_THOUSANDS_COMMA = re.compile(r"(\d)(,)(\d\d\d)($|\D)")


def _drop_units_text(expr: str) -> str:
    """``5\\text{ cm}`` keeps ``5``, else ``\\text{X}`` becomes ``X``; ``\\mbox{`` keeps the head.

    The head is kept only when ``\\text{`` splits the string in exactly two parts and the head
    is neither empty nor ``(``.
    """
    if "\\text" in expr:
        parts = re.split(r"\\text\s*{\s*", expr)
        if len(parts) == 2 and parts[0] not in ("", "("):
            return parts[0]
    if "\\text{" in expr:
        return re.sub(r"\\text{([^}]+)}", r"\1", expr)
    if "\\mbox{" in expr:
        parts = expr.split("\\mbox{")
        return parts[0] if len(parts) == 2 else expr
    return expr


def _spell_out_fracs(text: str) -> str:
    """``\\frac12`` -> ``\\frac{1}{2}``, ``\\frac1{72}`` -> ``\\frac{1}{72}``; too short: as is."""
    while "\\frac " in text:
        text = text.replace("\\frac ", "\\frac")
    head, *rest = text.split("\\frac")
    out = head
    for part in rest:
        out += "\\frac"
        if part.startswith("{"):
            out += part
            continue
        if len(part) < 2:
            return text
        num, nxt, tail = part[0], part[1], part[2:]
        out += "{" + num + "}" + (nxt if nxt == "{" else "{" + nxt + "}") + tail
    return out


def _mixed_fraction(match: re.Match[str]) -> str:
    """``7\\frac{3}{4}`` -> ``7 + 3/4``."""
    return f"{match.group(1)} + {match.group(2)}/{match.group(3)}"


def _without_thousands_commas(text: str) -> str:
    """Remove ``1,000``-style commas (repeatedly), leaving tuple commas such as ``1,2`` alone."""
    while True:
        nxt = _THOUSANDS_COMMA.sub(r"\1\3\4", text)
        if nxt == text:
            return nxt
        text = nxt


def _is_integer_text(text: str) -> bool:
    """True for a string that reads as a float within 1e-7 of an integer (thousands commas ok)."""
    try:
        value = float(_without_thousands_commas(text))
        return abs(value - int(round(value))) <= 1e-7
    except Exception:
        return False


def _integer_digits(text: str) -> str:
    """The integer a string reads as: commas dropped, a ``_base`` suffix cut, then int(float())."""
    text = text.replace(",", "")
    if "_" in text:
        text = text.split("_")[0]
    return str(int(float(text)))


def normalize_answer(expr: str | None) -> str | None:
    """All the string rewrites, in the original order (each one can change later ones)."""
    if expr is None:
        return None
    expr = re.sub(r"\\left", "", expr)  # raises TypeError on a non-string, as the original does
    expr = re.sub(r"\\right", "", expr)
    expr = re.sub(r"\s*\\text{\s*(or|and)\s*}\s*", ",", expr)
    expr = re.sub(r",\s*,", ",", expr)
    expr = _drop_units_text(expr)
    if "\\in " in expr:
        expr = expr.split("\\in ")[1].strip()
    for name in _WRAPPERS:
        expr = expr.replace("\\\\" + name, "")
        whole = re.search(rf"^\\{name}\{{(?P<text>.+?)\}}$", expr)
        if whole is not None:
            expr = whole.group("text")
    for old, new in (("\\!", ""), ("\\%", "%"), ("\\$", "$"), ("$", ""), ("%", "")):
        expr = expr.replace(old, new)
    expr = expr.replace("^{\\circ}", "")
    expr = expr.replace(" or ", " , ").replace(" and ", " , ")
    for word, power in _SCALE_WORDS:
        expr = expr.replace(word, power)
    for pattern in _UNIT_PATTERNS:
        expr = pattern.sub("", expr)
    if "day" in expr and not any(day in expr for day in _WEEKDAYS):
        expr = re.sub("day(s)?", "", expr)
    expr = re.sub(r"\^ *\\\\circ", "", expr)
    if expr[:1] == "{" and expr[-1:] == "}":
        expr = expr[1:-1]
    expr = re.sub(r"\\sqrt(\s*\w+)", r"\\sqrt{\1}", expr)
    expr = _spell_out_fracs(expr)
    expr = re.sub("- *", "-", expr)
    expr = re.sub("([0-9]) +([0-9])", r"\1+\2", expr)
    expr = re.sub(r"(\d+) *\\frac{(\d+)}{(\d+)}", _mixed_fraction, expr)
    expr = expr.replace(" ", "")
    if _is_integer_text(expr):
        expr = _integer_digits(expr)
    return expr


# --- steps 3-10: the comparison ------------------------------------------------------------------


def as_number(value: Any) -> tuple[bool, float | None]:
    """(True, x) when the text is a float once ``{,}`` (else every ``,``) is removed."""
    text = str(value)
    try:
        if "{,}" in text:
            return True, float(text.replace("{,}", ""))
        return True, float(text.replace(",", ""))
    except ValueError:
        return False, None


_INTERVAL_FORMS = (
    (re.compile(r"^Interval\((.*)\)$"), "[", "]"),
    (re.compile(r"^Interval\.Ropen\((.*)\)$"), "[", ")"),
    (re.compile(r"^Interval\.Lopen\((.*)\)$"), "(", "]"),
    (re.compile(r"^Interval\.open\((.*)\)$"), "(", ")"),
)


def sympy_interval_to_brackets(text: str) -> str:
    """A sympy-printed ``Interval.Ropen(a, b)`` is read as ``[a, b)``, and so on."""
    for pattern, left, right in _INTERVAL_FORMS:
        found = pattern.match(text)
        if found:
            return left + found.group(1) + right
    return text


def _numbers_match(pred: float, gold: float, include_percentage: bool, tolerance: float) -> bool:
    """isclose to the gold, or (percent answers) to gold / 100 or gold x 100."""
    targets = [gold / 100, gold, gold * 100] if include_percentage else [gold]
    for target in targets:
        try:
            if isclose(target, pred, rel_tol=tolerance):
                return True
        except Exception:
            continue
    return False


def _all_pairs(preds: list[Any], golds: list[Any], include_percentage: bool, tol: float) -> bool:
    """Every pair equal; all pairs are compared (no short cut), as the original does."""
    pairs = zip(preds, golds, strict=True)
    return all([math_equal(p, g, include_percentage, tol) for p, g in pairs])


def math_equal(
    prediction: Any,
    reference: Any,
    include_percentage: bool = True,
    tolerance: float = TOLERANCE,
    timeout: float = STEP_TIMEOUT_S,
) -> bool:
    """The authors' verdict for one extracted prediction against the gold answer."""
    prediction = normalize_answer(strip_money_percent(prediction))
    reference = normalize_answer(strip_money_percent(reference))
    if isinstance(prediction, str) and len(prediction) > MAX_PREDICTION_CHARS:
        prediction = prediction[:MAX_PREDICTION_CHARS]

    if isinstance(prediction, str) and isinstance(reference, str):
        if prediction.strip().lower() == reference.strip().lower():
            return True
        if prediction.replace(" ", "") == reference.replace(" ", ""):
            return True

    try:
        pred_is_number, pred_value = as_number(prediction)
        gold_is_number, gold_value = as_number(reference)
        if pred_is_number and gold_is_number:
            return _numbers_match(pred_value, gold_value, include_percentage, tolerance)
    except Exception:
        pass

    if not prediction and prediction not in [0, False]:
        return False

    reference = str(reference).strip()
    prediction = sympy_interval_to_brackets(str(prediction).strip())
    if _equal_without_brackets(prediction, reference):
        return True
    if _same_outer_brackets(prediction, reference):
        preds, golds = prediction[1:-1].split(","), reference[1:-1].split(",")
        if len(preds) == len(golds) and _all_pairs(preds, golds, include_percentage, tolerance):
            return True
    if "," in prediction and "," in reference:
        preds = [p.strip() for p in prediction.split(",")]
        golds = [g.strip() for g in reference.split(",")]
        if len(preds) == len(golds):
            return _all_pairs(preds, golds, include_percentage, tolerance)
    if prediction.startswith("Point") and reference[0] == "(" and reference[-1] == ")":
        preds = prediction[prediction.find("(") + 1 : -1].split(",")
        golds = reference[1:-1].split(",")
        if len(preds) == len(golds) and _all_pairs(preds, golds, include_percentage, tolerance):
            return True
    if (
        reference.startswith("\\begin{pmatrix}")
        and prediction.startswith("Matrix")
        and _matrix_items_match(prediction, reference, include_percentage, tolerance)
    ):
        return True
    return symbolic_equal(prediction, reference, tolerance, timeout)


def _equal_without_brackets(prediction: str, reference: str) -> bool:
    """Equal once outer brackets (unless open/closed could differ) and all ``{}()`` are gone."""
    pred, ref = prediction, reference
    strip_outer = (
        prediction.startswith("[") and prediction.endswith("]") and not reference.startswith("(")
    ) or (prediction.startswith("(") and prediction.endswith(")") and not reference.startswith("["))
    if strip_outer:
        pred, ref = pred.strip("[]()"), ref.strip("[]()")
    for bracket in "{}()":
        pred, ref = pred.replace(bracket, ""), ref.replace(bracket, "")
    return pred == ref


def _same_outer_brackets(prediction: str, reference: str) -> bool:
    """Both are bracketed the same way: ``(a, b)`` vs ``(c, d)``, ``[a, b)`` vs ``[c, d)``."""
    return bool(
        prediction
        and reference
        and prediction[0] in "(["
        and prediction[-1] in ")]"
        and prediction[0] == reference[0]
        and prediction[-1] == reference[-1]
    )


def _matrix_items_match(prediction: str, reference: str, include_pct: bool, tol: float) -> bool:
    """A sympy ``Matrix(...)`` prediction against a ``pmatrix`` gold, entry by entry.

    The entries are compared with the gold item first and the sympy entry second, as the
    original does; any failure (a sympy entry is not a string) means "not equal here".
    """
    from sympy.parsing.sympy_parser import parse_expr

    try:
        matrix = parse_expr(prediction)
        items = reference.split()[1:-1:2]
        if len(matrix) == len(items):
            pairs = zip(items, matrix, strict=True)
            return all([math_equal(g, p, include_pct, tol) for g, p in pairs])
    except Exception:
        pass
    return False


def _parse_side(text: str, timeout: float) -> Any:
    """sympy's ``parse_expr``, else ``parse_latex``, each bounded; unparsable text stays text."""
    from sympy.parsing.latex import parse_latex
    from sympy.parsing.sympy_parser import parse_expr

    for parser in (parse_expr, parse_latex):
        try:
            with time_limit(timeout):
                return parser(text)
        except Exception:
            pass
    return text


def symbolic_equal(prediction: str, reference: str, tolerance: float, timeout: float) -> bool:
    """``simplify(a - b) == 0``, else numerically close (relative tolerance); errors -> False."""
    import sympy

    a = _parse_side(prediction, timeout)
    b = _parse_side(reference, timeout)
    try:
        with time_limit(timeout):
            if sympy.simplify(a - b) == 0:
                return True
    except Exception:
        pass
    try:
        with time_limit(timeout):
            if isclose(sympy.N(a), sympy.N(b), rel_tol=tolerance):
                return True
    except Exception:
        pass
    return False
