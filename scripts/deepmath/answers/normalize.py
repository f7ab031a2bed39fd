"""A canonical spelling of an extracted answer, before any comparison.

Most disagreements between equivalent answers are typography (``\\dfrac``, ``\\left(``,
``^\\circ``, units, thousands separators, ``\\$``), not mathematics; removing it first makes the
cheap comparisons decisive for most pairs, so the symbolic path only sees what needs it.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from typing import Any

from deepmath.answers.extract import (
    _BOX_COMMANDS,
    _matching_brace,
    extract_boxed,
    strip_math_delimiters,
)

_TEXT_CMDS = ("\\text", "\\textbf", "\\textit", "\\textrm", "\\mbox", "\\textnormal")


_FORMAT_CMDS = (
    "\\mathrm",
    "\\mathbf",
    "\\mathit",
    "\\mathcal",
    "\\mathscr",
    "\\mathsf",
    "\\mathtt",
    "\\mathnormal",
    "\\boldsymbol",
    "\\bm",
    "\\operatorname",
)


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


# Percent as a word after a number, bare or in \text{}: "25 percent", "25\text{ per cent}".
_PERCENT_WORD = re.compile(
    r"(\d)\s*(?:\\(?:text|mbox|textrm|mathrm)\{\s*(?:percent|per\s*cent|pct)\.?\s*\}"
    r"|(?:percent|per\s*cent|pct)(?![a-zA-Z])\.?)",
    re.I,
)


# The whole real line: \mathbb{R}, "all real numbers".
_REALS = re.compile(r"(?i)\\mathbb\{?R\}?|(?:the\s+set\s+of\s+)?all\s+real\s+numbers")
# A set given by its condition: \{x \mid x > 3\}, \{x : x > 3\}, \{x \in \mathbb{R} | x > 3\}.
_SET_BUILDER = re.compile(
    r"\\\{\s*[a-zA-Z]\s*(?:\\in\s*\\mathbb\{?R\}?\s*)?(?:\\mid|\||:)\s*(.+?)\s*\\\}"
)


# A mixed number: "5 2/3", "1207 1/4", "12 1/2\\%" (a proper fraction after a whole number).
_MIXED = re.compile(r"([+-]?\d+)\s+(\d+)\s*/\s*(\d+)\s*(\\?%)?")
_THOUSANDS = re.compile(r"[+-]?\d{1,3}(?:,\d{3})+(?:\.\d+)?(?:\\?%)?")


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
    # An unbraced \sqrt takes a whole digit run: \sqrt12 is written for \sqrt{12} (TeX would
    # typeset \sqrt{1}2, which nobody means); a letter stays one token (\sqrt x y).
    s = re.sub(r"\\sqrt\s*(\[[^\[\]{}]*\])?\s*(\d+|[a-zA-Z])", r"\\sqrt\1{\2}", s)
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

    :func:`normal_form`, then a lone assignment gives its value (``x = 3`` -> ``3``) and a lone
    parenthesised choice letter its letter (``(C)`` -> ``C``).
    """
    if ans is None:
        return ""
    return _value_form(normal_form(str(ans)))


@functools.lru_cache(maxsize=8192)
def _value_form(s: str) -> str:
    m = re.fullmatch(r"[a-zA-Z]\s*\\in\s*(.+)", s)  # x \in [-2, 7] -> [-2, 7]
    if m:
        s = m.group(1).strip()
    if _REALS.fullmatch(s):
        return "(-\\infty, \\infty)"
    if m:
        return s
    m = _SET_BUILDER.fullmatch(s)  # \{x \mid -2 \leq x \leq 7\} -> -2 \leq x \leq 7
    if m:
        return m.group(1).strip()
    m = _ASSIGN.match(s) if len(s) <= _HEURISTIC_MAX else None
    if m and not re.search(r"[=<>]|\\[lg]eq", m.group(1)):
        s = m.group(1).strip()
    # "(C)" or "C)" -> "C": a lone parenthesised choice letter.
    m = re.fullmatch(r"\(\s*([A-Ea-e])\s*\)|([A-E])\)", s)
    if m:
        s = (m.group(1) or m.group(2)).upper()
    return s


