"""Final-answer extraction and equivalence, shared by verification, rewards and evaluation.

One checker serves three consumers (the consistency filter of ``verify_answers``, the RL reward
and the eval scorer) so that "correct" means the same thing everywhere in the pipeline.

Layers, cheapest first:

* **Extraction** (:func:`extract_answer`): the last ``\\boxed{...}`` / ``\\fbox{...}`` with brace
  matching, else the last "The answer is: X" sentence; :func:`after_think` keeps only what follows
  the last ``</think>`` for callers that score reasoning models.
* **Equivalence** (:func:`compare` / :func:`is_equiv`): a normalising comparator written here in
  the spirit of NeMo-Skills' ``math_equal`` (string normalisation, exact rational / tolerant
  float comparison, percentages, ``x=3`` vs ``3``, Yes/No words, intervals, sets, tuples,
  matrices) with math-verify and a sympy fallback for symbolic forms.
* **Time bounds**: sympy can hang on innocent-looking inputs (``10^{10^{10}}`` is computed
  exactly, in C, where no signal reaches it). :func:`check_answer` bounds a single check with a
  ``SIGALRM`` timer when it runs in a main thread; :func:`check_pairs` / :class:`AnswerPool` run
  checks in worker processes and kill and replace a worker that overruns, so a pathological pair
  costs at most the timeout and is reported as ``"timeout"``.

Import stays cheap: math-verify and sympy are imported lazily, because the data-pulling stages
import :func:`extract_boxed` and should not pay for a computer algebra system.
"""

from __future__ import annotations

import logging
import math
import os
import re
import signal
import threading
import time
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

log = logging.getLogger("deepmath.answers")

_BOX_COMMANDS = ("\\boxed", "\\fbox")

MATCH = "match"
MISMATCH = "mismatch"
TIMEOUT = "timeout"
NO_ANSWER = "no_answer"
ERROR = "error"
REASONS = (MATCH, MISMATCH, TIMEOUT, NO_ANSWER, ERROR)

DEFAULT_TIMEOUT_S = 5.0
REL_TOL = 1e-4


# --------------------------------------------------------------------------------------------
# Extraction
# --------------------------------------------------------------------------------------------


def _matching_brace(text: str, open_at: int) -> int | None:
    """Index of the brace closing the one at ``open_at``, honouring nesting."""
    depth = 0
    i = open_at
    while i < len(text):
        ch = text[i]
        if ch == "\\":
            i += 2
            continue
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth == 0:
                return i
        i += 1
    return None


def extract_boxed(text: str | None) -> str | None:
    """Content of the last ``\\boxed{...}`` / ``\\fbox{...}`` (or ``\\boxed 5``), else None.

    Only the very last box counts (models often box intermediate results); if that last box is
    unbalanced the answer is None rather than an earlier box, because the final answer was cut.
    """
    if not text:
        return None
    best_at, best = -1, None
    for cmd in _BOX_COMMANDS:
        start = text.rfind(cmd)
        while start != -1:
            after = start + len(cmd)
            nxt = text[after : after + 1]
            if nxt.isalpha():  # e.g. \boxedsomething is a different macro
                start = text.rfind(cmd, 0, start)
                continue
            if start > best_at:
                content = _boxed_content(text, after)
                if content is not None:
                    best_at, best = start, content
            break
    return best


def _boxed_content(text: str, after: int) -> str | None:
    rest = text[after:]
    stripped = rest.lstrip()
    if stripped.startswith("{"):
        open_at = after + (len(rest) - len(stripped))
        close = _matching_brace(text, open_at)
        return None if close is None else text[open_at + 1 : close].strip()
    if rest.startswith(" "):
        m = re.match(r"\s+([^\s$]+)", rest)
        return m.group(1).strip() if m else None
    return None


def extract_gsm8k(text: str | None) -> str | None:
    """Answer after GSM8K's ``####`` marker, with thousands separators removed."""
    if not text or "####" not in text:
        return None
    return text.rsplit("####", 1)[1].strip().replace(",", "") or None


def after_think(text: str | None) -> str | None:
    """Text after the last ``</think>``, or None when the response never closed its thinking.

    The DeepMath reward scores only the part after the reasoning; a response without
    ``</think>`` is treated as having no answer rather than scoring its scratch work.
    """
    if not text:
        return None
    at = text.rfind("</think>")
    if at == -1:
        return None
    return text[at + len("</think>") :]


# "The answer is: X" / "The final answer is X." (MetaMath / Minerva style).
_ANSWER_IS = re.compile(r"(?i)the\s+(?:final\s+)?answer\s+is\s*:?[ \t]*")


def extract_answer_is(text: str | None) -> str | None:
    """The X of the last "The answer is: X" sentence, else None.

    X runs to the end of its line or sentence (a full stop followed by a space); a full stop
    right at the end belongs to the sentence, not to the answer.
    """
    if not text:
        return None
    last = None
    for m in _ANSWER_IS.finditer(text):
        last = m
    if last is None:
        return None
    found = text[last.end() :].split("\n", 1)[0][:500]
    inner = extract_boxed(found)
    if inner is not None:
        return inner or None
    ans = re.split(r"\.\s", found, maxsplit=1)[0].strip()
    ans = re.sub(r"[.\s]+$", "", ans)
    ans = _strip_math_delimiters(ans)
    return ans or None


