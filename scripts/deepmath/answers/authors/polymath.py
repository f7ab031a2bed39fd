"""PolyMath's answer judge, as the DeepMath authors ran it on PolyMath (English).

The authors add this judge to their checks on PolyMath. Reproducing its verdicts needs its
own rules, which differ from the general grader's:

- The answer is the FIRST ``boxed{...}`` of the response after every space is removed (the
  backslash is not required; a box whose braces never close is skipped). No box: wrong.
- Equal ignoring case and outer spaces: right. Gold ``A``..``E``: the last standalone capital
  letter A-E of the prediction is compared.
- Both numbers (commas dropped, ``12%``/``12\\%`` read as 0.12): right when the prediction is
  within a relative 1e-4 of gold, gold/100 or gold*100, and otherwise WRONG (no symbolic step).
- An empty prediction is wrong. A ``pmatrix`` prediction against a gold without one turns each
  ``{a,b}`` of the gold into a ``pmatrix``. Outer ``[..]``/``(..)`` are dropped from both unless
  the gold opens with the other kind, then ``{}()`` are removed and equal strings are right.
- Both bracketed: item by item after splitting at every comma. Two matrices: cell by cell.
- One ``=`` on each side: ``lhs - (rhs)`` compared symbolically, also with the prediction
  negated. A short (<= 2 characters) left-hand side on one side only is dropped and the rest is
  judged again.
- Finally a symbolic comparison: each side parsed by sympy's ``parse_latex``, else sympy's
  ``parse_expr``, else latex2sympy2 (each tried with ``\\\\`` read as ``\\`` first); equal strings,
  ``equals``/``simplify(a - b) == 0``, equal ``|lhs - rhs|``, numbers within a relative 1e-4, or
  matrices equal to 3 decimals. Every symbolic comparison runs in a forked child process given
  one second of wall-clock time, as the judge does; a child still running then is killed and
  the comparison counts as unequal. The verdict of a slow comparison therefore depends on how
  busy the machine is, as it did for the authors: keep the judging processes at or below the
  number of free cores.

Only the standard library is imported here; sympy and latex2sympy2 (the parser PolyMath ships,
published as ``latex2sympy2-llmmath``; see requirements/authors.txt) are loaded on
first use. ``parse_expr`` evaluates the boxed text as Python, as the judge does: that happens
only inside the forked child.
"""

from __future__ import annotations

import functools
import math
import os
import re
import select
import signal
from types import SimpleNamespace
from typing import Any

SYMBOLIC_SECONDS = 1.0
RELATIVE_TOLERANCE = 1e-4

_BOX_OPENING = re.compile(r"boxed{")
_CHOICE_LETTER = re.compile(r"\b([A-E])\b")
_BRACED_ROW = re.compile(r"\{.*,.*}")
_BRACKETED = re.compile(r"(\(|\[).+(\)|\])")
_MATRIX_OPENINGS = ("\\begin{pmatrix}", "\\begin{bmatrix}")
_MATRIX_CLOSINGS = ("\\end{pmatrix}", "\\end{bmatrix}")
_CHOICES = ("A", "B", "C", "D", "E")


@functools.lru_cache(maxsize=1)
def _parsers() -> SimpleNamespace:
    """sympy and latex2sympy2, imported once in this process (so forked children start warm)."""
    import sympy
    from sympy.parsing.latex import parse_latex
    from sympy.parsing.sympy_parser import parse_expr

    try:
        from latex2sympy2 import latex2sympy
    except ImportError as error:
        raise ImportError(
            "PolyMath's judge needs latex2sympy2 with an ANTLR 4.11 parser: install "
            "requirements/authors.txt with `pip install --no-deps -r` "
            "into the authors' environment (make venv-authors)"
        ) from error
    return SimpleNamespace(
        sympy=sympy, parse_latex=parse_latex, parse_expr=parse_expr, latex2sympy=latex2sympy
    )


def first_box(response: str) -> str | None:
    """The first ``boxed{`` with balanced braces, spaces removed; None if there is none."""
    text = response.replace(" ", "")
    for opening in _BOX_OPENING.finditer(text):
        depth, end = 1, opening.end()
        while end < len(text) and depth > 0:
            if text[end] == "{":
                depth += 1
            elif text[end] == "}":
                depth -= 1
            end += 1
        if depth == 0:
            return text[opening.end() : end - 1]
    return None