@functools.lru_cache(maxsize=8192)
def normal_form(ans: str) -> str:
    """The answer with its typography removed, equations and assignments kept whole.

    Why: most disagreements between equivalent answers are typography (``\\dfrac``, ``\\left(``,
    ``^\\circ``, units, thousands separators, ``\\$``), not mathematics. Removing it first makes
    the cheap string and number comparisons decisive for the vast majority of pairs, so the
    expensive symbolic path only sees what really needs it.
    """
    s = ans.strip()
    inner = extract_boxed(s) if s.startswith(_BOX_COMMANDS) else None
    if inner:
        s = inner
    s = re.sub(r"\s+", " ", s).replace("\\$", "")  # one space: no regex below meets a long run
    s = strip_math_delimiters(s).replace("$", "")
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
    s = re.sub(r"\\gt(?![a-zA-Z])", ">", s)
    s = re.sub(r"\\lt(?![a-zA-Z])", "<", s)
    s = re.sub(r"\\infinity|(?<![a-zA-Z\\])inf(?:inity)?(?![a-zA-Z])", r"\\infty", s)
    s = _PERCENT_WORD.sub(r"\1\\%", s)  # 25 percent, 25 pct, 25 per cent -> 25\%
    s = _DEGREES.sub("", s)
    s = re.sub(r"\bdegrees?\b", "", s)
    s = _drop_text(s)
    s = re.sub(r",\s*(?:,\s*)+", ", ", s)  # "30, \text{ and } 77" -> "30, , 77" -> "30, 77"
    s = _replace_braced_cmd(s, _FORMAT_CMDS, lambda c: c).replace("~", " ")  # \mathrm{~cm}
    s = _fix_shorthand(s)
    s = re.sub(  # F^{\prime\prime} -> F''
        r"\^\s*\{?\s*((?:\\prime\s*)+)\}?", lambda m: "'" * m.group(1).count("\\prime"), s
    )
    s = re.sub(r"([\^_])\{\s*([A-Za-z0-9])\s*\}", r"\1\2", s)  # x^{2} -> x^2, a_{n} -> a_n
    s = re.sub(r"(\d)\{,\}(\d)", r"\1,\2", s)  # 1{,}000
    s = re.sub(r"\\(?:lor|vee)(?![a-zA-Z])", " or ", s)  # x < 2 \lor x > 3
    s = re.sub(r"\s*,?\s+(?:and|or)\s+", ", ", s)  # 12, 30, and 77
    m = _UNIT_WORDS.match(s) if len(s) <= _HEURISTIC_MAX else None  # quadratic regex
    if m and not set(re.findall(r"[a-z]+", m.group(2).lower())) & _NOT_UNITS:
        s = m.group(1)
    s = re.sub(r"\s+", " ", s).strip()
    s = re.sub(r"([(\[{])\s+", r"\1", s)
    s = re.sub(r"\s+([)\]}])", r"\1", s)
    s = s.rstrip(" .,;")
    while s.endswith("\\"):  # "240\\": a stray line break
        s = s.rstrip("\\").rstrip(" .,;")
    m = _MIXED.fullmatch(s)  # 5 2/3 -> 5\frac{2}{3} (before spaces stop mattering)
    if m:
        s = f"{m.group(1)}\\frac{{{m.group(2)}}}{{{m.group(3)}}}{m.group(4) or ''}"
    if _THOUSANDS.fullmatch(s):  # 1,000 is a number; [0,100] and 1, 2 are not touched
        s = s.replace(",", "")
    return s


def _has_variables(s: str) -> bool:
    """Whether a normalised answer has a free letter (not a command, not e or i)."""
    return re.search(r"[a-df-hj-zA-Z]", re.sub(r"\\[a-zA-Z]+", "", s)) is not None


def _key(s: str) -> str:
    """Whitespace-free form for exact string comparison."""
    return re.sub(r"\s+", "", s)