def extract_answer(text: str | None, *, think: bool = False) -> str | None:
    """The final answer of a solution: last box, else "The answer is X", else None.

    ``think=True`` first keeps only the text after the last ``</think>`` (None if absent).
    Empty boxes count as no answer.
    """
    if think:
        text = after_think(text)
    if not text:
        return None
    boxed = extract_boxed(text)
    if boxed:
        return boxed
    return extract_answer_is(text)


# --------------------------------------------------------------------------------------------
# Normalisation
# --------------------------------------------------------------------------------------------

_TEXT_CMDS = ("\\text", "\\textbf", "\\textit", "\\textrm", "\\mbox", "\\textnormal")
_FORMAT_CMDS = ("\\mathrm", "\\mathbf", "\\mathit", "\\boldsymbol", "\\operatorname")
_SPACING = re.compile(r"(?<!\\)\\(?:quad|qquad|displaystyle|textstyle|[ ;:])|~")
_SIZING = re.compile(
    r"\\(?:left|right|bigl|bigr|Bigl|Bigr|biggl|biggr|big|Big|bigg|Bigg)(?![a-zA-Z])"
)
_DEGREES = re.compile(r"\^\s*\{?\s*\\circ\s*\}?|°|\\degree(?![a-zA-Z])|\\circ(?![a-zA-Z])")
# Trailing unit words after a number: "12 inches", "5 cm^2", "4.5e33 ergs s^{-1}", "3 km/h".
# The first word needs two letters so that "2 x^2" stays an expression.
_UNIT_TOKEN = r"[a-zA-Z]+\.?(?:\^\{?-?\d+\}?)?(?:/[a-zA-Z]+(?:\^\{?-?\d+\}?)?)?"
_UNIT_WORDS = re.compile(
    r"^(.*?\d[^a-zA-Z\\]*?)\s+((?=[a-zA-Z]{2})" + _UNIT_TOKEN + r"(?:\s+" + _UNIT_TOKEN + r")*)\s*$"
)
_HEURISTIC_MAX = 300  # answers longer than this skip the backtracking-prone heuristics
_NOT_UNITS = {"and", "or", "if", "for", "when", "where", "else", "otherwise", "pi", "i", "e"}
_ASSIGN = re.compile(
    r"^\s*(?:[a-zA-Z](?:_\{?\w+\}?)?(?:\([a-z]\))?|\\[a-zA-Z]+(?:_\{?\w+\}?)?)\s*=\s*(.+)$"
)
_THOUSANDS = re.compile(r"[+-]?\d{1,3}(?:,\d{3})+(?:\.\d+)?(?:\\?%)?")


def _strip_math_delimiters(s: str) -> str:
    s = s.strip()
    for left, right in (("$$", "$$"), ("$", "$"), ("\\(", "\\)"), ("\\[", "\\]")):
        if s.startswith(left) and s.endswith(right) and len(s) >= len(left) + len(right):
            s = s[len(left) : len(s) - len(right)].strip()
    return s


def _replace_braced_cmd(s: str, cmds: Sequence[str], repl: Any) -> str:
    """Replace ``\\cmd{content}`` by ``repl(content)`` for each command, brace-matched."""
    for cmd in cmds:
        start = s.find(cmd + "{")
        guard = 0
        while start != -1 and guard < 200:
            guard += 1
            open_at = start + len(cmd)
            close = _matching_brace(s, open_at)
            if close is None:
                break
            new = repl(s[open_at + 1 : close])
            s = s[:start] + new + s[close + 1 :]
            start = s.find(cmd + "{", start + len(new))
    return s


def _fix_shorthand(s: str) -> str:
    """Brace LaTeX shorthand: ``\\frac12`` -> ``\\frac{1}{2}``, ``\\sqrt2`` -> ``\\sqrt{2}``."""
    s = re.sub(r"\\frac\s*(\d)\s*(\d)", r"\\frac{\1}{\2}", s)
    s = re.sub(r"\\frac\s*(\d)\s*(?=\{)", r"\\frac{\1}", s)
    s = re.sub(r"\\frac\s*(\{[^{}]*\})\s*(\d)", r"\\frac\1{\2}", s)
    s = re.sub(r"\\sqrt\s*(\d|[a-zA-Z])", r"\\sqrt{\1}", s)  # one token, as in TeX
    return s


