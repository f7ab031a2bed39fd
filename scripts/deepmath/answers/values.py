"""Reading an answer's value before any comparison: numbers (exact rationals or tolerant
floats), yes/no words, top-level splits, bracketed structures (tuples, intervals, sets, vectors,
matrices), inequalities in one variable as intervals, and the units an answer is stated in.

Pure parsing, no comparison: :mod:`deepmath.answers.equivalence` decides equality from what
these return. Stdlib only.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from deepmath.answers.normalize import _HEURISTIC_MAX, _key

REL_TOL = 1e-4  # relative tolerance of two decimals, as NeMo-Skills' math_equal

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
    m = re.fullmatch(r"(" + _NUM + r")/(" + _NUM + r")", s)  # -1./3, 2.5/5
    if m and Fraction(m.group(2)) != 0:
        exact = not re.search(r"[.eE]", m.group(1) + m.group(2))
        return _Number(neg * Fraction(m.group(1)) / Fraction(m.group(2)), exact, percent)
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
    if "\\cup" in s:
        parts = [x.strip() for x in re.split(r"\\cup", s)]
        shapes = [_parse_structure(x) for x in parts]
        if all(x is not None and len(x.kind) == 2 and len(x.items) == 2 for x in shapes):
            return _Structure("union", tuple(parts))
        return None
    if s.count("\\pm") == 1 and "," not in s:  # 1 \pm \sqrt{5}: two answers
        return _Structure("list", (s.replace("\\pm", "+"), s.replace("\\pm", "-")))
    m = _MATRIX.match(s)
    if m and "\\begin{" in m.group(2):
        return None  # A + B: an expression of matrices, not one matrix
    if m:
        rows = [r for r in re.split(r"\\\\", m.group(2)) if r.strip()]
        cells = tuple(tuple(c.strip() for c in r.split("&")) for r in rows)
        if len(cells) > 1 and all(len(r) == 1 for r in cells):
            return _Structure("col", tuple(r[0] for r in cells))  # a vector: equal to a tuple
        if len(cells) == 1 and len(cells[0]) > 1:
            return _Structure("row", cells[0])
        return _Structure("matrix", cells)
    if s.startswith("\\{") and s.endswith("\\}") and _balanced(s[2:-2]):
        return _Structure("set", _expand_pm(x for x in _split_top(s[2:-2]) if x))
    if s.startswith("{") and s.endswith("}") and _balanced(s[1:-1]):
        items = _split_top(s[1:-1])  # {3, 5}: braces as set brackets, as models write them
        if len(items) >= 2 and all(items):
            return _Structure("set", _expand_pm(items))
    if len(s) >= 2 and s[0] in "([" and s[-1] in ")]" and _balanced(s[1:-1]):
        items = _split_top(s[1:-1])
        if len(items) >= 2:
            return _Structure(s[0] + s[-1], tuple(items))
        return None
    if "," in s and "\\cup" not in s:
        items = _split_top(s)
        if len(items) >= 2 and all(items):
            return _Structure("list", _expand_pm(items))
    return None


def _expand_pm(items: Any) -> tuple[str, ...]:
    """Items with one ``\\pm`` stand for two: 1\\pm\\sqrt{5} is 1+\\sqrt{5} and 1-\\sqrt{5}."""
    out: list[str] = []
    for x in items:
        if x.count("\\pm") == 1:
            out += [x.replace("\\pm", "+"), x.replace("\\pm", "-")]
        else:
            out.append(x)
    return tuple(out)


_INEQUALITY = r"<|>|\\leq|\\geq"
_ABS_BOUND = re.compile(r"\|\s*([a-zA-Z])\s*\|\s*(" + _INEQUALITY + r")\s*([^<>=|]+)")
_ONE_SIDED = re.compile(r"([a-zA-Z])\s*(" + _INEQUALITY + r")\s*([^<>=]+)")
_TWO_SIDED = re.compile(r"([^<>=]+?)\s*(<|\\leq)\s*([a-zA-Z])\s*(<|\\leq)\s*([^<>=]+)")
_TWO_SIDED_DOWN = re.compile(r"([^<>=]+?)\s*(>|\\geq)\s*([a-zA-Z])\s*(>|\\geq)\s*([^<>=]+)")


def _as_interval(s: str) -> str | None:
    """Inequalities in one variable as intervals: ``x \\leq 3`` -> ``(-\\infty, 3]``;
    ``-1 < x < 1`` -> ``(-1, 1)``; ``x < 2, x > 3`` (from "or") -> a union. Else None."""
    if not re.search(_INEQUALITY, s):
        return None
    both = _overlapping_rays(s)
    if both is not None:
        return both
    m = _ABS_BOUND.fullmatch(s)  # |x| \leq 3 -> [-3, 3]; |x| > 3 -> (-\infty, -3) \cup (3, \infty)
    if m and not re.search(r"[+-]", m.group(3)):
        op, b = m.group(2), m.group(3).strip()
        if op in ("<", "\\leq"):
            left, right = ("[", "]") if op == "\\leq" else ("(", ")")
            return f"{left}-{b}, {b}{right}"
        inner, outer = ("]", "[") if op == "\\geq" else (")", "(")
        return f"(-\\infty, -{b}{inner} \\cup {outer}{b}, \\infty)"
    out = []
    for part in _split_top(s):
        m = _TWO_SIDED.fullmatch(part)
        if m:
            lo, op1, _var, op2, hi = m.groups()
            left, right = "[" if op1 == "\\leq" else "(", "]" if op2 == "\\leq" else ")"
            out.append(f"{left}{lo.strip()}, {hi.strip()}{right}")
            continue
        m = _TWO_SIDED_DOWN.fullmatch(part)  # 7 \geq x > -2 is (-2, 7]
        if m:
            hi, op1, _var, op2, lo = m.groups()
            left, right = "[" if op2 == "\\geq" else "(", "]" if op1 == "\\geq" else ")"
            out.append(f"{left}{lo.strip()}, {hi.strip()}{right}")
            continue
        m = _ONE_SIDED.fullmatch(part)
        if m is None:
            return None
        _var, op, bound = m.groups()
        closed = op in ("\\leq", "\\geq")
        if op in ("<", "\\leq"):
            out.append(f"(-\\infty, {bound.strip()}{']' if closed else ')'}")
        else:
            out.append(f"{'[' if closed else '('}{bound.strip()}, \\infty)")
    return " \\cup ".join(out)


def _overlapping_rays(s: str) -> str | None:
    """``x \\geq -2`` and ``x \\leq 7`` (the "and" already a comma) as ``[-2, 7]``; else None.

    Two opposite rays on one variable that overlap can only mean their intersection: as a
    union ("or") they would be the whole line, which no answer is written as.
    """
    parts = _split_top(s)
    rays = [m for m in (_ONE_SIDED.fullmatch(p) for p in parts) if m is not None]
    if len(parts) != 2 or len(rays) != 2 or rays[0].group(1) != rays[1].group(1):
        return None
    rays.sort(key=lambda r: r.group(2) in ("<", "\\leq"))  # the lower bound first
    (_, op_lo, lo), (_, op_hi, hi) = rays[0].groups(), rays[1].groups()
    if op_lo not in (">", "\\geq") or op_hi not in ("<", "\\leq"):
        return None
    a, b = _parse_number(lo), _parse_number(hi)
    if a is None or b is None or a.percent or b.percent or not a.value < b.value:
        return None
    left, right = "[" if op_lo == "\\geq" else "(", "]" if op_hi == "\\leq" else ")"
    return f"{left}{lo.strip()}, {hi.strip()}{right}"


# Known units, by canonical name: two answers in different units are different answers.
_UNITS = {
    "inch": ("inch", "inches", "in"),
    "foot": ("foot", "feet", "ft"),
    "yard": ("yard", "yards", "yd"),
    "mile": ("mile", "miles", "mi"),
    "meter": ("meter", "meters", "metre", "metres", "m"),
    "centimeter": ("centimeter", "centimeters", "cm"),
    "millimeter": ("millimeter", "millimeters", "mm"),
    "kilometer": ("kilometer", "kilometers", "km"),
    "second": ("second", "seconds", "sec", "s"),
    "minute": ("minute", "minutes", "min"),
    "hour": ("hour", "hours", "hr", "h"),
    "day": ("day", "days"),
    "week": ("week", "weeks"),
    "year": ("year", "years"),
    "gram": ("gram", "grams", "g"),
    "kilogram": ("kilogram", "kilograms", "kg"),
    "pound": ("pound", "pounds", "lb", "lbs"),
    "ounce": ("ounce", "ounces", "oz"),
    "cent": ("cent", "cents"),
    "dollar": ("dollar", "dollars"),
    "liter": ("liter", "liters", "litre", "litres", "l"),
}
_UNIT_OF = {alias: name for name, aliases in _UNITS.items() for alias in aliases}


def _units(ans: str) -> frozenset[str]:
    """The known units an answer is stated in (``12 \\text{ inches}``, ``\\$5``, ``3 cm^2``)."""
    words = re.findall(r"\\(?:text|mbox|textrm|mathrm)\{([^{}]*)\}", ans)
    tail = (  # "12 inches", "3 cm^2": one character class, so no backtracking blow-up
        re.search(r"\d\s*([a-zA-Z][a-zA-Z. ]*)(?:\^\{?\d\}?)?\s*\$?\s*$", ans)
        if len(ans) <= _HEURISTIC_MAX
        else None
    )
    if tail:
        words.append(tail.group(1))
    found = set()
    for text in words:
        tokens = re.findall(r"[a-zA-Z]+", text.lower())
        for w in tokens:
            if w in _UNIT_OF and (len(w) > 1 or len(tokens) == 1):  # "m" alone, not in words
                found.add(_UNIT_OF[w])
    if "\\$" in ans or re.match(r"\s*\$\s*\d", ans):
        found.add("dollar")
    return frozenset(found)