def _choice_letter(prediction: str) -> str:
    """The last standalone A-E of the prediction (upper-cased), else the cleaned prediction."""
    prediction = prediction.strip("\n").rstrip(".").rstrip("/").strip(" ").lstrip(":")
    letters = _CHOICE_LETTER.findall(prediction.upper())
    chosen = letters[-1] if letters else prediction.strip().strip(".")
    return chosen.rstrip(".").rstrip("/")


def _number(text: str) -> float | None:
    """A float after dropping commas; ``N%`` or ``N\\%`` reads as N/100; else None."""
    text = text.replace(",", "")
    try:
        return float(text)
    except ValueError:
        pass
    if text.endswith("%"):
        text = text[:-1]
        if text.endswith("\\"):
            text = text[:-1]
        try:
            return float(text) / 100
        except ValueError:
            pass
    return None


def _close(reference: float, prediction: float) -> bool:
    """Relative tolerance 1e-4 (no absolute one: 0 only matches 0)."""
    return math.isclose(reference, prediction, rel_tol=RELATIVE_TOLERANCE)


def _numbers_equal(prediction: float, reference: float) -> bool:
    """The prediction matches gold, gold/100 or gold*100 (a percentage written either way)."""
    return any(_close(prediction, g) for g in (reference / 100, reference, reference * 100))


def _rows_as_matrices(reference: str) -> str:
    """Each ``{a,b,..}`` span of the gold as a pmatrix whose commas became backslashes."""
    rows = _BRACED_ROW.findall(reference.strip())
    return ", ".join(
        "\\begin{pmatrix}" + row.strip("{}").replace(",", "\\") + "\\end{pmatrix}" for row in rows
    )


def _without_brackets(prediction: str, reference: str) -> tuple[str, str]:
    """Both sides with outer brackets (unless the kinds clash) and all ``{}()`` removed."""
    pred_text, ref_text = prediction, reference
    square = prediction.startswith("[") and prediction.endswith("]")
    round_ = prediction.startswith("(") and prediction.endswith(")")
    if (square and not reference.startswith("(")) or (round_ and not reference.startswith("[")):
        pred_text, ref_text = pred_text.strip("[]()"), ref_text.strip("[]()")
    for char in "{}()":
        pred_text, ref_text = pred_text.replace(char, ""), ref_text.replace(char, "")
    return pred_text, ref_text


def _all_equal(predictions: list[str], references: list[str]) -> bool:
    """Same length and every pair equal under the judge."""
    return len(predictions) == len(references) and all(
        _math_equal(p, r) for p, r in zip(predictions, references, strict=True)
    )


def _is_matrix(text: str) -> bool:
    """A pmatrix/bmatrix environment from start to end."""
    return text.startswith(_MATRIX_OPENINGS) and text.endswith(_MATRIX_CLOSINGS)


def _matrix_rows(text: str) -> list[str]:
    """Non-empty stripped rows between the environment's opening and closing."""
    body = text[len("\\begin{pmatrix}") : -len("\\end{pmatrix}")]
    return [row.strip() for row in body.split("\\\\") if row.strip()]


def _matrices_equal(prediction: str, reference: str) -> bool:
    """Same row count and, row by row, the same cell count with equal cells."""
    pred_rows, ref_rows = _matrix_rows(prediction), _matrix_rows(reference)
    return len(pred_rows) == len(ref_rows) and all(
        _all_equal(p.split("&"), r.split("&")) for p, r in zip(pred_rows, ref_rows, strict=True)
    )


def _as_difference(equation: str) -> str:
    """``lhs - (rhs)`` for an equation with one ``=``."""
    left, right = equation.split("=")
    return f"{left.strip()} - ({right.strip()})"


def _short_lhs_equation(text: str) -> bool:
    """One ``=`` with at most two characters before it (``x=``, ``k =``)."""
    return text.count("=") == 1 and len(text.split("=")[0].strip()) <= 2