def _drop_text(s: str) -> str:
    """Unwrap ``\\text{...}``: keep it when it is the whole answer, drop it when it is a unit.

    ``\\text{Evelyn}`` and ``\\text{(C)}`` are answers; in ``5\\text{ cm}^2`` the text is a unit
    (its exponent goes with it, so the number is not squared).
    """
    s = re.sub(r"\\text\{\s*(and|or)\s*\}", ",", s)
    pieces: list[str] = []

    def keep(content: str) -> str:
        pieces.append(content)
        return "\x00"

    marked = _replace_braced_cmd(s, _TEXT_CMDS, keep)
    without = re.sub(r"\x00(?:\s*\^\s*\{?\s*[23]\s*\}?)?", "", marked)
    if pieces and re.search(r"[\d\\]", without) and without.strip(" ,.") != "":
        return without
    it = iter(pieces)
    return re.sub("\x00", lambda _m: next(it), marked)


def normalize_answer(ans: str | None) -> str:
    """A canonical string for an extracted answer (spaces kept where LaTeX needs them).

    Why: most disagreements between equivalent answers are typography (``\\dfrac``, ``\\left(``,
    ``^\\circ``, units, thousands separators, ``\\$``), not mathematics. Removing it first makes
    the cheap string and number comparisons decisive for the vast majority of pairs, so the
    expensive symbolic path only sees what really needs it.
    """
    if ans is None:
        return ""
    s = str(ans).strip()
    inner = extract_boxed(s) if s.startswith(_BOX_COMMANDS) else None
    if inner:
        s = inner
    s = s.replace("\n", " ").replace("\\$", "")
    s = _strip_math_delimiters(s).replace("$", "")
    s = re.sub(r",\\!\s*", ",", s)  # 11,\! 111,\! 100: LaTeX thousands separators
    s = s.replace("\\!", "").replace("\\,", "")
    s = re.sub(r"\\left\s*\.|\\right\s*\.", "", s)
    s = _SIZING.sub("", s)
    s = _SPACING.sub(" ", s)
    s = s.replace("\\lbrace", "\\{").replace("\\rbrace", "\\}")
    s = s.replace("\\lvert", "|").replace("\\rvert", "|").replace("\\varnothing", "\\emptyset")
    s = re.sub(r"\\[dt]frac(?![a-zA-Z])", r"\\frac", s)
    s = re.sub(r"\\(?:le|leqslant)(?![a-zA-Z])", r"\\leq", s)
    s = re.sub(r"\\(?:ge|geqslant)(?![a-zA-Z])", r"\\geq", s)
    s = re.sub(r"\\(?:ne)(?![a-zA-Z])", r"\\neq", s)
    s = re.sub(r"\\infinity|(?<![a-zA-Z\\])inf(?:inity)?(?![a-zA-Z])", r"\\infty", s)
    s = _DEGREES.sub("", s)
    s = re.sub(r"\bdegrees?\b", "", s)
    s = _drop_text(s)
    s = _replace_braced_cmd(s, _FORMAT_CMDS, lambda c: c).replace("~", " ")  # \mathrm{~cm}
    s = _fix_shorthand(s)
    s = re.sub(r"(\d)\{,\}(\d)", r"\1,\2", s)  # 1{,}000
    s = re.sub(r"\s+(?:and|or)\s+", ", ", s)
    m = _UNIT_WORDS.match(s) if len(s) <= _HEURISTIC_MAX else None  # quadratic regex
    if m and not set(re.findall(r"[a-z]+", m.group(2).lower())) & _NOT_UNITS:
        s = m.group(1)
    s = re.sub(r"\s+", " ", s).strip()
    s = re.sub(r"([(\[{])\s+", r"\1", s)
    s = re.sub(r"\s+([)\]}])", r"\1", s)
    s = s.rstrip(" .,;")
    if _THOUSANDS.fullmatch(s):  # 1,000 is a number; [0,100] and 1, 2 are not touched
        s = s.replace(",", "")
    m = _ASSIGN.match(s) if len(s) <= _HEURISTIC_MAX else None
    if m and not re.search(r"[=<>]|\\[lg]eq", m.group(1)):
        s = m.group(1).strip()
    # "(C)" -> "C": a lone parenthesised choice letter.
    m = re.fullmatch(r"\(\s*([A-Ea-e])\s*\)", s)
    if m:
        s = m.group(1).upper()
    return s


def _has_variables(s: str) -> bool:
    """Whether a normalised answer has a free letter (not a command, not e or i)."""
    return re.search(r"[a-df-hj-zA-Z]", re.sub(r"\\[a-zA-Z]+", "", s)) is not None


def _key(s: str) -> str:
    """Whitespace-free form for exact string comparison."""
    return re.sub(r"\s+", "", s)


# --------------------------------------------------------------------------------------------
# Cheap comparisons: words, numbers, structures
# --------------------------------------------------------------------------------------------

_WORDS = {"yes", "no", "true", "false"}


def _word(s: str) -> str | None:
    w = re.sub(r"[^a-z]", "", s.lower())
    return w if w in _WORDS and len(s) <= 12 else None


_NUM = r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d{1,3})?"
_INT = r"[+-]?\d+"


@dataclass(frozen=True)
class _Number:
    value: Fraction
    exact: bool  # integers and integer fractions are exact; decimals are measurements
    percent: bool


def _parse_number(s: str) -> _Number | None:
    """A plain number in one of the usual spellings, else None (never evaluates expressions)."""
    s = _key(s)
    percent = s.endswith("%")
    if percent:
        s = s[:-1].rstrip("\\")
    if len(s) > 60:
        return None
    neg = 1
    if s.startswith("-") and s[1:2] in ("\\", "("):
        neg, s = -1, s[1:]
    m = re.fullmatch(r"\(?(" + _NUM + r")\)?", s)
    if m:
        txt = m.group(1)
        exact = not re.search(r"[.eE]", txt)
        return _Number(neg * Fraction(txt), exact, percent)
    m = re.fullmatch(r"(" + _INT + r")/(\d+)", s)
    if m and int(m.group(2)) != 0:
        return _Number(neg * Fraction(int(m.group(1)), int(m.group(2))), True, percent)
    m = re.fullmatch(r"([+-]?)\\frac\{(" + _NUM + r")\}\{(" + _NUM + r")\}", s)
    if m and Fraction(m.group(3)) != 0:
        sign = -1 if m.group(1) == "-" else 1
        exact = not re.search(r"[.eE]", m.group(2) + m.group(3))
        return _Number(neg * sign * Fraction(m.group(2)) / Fraction(m.group(3)), exact, percent)
    m = re.fullmatch(r"([+-]?)(\d+)\\frac\{(\d+)\}\{(\d+)\}", s)  # mixed number 2\frac{1}{4}
    if m and int(m.group(4)) != 0 and int(m.group(3)) < int(m.group(4)):
        sign = -1 if m.group(1) == "-" else 1
        val = int(m.group(2)) + Fraction(int(m.group(3)), int(m.group(4)))
        return _Number(neg * sign * val, True, percent)
    m = re.fullmatch(r"(?:(" + _NUM + r")(?:\\times|\\cdot|\*))?10\^\{?([+-]?\d{1,3})\}?", s)
    if m:
        coef = Fraction(m.group(1)) if m.group(1) else Fraction(1)
        exact = not (m.group(1) and re.search(r"[.eE]", m.group(1)))
        return _Number(neg * coef * Fraction(10) ** int(m.group(2)), exact, percent)
    return None


def _numbers_equal(a: _Number, b: _Number) -> bool:
    """Exact for integers and fractions; relative tolerance once a decimal is involved.

    Exactness matters: with a blanket 1e-4 tolerance 13535 would "equal" 13536.
    A percentage on one side may be read as its value or as a fraction (50% vs 0.5).
    """
    cands_a = [a.value, a.value / 100] if a.percent and not b.percent else [a.value]
    cands_b = [b.value, b.value / 100] if b.percent and not a.percent else [b.value]
    exact = a.exact and b.exact
    for x in cands_a:
        for y in cands_b:
            if x == y:
                return True
            if not exact and abs(x - y) <= Fraction(REL_TOL) * max(abs(x), abs(y)):
                return True  # in exact arithmetic: no float overflow on 10^{999}
    return False


def _split_top(s: str, sep: str = ",") -> list[str]:
    """Split on ``sep`` outside brackets/braces."""
    out, depth, cur = [], 0, []
    i = 0
    while i < len(s):
        ch = s[i]
        if ch == "\\" and s[i + 1 : i + 2] in ("{", "}"):
            depth += 1 if s[i + 1] == "{" else -1
            cur.append(s[i : i + 2])
            i += 2
            continue
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        if ch == sep and depth == 0:
            out.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
        i += 1
    out.append("".join(cur))
    return [p.strip() for p in out]


def _balanced(s: str) -> bool:
    depth = 0
    for ch in s:
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
            if depth < 0:
                return False
    return depth == 0


_MATRIX = re.compile(r"^\\begin\{([pbvBV]?matrix|array)\}(?:\{[^{}]*\})?(.*)\\end\{\1\}$", re.S)


@dataclass(frozen=True)
class _Structure:
    kind: str  # "set", "list", "matrix", or the two brackets, e.g. "[)" / "()"
    items: tuple[Any, ...]  # strings, or tuples of strings (matrix rows)


def _parse_structure(s: str) -> _Structure | None:
    """Sets, bracketed tuples/intervals, bare comma lists and matrices; else None."""
    s = s.strip()
    m = _MATRIX.match(s)
    if m:
        rows = [r for r in re.split(r"\\\\", m.group(2)) if r.strip()]
        return _Structure("matrix", tuple(tuple(c.strip() for c in r.split("&")) for r in rows))
    if s.startswith("\\{") and s.endswith("\\}") and _balanced(s[2:-2]):
        return _Structure("set", tuple(x for x in _split_top(s[2:-2]) if x))
    if len(s) >= 2 and s[0] in "([" and s[-1] in ")]" and _balanced(s[1:-1]):
        items = _split_top(s[1:-1])
        if len(items) >= 2:
            return _Structure(s[0] + s[-1], tuple(items))
        return None
    if "," in s and "\\cup" not in s:
        items = _split_top(s)
        if len(items) >= 2 and all(items):
            return _Structure("list", tuple(items))
    return None