def _math_equal(prediction: str | None, reference: str | None) -> bool:
    """PolyMath's equality of a prediction and a gold answer, route by route."""
    if prediction is None or reference is None:
        return False
    if prediction.strip().lower() == reference.strip().lower():
        return True
    if reference in _CHOICES and _choice_letter(prediction) == reference:
        return True
    pred_number, ref_number = _number(prediction), _number(reference)
    if pred_number is not None and ref_number is not None:
        return _numbers_equal(pred_number, ref_number)
    if not prediction:
        return False
    reference, prediction = reference.strip(), prediction.strip()
    if "pmatrix" in prediction and "pmatrix" not in reference:
        reference = _rows_as_matrices(reference)
    pred_text, ref_text = _without_brackets(prediction, reference)
    if pred_text.lower() == ref_text.lower():
        return True
    if (
        _BRACKETED.match(prediction)
        and _BRACKETED.match(reference)
        and _all_equal(prediction[1:-1].split(","), reference[1:-1].split(","))
    ):
        return True
    if _is_matrix(prediction) and _is_matrix(reference) and _matrices_equal(prediction, reference):
        return True
    if prediction.count("=") == 1 and reference.count("=") == 1:
        pred_difference, ref_difference = _as_difference(prediction), _as_difference(reference)
        if _bounded_symbolic_equal(pred_difference, ref_difference) or _bounded_symbolic_equal(
            f"-({pred_difference})", ref_difference
        ):
            return True
    elif _short_lhs_equation(prediction) and "=" not in reference:
        if _math_equal(prediction.split("=")[1], reference):
            return True
    elif (
        _short_lhs_equation(reference)
        and "=" not in prediction
        and _math_equal(prediction, reference.split("=")[1])
    ):
        return True
    return _bounded_symbolic_equal(prediction, reference)


def _parse(text: str) -> Any:
    """The first parser that accepts the text (``\\\\`` read as ``\\`` first), else the text."""
    parsers = _parsers()
    for parser in (parsers.parse_latex, parsers.parse_expr, parsers.latex2sympy):
        for candidate in (text.replace("\\\\", "\\"), text):
            try:
                return parser(candidate)
            except BaseException:  # parse_expr runs the text as Python: anything can escape
                pass
    return text


def _symbolic_equal(prediction_text: str, reference_text: str) -> bool:
    """The symbolic routes, each allowed to fail (a failure only means "not by this route")."""
    sympy = _parsers().sympy
    a, b = _parse(prediction_text), _parse(reference_text)
    routes = (
        lambda: str(a) == str(b) or a == b,
        lambda: a.equals(b) or sympy.simplify(a - b) == 0,
        lambda: abs(a.lhs - a.rhs).equals(abs(b.lhs - b.rhs)),
        lambda: _close(float(sympy.N(b)), float(sympy.N(a))),
        lambda: _matrices_equal_to_3_places(a, b),
    )
    for route in routes:
        try:
            if route():
                return True
        except Exception:
            pass
    return False


def _matrices_equal_to_3_places(a: Any, b: Any) -> bool:
    """Same shape and entries equal once rounded to 3 decimals."""
    if a.shape != b.shape:
        return False
    return a.applyfunc(lambda x: round(x, 3)).equals(b.applyfunc(lambda x: round(x, 3)))


def _bounded_symbolic_equal(prediction_text: str, reference_text: str) -> bool:
    """The symbolic comparison in a forked child with SYMBOLIC_SECONDS of wall-clock time.

    A fork (not a thread or an alarm) because sympy can sit in one C call for minutes; the
    child inherits the parsers already imported here, so its second goes to the comparison.
    A child that overruns, or dies without an answer, means "unequal".
    """
    _parsers()
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: answer one byte, never return into the caller's code
        try:
            os.close(read_end)
            verdict = _symbolic_equal(prediction_text, reference_text)
            os.write(write_end, b"1" if verdict else b"0")
        finally:
            os._exit(0)
    os.close(write_end)
    answer = b""
    try:
        ready, _, _ = select.select([read_end], [], [], SYMBOLIC_SECONDS)
        if ready:
            answer = os.read(read_end, 1)
    finally:
        os.close(read_end)
        if not answer:
            os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    return answer == b"1"


def judge(gold: str, response: str) -> bool:
    """PolyMath's verdict on the whole response against the gold answer."""
    return _math_equal(first_box(response), gold)