def _unordered_equal(a: Sequence[str], b: Sequence[str]) -> bool:
    if len(a) != len(b):
        return False
    left = list(b)
    for x in a:
        for j, y in enumerate(left):
            if _compare(x, y)[0]:
                del left[j]
                break
        else:
            return False
    return True


def _compare_structures(p: _Structure, g: _Structure) -> bool | None:
    """Element-wise comparison; None when the two shapes are not comparable here."""
    kinds = {p.kind, g.kind}
    if kinds == {"matrix"}:
        if [len(r) for r in p.items] != [len(r) for r in g.items]:
            return False
        return all(
            _compare(x, y)[0]
            for rp, rg in zip(p.items, g.items, strict=True)
            for x, y in zip(rp, rg, strict=True)
        )
    if kinds <= {"set", "list"}:
        return _unordered_equal(p.items, g.items)
    bracketed = all(len(k) == 2 for k in kinds)
    if p.kind == g.kind or (bracketed and len(p.items) != 2):
        # Same brackets, or tuples/vectors whose bracket style carries no meaning: (1,2,3).
        if len(p.items) != len(g.items):
            return False
        return all(_compare(x, y)[0] for x, y in zip(p.items, g.items, strict=True))
    if bracketed:
        return False  # [0,1] vs (0,1): two items in different brackets are different intervals
    return None


# --------------------------------------------------------------------------------------------
# Symbolic comparisons (lazy imports)
# --------------------------------------------------------------------------------------------


class _Quiet(logging.Filter):
    """Drop math-verify's "timeout is disabled" warning: we bound time ourselves."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "Timeout is disabled" not in record.getMessage()


_MV: Any = None


def _math_verify() -> Any:
    global _MV
    if _MV is None:
        import math_verify

        for name in ("math_verify.parser", "math_verify.grader", "math_verify.utils"):
            logging.getLogger(name).addFilter(_Quiet())
        _MV = math_verify
    return _MV


def _mv_parse(latex: str) -> list[Any]:
    mv = _math_verify()
    return mv.parse("\\boxed{" + latex + "}", parsing_timeout=None)


def _math_verify_equal(pred: str, gold: str) -> bool:
    """math-verify's verdict; its own signal timeouts are off (they would cancel our timer)."""
    mv = _math_verify()
    try:
        g, p = _mv_parse(gold), _mv_parse(pred)
        return bool(g and p and mv.verify(g, p, timeout_seconds=None))
    except Exception:  # math-verify reports failures as False; so do we
        return False


def _sympy_equal(pred: str, gold: str) -> bool:
    """Own sympy route: constants compared numerically (rel. 1e-4), expressions by simplify.

    Complements math-verify, which rounds floats to 6 places (``1.4142`` vs ``\\sqrt{2}``).
    """
    from latex2sympy2_extended import latex2sympy

    # Tolerance is for measured values; two exact constants must agree to rounding error.
    rel = REL_TOL if "." in pred or "." in gold else 1e-10
    try:
        return _sympy_equal_unsafe(latex2sympy(pred), latex2sympy(gold), rel)
    except Exception:  # unparsable or not comparable: not evidence of equality
        return False


def _sympy_equal_unsafe(a: Any, b: Any, rel: float) -> bool:
    import sympy

    if not isinstance(a, sympy.Expr) or not isinstance(b, sympy.Expr):
        return False
    subs = {s: sympy.I for s in (a.free_symbols | b.free_symbols) if s.name in ("i", "I")}
    if subs:
        a, b = a.subs(subs), b.subs(subs)
    if not a.free_symbols and not b.free_symbols:
        va, vb = complex(sympy.N(a, 30)), complex(sympy.N(b, 30))
        if any(math.isnan(v) or math.isinf(v) for v in (va.real, va.imag, vb.real, vb.imag)):
            return False
        return abs(va - vb) <= rel * max(abs(va), abs(vb)) + 1e-12
    return sympy.simplify(a - b) == 0


# --------------------------------------------------------------------------------------------
# Equivalence
# --------------------------------------------------------------------------------------------


class CheckTimeout(BaseException):  # noqa: N818 - it is a signal, not an error
    """Raised by the check timer. A BaseException so math-verify/sympy cannot swallow it."""


@dataclass
class _Budget:
    """Records whether the timer fired, in case some library swallowed the exception."""

    fired: bool = False


def _compare(pred: str, gold: str) -> tuple[bool, str]:
    """Equivalence of two extracted answers and the comparator that decided it."""
    p, g = normalize_answer(pred), normalize_answer(gold)
    if not p or not g:
        return False, "empty"
    kp, kg = _key(p), _key(g)
    if kp == kg:
        return True, "string"
    wp, wg = _word(p), _word(g)
    if wp or wg:
        return wp == wg, "word"
    if kp.isalpha() and kp.lower() == kg.lower() and len(kp) > 1:
        return True, "string"  # names: Evelyn vs evelyn (ab vs ba still goes to sympy)
    np_, ng = _parse_number(p), _parse_number(g)
    if np_ is not None and ng is not None:
        return _numbers_equal(np_, ng), "numeric"
    if (np_ is not None and _has_variables(g)) or (ng is not None and _has_variables(p)):
        return False, "numeric"  # a number never equals an expression in x; skip sympy
    sp, sg = _parse_structure(p), _parse_structure(g)
    if sp is not None and sg is not None:
        verdict = _compare_structures(sp, sg)
        if verdict is not None:
            return verdict, "structure"
    if _math_verify_equal(p, g):
        return True, "math_verify"
    if ("." in p or "." in g) and _sympy_equal(p, g):
        return True, "sympy"  # decimals vs closed forms, where math-verify's rounding is strict
    return False, "all"


def compare(pred: str, gold: str) -> tuple[bool, str]:
    """Whether two *extracted* answers are equivalent, and which comparator decided.

    Not time-bounded by itself: use :func:`check_answer` (one pair, main thread) or
    :func:`check_pairs` (many pairs, worker processes) for anything untrusted.
    """
    return _compare(pred, gold)


def is_equiv(pred: str | None, gold: str | None, *, timeout_s: float = DEFAULT_TIMEOUT_S) -> bool:
    """True if two extracted answers are equivalent; False on mismatch, timeout or error."""
    return check_answer(pred, gold, extract=False, timeout_s=timeout_s).equivalent


# --------------------------------------------------------------------------------------------
# Bounded single check
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Result:
    """Outcome of one check.

    ``reason`` is one of ``match``, ``mismatch``, ``timeout``, ``no_answer`` (nothing to
    extract from the prediction) or ``error`` (including an empty gold answer); ``pred`` is the
    extracted prediction; ``method`` names the comparator that decided a match or mismatch.
    """

    equivalent: bool
    reason: str
    pred: str | None = None
    method: str | None = None
    detail: str | None = None
    seconds: float = 0.0


def _in_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


@contextmanager
def _deadline(seconds: float | None, budget: _Budget) -> Iterator[None]:
    """Raise :class:`CheckTimeout` after ``seconds`` of wall time (main thread only).

    Signals interrupt Python code but not a long C call (a huge integer power); the worker
    pool's hard kill covers that case.
    """
    if not seconds or seconds <= 0 or not _in_main_thread():
        yield
        return

    def on_alarm(signum: int, frame: Any) -> None:
        budget.fired = True
        raise CheckTimeout

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def check_answer(
    response: str | None,
    gold: str | None,
    *,
    extract: bool = True,
    think: bool = False,
    timeout_s: float | None = DEFAULT_TIMEOUT_S,
    fallback_full_text: bool = False,
) -> Result:
    """Check one prediction against one gold answer, bounded in time.

    ``extract=True`` treats ``response`` as a full solution (last box, else "The answer is");
    ``extract=False`` treats it as an already-extracted answer. ``think=True`` scores only the
    text after the last ``</think>``. ``fallback_full_text=True`` lets math-verify search the
    whole response when nothing could be extracted (the DeepMath reward's OR-ed second check).

    The bound is a ``SIGALRM`` timer, so it only applies in a main thread (e.g. inside a
    worker process of :func:`check_pairs`); elsewhere the check runs unbounded, so call this
    directly only from a process you can afford to lose, or use :func:`check_pairs`.
    """
    t0 = time.perf_counter()
    budget = _Budget()
    pred: str | None = None

    def done(ok: bool, reason: str, method: str | None = None, detail: str | None = None):
        return Result(ok, reason, pred, method, detail, time.perf_counter() - t0)

    try:
        with _deadline(timeout_s, budget):
            if extract:
                pred = extract_answer(response, think=think)
            else:
                pred = response.strip() if response else None
            if gold is None or not str(gold).strip():
                return done(False, ERROR, detail="gold answer is empty")
            if not pred:
                if extract and fallback_full_text and response:
                    text = after_think(response) if think else response
                    hit = _full_text_match(text or "", str(gold))
                    if hit is not None:
                        pred = hit
                        return done(True, MATCH, "math_verify_full_text")
                return done(False, NO_ANSWER)
            ok, method = _compare(pred, str(gold))
    except CheckTimeout:
        return done(False, TIMEOUT, detail=f"over {timeout_s} s")
    except (RecursionError, MemoryError) as err:
        return done(False, ERROR, detail=type(err).__name__)
    except Exception as err:  # a comparator bug must cost one pair, not a shard
        return done(False, ERROR, detail=f"{type(err).__name__}: {str(err)[:200]}")
    if budget.fired:
        return done(False, TIMEOUT, detail=f"over {timeout_s} s")
    return done(ok, MATCH if ok else MISMATCH, method)


def _full_text_match(text: str, gold: str) -> str | None:
    """What math-verify extracts from free text, if it is equivalent to ``gold``."""
    mv = _math_verify()
    parsed = mv.parse(text, parsing_timeout=None)
    if parsed and mv.verify(_mv_parse(gold), parsed, timeout_seconds=None):
        return str(parsed[-1])
    return None


# --------------------------------------------------------------------------------------------
# Batch API: worker processes with a hard per-task deadline
# --------------------------------------------------------------------------------------------

Pair = tuple[str | None, str | None]
_PRELOAD = ["deepmath.answers", "sympy", "math_verify", "latex2sympy2_extended"]


def default_workers() -> int:
    """Cores this process may use (affinity-aware, so Slurm/cgroup limits are respected)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - non-Linux
        return max(1, os.cpu_count() or 1)


def _worker_main(conn: Any, memory_mb: int | None) -> None:
    """Serve checks one at a time in this process's main thread until told to stop."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C and kills us
    if memory_mb:
        try:
            import resource

            limit = int(memory_mb) * 1024 * 1024
            resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
        except (ImportError, ValueError, OSError):  # pragma: no cover - platform specific
            pass
    try:
        conn.send(("ready", os.getpid()))
    except (BrokenPipeError, OSError):
        return
    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError):
            return
        if msg is None:
            return
        idx, response, gold, opts = msg
        res = check_answer(response, gold, **opts)
        try:
            conn.send((idx, res))
        except (BrokenPipeError, OSError):
            return


@dataclass
class _Slot:
    proc: Any
    conn: Any
    task: int | None = None
    deadline: float = 0.0


class AnswerPool:
    """Worker processes that check answers with a hard per-pair deadline.

    Why not ``ProcessPoolExecutor``: it cannot cancel a running task, so one ``10^{10^{10}}``
    would pin a worker forever. Here each worker gets one pair at a time; a worker that is not
    back within ``timeout_s + grace_s`` is killed, its pair reported as ``timeout`` and a fresh
    worker takes its place. Inside the worker the same ``timeout_s`` is enforced with a signal
    first, which usually answers without the cost of a respawn.

    Workers start from a ``forkserver`` that has sympy and math-verify imported already (safe
    with threads in the parent, and a respawn costs milliseconds). ``memory_mb`` caps each
    worker's address space so a runaway expression fails with ``error`` instead of swapping.
    ``soft_timeout=False`` skips the in-worker signal (for callers whose own code owns
    ``SIGALRM``); the hard kill alone then enforces the bound.
    Keep one pool open across many batches (``with AnswerPool() as pool: pool.map(...)``).
    """

    def __init__(
        self,
        workers: int | None = None,
        *,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        grace_s: float = 1.0,
        memory_mb: int | None = 4096,
        soft_timeout: bool = True,
        start_method: str | None = None,
    ) -> None:
        import multiprocessing as mp

        if timeout_s <= 0:
            raise ValueError("timeout_s must be positive")
        self.workers = workers or default_workers()
        self.timeout_s = float(timeout_s)
        self.grace_s = float(grace_s)
        self.memory_mb = memory_mb
        self.soft_timeout = soft_timeout
        method = start_method or _default_start_method()
        self._ctx = mp.get_context(method)
        if method == "forkserver":
            self._ctx.set_forkserver_preload(_PRELOAD)
        self._slots: list[_Slot] = []
        self.respawns = 0

    def __enter__(self) -> AnswerPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _spawn(self) -> _Slot:
        parent, child = self._ctx.Pipe(duplex=True)
        proc = self._ctx.Process(
            target=_worker_main, args=(child, self.memory_mb), daemon=True, name="answer-check"
        )
        proc.start()
        child.close()
        return _Slot(proc, parent)

    def _await_ready(self, slots: Sequence[_Slot], wait_s: float = 120.0) -> None:
        """Wait for each new worker's hello, so a worker that cannot start fails loudly.

        Without this, a worker dying at start-up (say, an unimportable ``__main__``) would be
        replaced forever, each time reporting its pair as an error.
        """
        for slot in slots:
            try:
                ok = slot.conn.poll(wait_s)
                msg = slot.conn.recv() if ok else None
            except (EOFError, OSError):
                msg = None
            if not (isinstance(msg, tuple) and msg and msg[0] == "ready"):
                code = slot.proc.exitcode
                self.close()
                from deepmath.io import DeepmathError

                raise DeepmathError(
                    f"answer-check worker processes do not start (exit code {code}); see the "
                    "traceback above. Run from a module or a script file, not from stdin."
                )

    def _replace(self, slot: _Slot) -> None:
        """Kill a slot's worker and put a fresh, started one in its place."""
        self._kill(slot)
        fresh = self._spawn()
        self._await_ready([fresh])
        slot.proc, slot.conn, slot.task = fresh.proc, fresh.conn, None
        self.respawns += 1

    def _kill(self, slot: _Slot) -> None:
        with suppress(Exception):  # already gone
            slot.proc.kill()
        slot.proc.join(timeout=5)
        slot.conn.close()

    def close(self) -> None:
        """Stop all workers (politely, then by force)."""
        for slot in self._slots:
            with suppress(Exception):
                slot.conn.send(None)
        for slot in self._slots:
            slot.proc.join(timeout=1)
            if slot.proc.is_alive():
                self._kill(slot)
            else:
                slot.conn.close()
        self._slots = []

    def map(
        self,
        pairs: Iterable[Pair],
        *,
        extract: bool = True,
        think: bool = False,
        fallback_full_text: bool = False,
        progress: bool = False,
    ) -> list[Result]:
        """Check ``(response, gold)`` pairs; results come back in input order."""
        from multiprocessing.connection import wait

        tasks = list(pairs)
        results: list[Result | None] = [None] * len(tasks)
        if not tasks:
            return []
        opts = {
            "extract": extract,
            "think": think,
            "timeout_s": self.timeout_s if self.soft_timeout else None,
            "fallback_full_text": fallback_full_text,
        }
        want = min(self.workers, len(tasks))
        new = [self._spawn() for _ in range(want - len(self._slots))]
        self._slots.extend(new)
        self._await_ready(new)
        pending = deque(range(len(tasks)))
        started: dict[int, float] = {}
        bar = _progress_bar(len(tasks), progress)

        def finish(idx: int, res: Result) -> None:
            results[idx] = res
            if bar is not None:
                bar.update(1)

        def lost(slot: _Slot, reason: str, detail: str) -> None:
            idx = slot.task
            assert idx is not None
            response, _gold = tasks[idx]
            pred = _safe_extract(response, extract=extract, think=think)
            elapsed = time.perf_counter() - started[idx]
            finish(idx, Result(False, reason, pred, None, detail, elapsed))
            self._replace(slot)

        try:
            while pending or any(s.task is not None for s in self._slots):
                for slot in self._slots:
                    if slot.task is None and pending:
                        idx = pending.popleft()
                        response, gold = tasks[idx]
                        try:
                            slot.conn.send((idx, response, gold, opts))
                        except (BrokenPipeError, OSError):
                            pending.appendleft(idx)
                            self._replace(slot)
                            continue
                        slot.task = idx
                        started[idx] = time.perf_counter()
                        slot.deadline = started[idx] + self.timeout_s + self.grace_s
                busy = [s for s in self._slots if s.task is not None]
                if not busy:
                    continue
                wait_s = max(0.0, min(s.deadline for s in busy) - time.perf_counter())
                ready = wait([s.conn for s in busy], timeout=wait_s)
                for slot in busy:
                    if slot.conn not in ready:
                        continue
                    try:
                        idx, res = slot.conn.recv()
                    except (EOFError, OSError):
                        code = slot.proc.exitcode if not slot.proc.is_alive() else None
                        lost(slot, ERROR, f"worker died (exit code {code})")
                        continue
                    slot.task = None
                    finish(idx, res)
                now = time.perf_counter()
                for slot in self._slots:
                    if slot.task is not None and now >= slot.deadline and not slot.conn.poll():
                        lost(slot, TIMEOUT, f"over {self.timeout_s} s (worker killed)")
        except BaseException:
            self.close()
            raise
        finally:
            if bar is not None:
                bar.close()
        return [r for r in results if r is not None]


def _default_start_method() -> str:
    """``forkserver`` where it works, else ``fork``/``spawn``.

    forkserver: workers fork from a clean server that has sympy imported (fast respawns, no
    threads inherited from the caller). Like ``spawn`` it re-imports ``__main__`` by path, which
    is impossible when the program came from stdin; that case falls back to ``fork``.
    """
    import multiprocessing as mp
    import sys

    methods = mp.get_all_start_methods()
    main_file = getattr(sys.modules.get("__main__"), "__file__", None)
    main_spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    unimportable = main_spec is None and main_file is not None and not os.path.exists(main_file)
    if unimportable and "fork" in methods:
        return "fork"
    return "forkserver" if "forkserver" in methods else "spawn"


def _safe_extract(response: str | None, *, extract: bool, think: bool) -> str | None:
    try:
        if extract:
            return extract_answer(response, think=think)
        return response.strip() if response else None
    except Exception:  # pragma: no cover - extraction is plain string code
        return None


def _progress_bar(total: int, enabled: bool) -> Any:
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(total=total, desc="checking answers", unit="pair")


def check_pairs(
    pairs: Iterable[Pair],
    *,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    workers: int | None = None,
    extract: bool = True,
    think: bool = False,
    fallback_full_text: bool = False,
    progress: bool = False,
    memory_mb: int | None = 4096,
) -> list[Result]:
    """Check many ``(response, gold)`` pairs on all cores, each bounded by ``timeout_s``.

    Results are in input order. See :class:`AnswerPool` for how the bound is enforced and
    :func:`check_answer` for the meaning of ``extract``/``think``/``fallback_full_text``.
    """
    with AnswerPool(workers, timeout_s=timeout_s, memory_mb=memory_mb) as pool:
        return pool.map(
            pairs,
            extract=extract,
            think=think,
            fallback_full_text=fallback_full_text,
            progress=progress,
        )
