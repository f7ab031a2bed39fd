"""Equivalence of two extracted answers: cheap comparisons first, symbolic ones last.

The normalising comparator is written here in the spirit of NeMo-Skills' ``math_equal``
(exact rational / tolerant float comparison, percentages, ``x=3`` vs ``3``, Yes/No words,
intervals, sets, tuples, matrices), with math-verify and a sympy route for symbolic forms.
Nothing here is time-bounded: :mod:`deepmath.answers.check` and :mod:`deepmath.answers.pool`
bound every call.
"""

from __future__ import annotations

import functools
import logging
import math
import re
from collections.abc import Sequence
from typing import Any

from deepmath.answers.normalize import (
    _HEURISTIC_MAX,
    _has_variables,
    _key,
    normal_form,
    normalize_answer,
)
from deepmath.answers.values import (
    _INEQUALITY,
    REL_TOL,
    _as_interval,
    _numbers_equal,
    _parse_number,
    _parse_structure,
    _split_top,
    _Structure,
    _units,
    _word,
)


def _distinct(items: Sequence[str]) -> list[str]:
    """Items with repeats dropped: listing a solution twice does not make a new solution."""
    out: list[str] = []
    for x in items:
        if not any(_compare(x, y)[0] for y in out):
            out.append(x)
    return out


def _unordered_equal(a: Sequence[str], b: Sequence[str]) -> bool:
    if len(a) != len(b):
        a, b = _distinct(a), _distinct(b)
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
    if kinds in ({"col", "()"}, {"row", "()"}, {"col", "list"}, {"row", "list"}):
        # (-2, -14, -7) is the column vector with those entries; a row is not a column
        if len(p.items) != len(g.items):
            return False
        return all(_compare(x, y)[0] for x, y in zip(p.items, g.items, strict=True))
    if kinds & {"col", "row"} and len(kinds) == 2:
        return False
    if kinds == {"matrix"}:
        if [len(r) for r in p.items] != [len(r) for r in g.items]:
            return False
        return all(
            _compare(x, y)[0]
            for rp, rg in zip(p.items, g.items, strict=True)
            for x, y in zip(rp, rg, strict=True)
        )
    if kinds <= {"set", "list"} or kinds == {"union"}:
        return _unordered_equal(p.items, g.items)
    if "union" in kinds:
        return None
    if kinds == {"list", "()"}:  # 3, 7 vs (3, 7): the same when in the same order
        same = len(p.items) == len(g.items) and all(
            _compare(x, y)[0] for x, y in zip(p.items, g.items, strict=True)
        )
        return True if same else None
    bracketed = all(len(k) == 2 for k in kinds)
    if p.kind == g.kind or (bracketed and len(p.items) != 2):
        # Same brackets, or tuples/vectors whose bracket style carries no meaning: (1,2,3).
        if len(p.items) != len(g.items):
            return False
        return all(_compare(x, y)[0] for x, y in zip(p.items, g.items, strict=True))
    if bracketed:
        return False  # [0,1] vs (0,1): two items in different brackets are different intervals
    return None


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


@functools.lru_cache(maxsize=4096)
def _mv_parse(latex: str) -> list[Any]:
    """math-verify's reading of one answer, parsed once per distinct string per process."""
    mv = _math_verify()
    return mv.parse("\\boxed{" + latex + "}", parsing_timeout=None)


@functools.lru_cache(maxsize=4096)
def mv_parse_text(text: str) -> list[Any]:
    """math-verify's reading of a whole text (its own extraction), once per distinct text."""
    return _math_verify().parse(text, parsing_timeout=None)


def _equations_equal(p: tuple[str, str], g: tuple[str, str]) -> bool:
    """Two equations in the same variables with proportional sides: the same curve or line."""
    import sympy
    from latex2sympy2_extended import latex2sympy

    try:
        e1 = latex2sympy(p[0]) - latex2sympy(p[1])
        e2 = latex2sympy(g[0]) - latex2sympy(g[1])
        if not e1.free_symbols or e1.free_symbols != e2.free_symbols:
            return False
        ratio = sympy.simplify(e1 / e2)
        return not ratio.free_symbols and ratio != 0 and bool(ratio.is_finite)
    except Exception:  # unparsable: not evidence of equality
        return False


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


# Comparators whose "unequal" is final: the two answers were fully understood and differ, so
# no symbolic or full-text check may overturn it (math-verify would, for instance, call the lists
# 12, 30, 77 and 14, 30, 77 equal: it compares only their last items).
DECISIVE = frozenset(
    {
        "string",
        "word",
        "choice",
        "numeric",
        "structure",
        "prime",
        "degenerate",
        "variables",
        "units",
        "equation",
        "labels",
    }
)

_RELATION = re.compile(r"=|<|>|\\[lg]eq|\\neq|\\approx|\\sim|\\equiv|\\in(?![a-z])")
_APPROX = re.compile(r"\\approx|\\simeq|\\doteq|\\thickapprox")
# What may name a value: x, x_1, AB, |CD|, m\angle A, \angle ABC, f(2), P(A), \overline{AB},
# S_{\triangle ABC}, [ABC] (an area).
_LABEL = re.compile(
    r"\s*(?:[a-zA-Z]{1,3}(?:_\{[^{}=]*\}|_\w+)?(?:'*)(?:\([^()=]*\))?|\|[^|=]+\|"
    r"|m?\\angle\s*[A-Za-z]{1,3}|\[[A-Z]{2,6}\]"
    r"|\(\s*[a-zA-Z](?:_\w)?(?:\s*,\s*[a-zA-Z](?:_\w)?)+\s*\)"
    r"|\\(?:overline|widehat|overarc|vec)\{[A-Za-z]{1,3}\}|\\[a-zA-Z]+(?:_\{?\w+\}?)?)\s*"
)
_LABELLED_CHOICE = re.compile(r"\(([A-Ea-e])\)\s*|([A-E])[.:)]\s+")
_CHOICE = re.compile(r"\(?([A-E])\)?(?:[.:)]\s*|\s+)(?=\S)|\(([a-e])\)\s*(?=\S)")
_DECIMAL_COMMA = re.compile(r"[+-]?\d+,(?:\d{1,2}|\d{4,})")
_ZERO_DENOMINATOR = re.compile(r"\\frac\{[^{}]*\}\{\s*0\s*\}|/\s*0(?![\d.])")


_SINGLE_ASSIGNMENT = re.compile(r"\s*([a-zA-Z])\s*=\s*[^=<>]+")


def _primes(s: str) -> int:
    return s.count("'") + s.count("\\prime")


def _free_letters(s: str) -> frozenset[str] | None:
    """Single-letter variables of a normalised answer; None when it holds words (unknown)."""
    rest = re.sub(r"\\[a-zA-Z]+", " ", s)
    if re.search(r"[a-zA-Z]{2,}", rest):
        return None
    return frozenset(re.findall(r"[a-zA-Z]", rest)) - {"e", "i"}


def _choice(p: str, g: str) -> bool | None:
    """A choice letter against "B. y = 17" / "(B) 17" / "(b) 17": the letters decide; else None."""
    for letter, other in ((g, p), (p, g)):
        if re.fullmatch(r"[A-E]", letter):
            m = _CHOICE.match(other)
            if m:
                return (m.group(1) or m.group(2).upper()) == letter  # "(c) 12" is choice C
    return None


def _chain_value(p: str) -> str | None:
    """The value a chain of equalities ends on, when what comes before only names or computes it.

    ``y = 3+4+2 = 9`` and ``|CD| = 4`` state 9 and 4; ``x^2 + y^2 = 4`` is an equation and
    states nothing of the kind. ``\\approx`` counts as ``=`` (``y \\approx 9`` states 9).
    """
    members = _split_top(_APPROX.sub("=", p), "=")
    if len(members) < 2 or not all(members):
        return None
    head, middle, last = members[0], members[1:-1], members[-1]
    named = _LABEL.fullmatch(head) is not None or not _free_letters(head)
    computed = all(_free_letters(m) == frozenset() for m in middle)
    return last if named and computed else None


def _equation_sides(s: str) -> tuple[str, str] | None:
    sides = _split_top(s, "=")
    if len(sides) != 2 or not all(sides) or _RELATION.search(sides[0] + sides[1]):
        return None
    return sides[0], sides[1]


_TUPLE_LABEL = re.compile(r"\(\s*([a-zA-Z](?:_\w)?(?:\s*,\s*[a-zA-Z](?:_\w)?)+)\s*\)")


def _is_label(head: str) -> bool:
    """Whether ``head`` names a value: ``x``, ``|AB|``, ``(p,q)``, or a ratio of names
    (``V_1:V_2``, ``a/b``, ``\\frac{a}{b}``)."""
    m = re.fullmatch(r"\s*\\frac\{([^{}]+)\}\{([^{}]+)\}\s*", head)
    parts = m.groups() if m else re.split(r"[:/]", head)
    return all(_LABEL.fullmatch(part) for part in parts)


def _label_key(head: str) -> str:
    """A label without typography: ``|AB|``, ``\\overline{AB}`` and ``AB`` name one segment."""
    k = re.sub(r"\\(?:overline|widehat|overarc|vec)|[|{}\s]", "", head)
    return k.replace("m\\angle", "\\angle")


def _labelled(s: str) -> list[tuple[str, str]] | None:
    """(label, value) pairs of an answer that names every value it gives, else None.

    ``AB=4, CD=5``, ``V_1:V_2=11:21`` and ``(p,q)=(3,2)`` (a tuple of names names each
    component: p=3, q=2). The values must be constants: ``y = 2x + 3`` is an equation.
    """
    if "=" not in s or len(s) > _HEURISTIC_MAX:
        return None
    out: list[tuple[str, str]] = []
    for item in _split_top(s):
        sides = _split_top(item, "=")
        if len(sides) != 2 or not all(sides) or not _is_label(sides[0]):
            return None
        head, value = sides
        if _free_letters(value) != frozenset() or _RELATION.search(value):
            return None
        names = _TUPLE_LABEL.fullmatch(head)
        if names is None:
            out.append((_label_key(head), value))
            continue
        shape = _parse_structure(value)
        keys = [_label_key(n) for n in names.group(1).split(",")]
        if shape is None or shape.kind != "()" or len(shape.items) != len(keys):
            return None
        out += list(zip(keys, shape.items, strict=True))
    return out


_ALPHABET = "abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRSTUVWXYZ"


def _bare_items(s: str) -> tuple[str, ...] | None:
    """The items of a bare list or a parenthesised tuple (``4, 5``, ``(3, 2)``), else None."""
    shape = _parse_structure(s)
    if shape is None or shape.kind not in ("list", "()"):
        return None
    return shape.items


def _compare_labelled(fp: str, fg: str) -> bool | None:
    """Answers that label their values, against labels or bare values; None: not labelled.

    Both labelled: the labels must be the same (``x=3`` is not ``y=3``) and each label's value
    equal, in any order. One side labelled: its values against the other's in order
    (``AB=4, CD=5`` is ``4, 5``, not ``5, 4``), where consecutive letters (a, b; x, y, z) name
    a tuple in alphabetical order; one label repeated (``x=1, x=2``) lists solutions.
    """
    lp, lg = _labelled(fp), _labelled(fg)
    if lp is None and lg is None:
        return None
    if lp is not None and lg is not None:
        keys_p, keys_g = sorted(k for k, _ in lp), sorted(k for k, _ in lg)
        if keys_p != keys_g:
            return False
        if len(set(keys_g)) < len(keys_g):
            return _unordered_equal([v for _, v in lp], [v for _, v in lg])
        values_p = dict(lp)
        return all(_compare(values_p[k], v)[0] for k, v in lg)
    named, bare = (lp, fg) if lp is not None else (lg, fp)
    assert named is not None
    if _RELATION.search(bare):
        return None  # an equation or inequality on the other side: not a list of values
    values = [v for _, v in named]
    if len(values) == 1:
        return _compare(values[0], bare)[0] if lp is not None else _compare(bare, values[0])[0]
    items = _bare_items(bare)
    if items is None or len(items) != len(values):
        return False
    family = {re.sub(r"_.*", "", k) for k, _ in named}
    shape = _parse_structure(bare)
    if len(family) == 1 and shape is not None and shape.kind == "list":
        # x = 1, x = 2 or x_1 = 1, x_2 = 2 against a bare list: solutions, in any order
        return _unordered_equal(values, items)
    keys = sorted(k for k, _ in named)
    if all(len(k) == 1 for k in keys) and "".join(keys) in _ALPHABET:
        # consecutive letters name a tuple in their order: "b = -2, a = 1" is (a, b) = (1, -2)
        values = [v for _, v in sorted(named)]
    pairs = zip(values, items, strict=True) if lp is not None else zip(items, values, strict=True)
    return all(_compare(a, b)[0] for a, b in pairs)


_RATIO = re.compile(r"[^:=<>]+(?::[^:=<>]+)+")


def _compare_ratios(p: str, g: str) -> bool | None:
    """Two ratios (``1:2:3``) term by term, in order; None unless both are ratios of numbers.

    Terms are not scaled (``2:4`` is not ``1:2``): a colon also writes times, and 10:30 is not
    7:21.
    """
    if not (_RATIO.fullmatch(p) and _RATIO.fullmatch(g)):
        return None
    tp, tg = p.split(":"), g.split(":")
    if not all(_parse_number(t) is not None for t in tp + tg):
        return None
    return len(tp) == len(tg) and all(_compare(a, b)[0] for a, b in zip(tp, tg, strict=True))


def _exact_before_approx(p: str) -> str | None:
    """The exact value an answer gives before approximating it: ``\\frac{\\sqrt3}{3}
    \\approx 0.577`` gives ``\\frac{\\sqrt3}{3}``; None when there is no such value."""
    parts = _APPROX.split(p)
    if len(parts) < 2:
        return None
    approx = _parse_number(parts[-1])
    exact = _split_top(parts[-2], "=")[-1]
    if approx is None or approx.exact or not exact or _free_letters(exact) != frozenset():
        return None
    return exact


_GROUPED = re.compile(r"\s*[+-]?\d{1,3}(?:,\d{3})+\s*")


def _compare(pred: str, gold: str) -> tuple[bool, str]:
    """Equivalence of two extracted answers and the comparator that decided it.

    "70,110" is 70110 with a thousands separator, or the list 70, 110 written tightly (MATH
    has both); when the number reading fails, the list reading is tried as well.
    """
    ok, how = _compare_once(pred, gold)
    if ok:
        return ok, how
    alt_p = pred.replace(",", ", ") if _GROUPED.fullmatch(pred) else pred
    alt_g = gold.replace(",", ", ") if _GROUPED.fullmatch(gold) else gold
    if (alt_p, alt_g) != (pred, gold):
        again = _compare_once(alt_p, alt_g)
        if again[0]:
            return again
    return ok, how


def _compare_once(pred: str, gold: str) -> tuple[bool, str]:
    fp, fg = normal_form(pred), normal_form(gold)
    p, g = normalize_answer(fp), normalize_answer(fg)
    if not p or not g:
        return False, "empty"
    ap, ag = _SINGLE_ASSIGNMENT.fullmatch(fp), _SINGLE_ASSIGNMENT.fullmatch(fg)
    if ap and ag and ap.group(1) != ag.group(1):
        return False, "variables"  # x = -1/4 is not the line y = -1/4
    up, ug = _units(pred), _units(gold)
    if up and ug and not up & ug:
        return False, "units"  # 12 feet is not 12 inches
    kp, kg = _key(p), _key(g)
    if kp == kg:
        return True, "string"
    labelled = _compare_labelled(fp, fg)
    if labelled is not None:
        return labelled, "labels"
    ratio = _compare_ratios(p, g)
    if ratio is not None:
        return ratio, "structure"
    if _primes(kp) != _primes(kg):
        return False, "prime"  # F vs F', f'(x) vs f(x)
    if _ZERO_DENOMINATOR.search(kp) or _ZERO_DENOMINATOR.search(kg):
        return False, "degenerate"  # 7 3/0 is no number at all
    wp, wg = _word(p), _word(g)
    if wp or wg:
        return wp == wg, "word"
    choice = _choice(p, g)
    if choice is not None:
        return choice, "choice"
    for mine, other, flip in ((p, g, False), (g, p, True)):
        m = _LABELLED_CHOICE.match(mine) if len(mine) <= _HEURISTIC_MAX else None
        if m and mine[m.end() :] and not re.fullmatch(r"\(?[A-Ea-e]\)?", other):
            # "(B) 17" against 17: the option's content is the answer
            rest = mine[m.end() :]
            return _compare(other, rest) if flip else _compare(rest, other)
    if len(kp) == 1 == len(kg) and kp.isalpha() and kg.isalpha():
        if kp.upper() == kg.upper() and kp.upper() in "ABCDE":
            return True, "choice"  # choice letters in either case: e vs \text{E}, (c) vs C
        return False, "string"  # other lone letters are variables: x is not X
    if kp.isalpha() and kp.lower() == kg.lower() and len(kp) > 1:
        return True, "string"  # names: Evelyn vs evelyn (ab vs ba still goes to sympy)
    np_, ng = _parse_number(p), _parse_number(g)
    if np_ is None and ng is not None and not ng.exact and _DECIMAL_COMMA.fullmatch(kp):
        np_ = _parse_number(kp.replace(",", "."))  # 2,75 for 2.75: a decimal comma
    if np_ is not None and ng is not None:
        return _numbers_equal(np_, ng), "numeric"
    if not _RELATION.search(fg):  # the gold is a value: a chain ending on a value states it
        last = _chain_value(p)
        if last is not None:
            verdict = _compare(last, g)
            exact = None if verdict[0] else _exact_before_approx(p)
            return _compare(exact, g) if exact is not None else verdict
    eq_p, eq_g = _equation_sides(fp), _equation_sides(fg)
    if eq_p is not None and eq_g is not None and _free_letters(fp) and _free_letters(fg):
        # Two equations: the same curve when their sides are proportional. math-verify is not
        # asked: it calls 5x - 7y + 11z - 4 = 0 and ... + 4 = 0 equal (both right sides are 0).
        return _equations_equal(eq_p, eq_g), "equation"
    if re.search(_INEQUALITY, p) and not re.search(_INEQUALITY, g):
        p = _as_interval(p) or p  # x \leq 3 vs (-\infty, 3]
    elif re.search(_INEQUALITY, g) and not re.search(_INEQUALITY, p):
        g = _as_interval(g) or g
    if (np_ is not None and _has_variables(g)) or (ng is not None and _has_variables(p)):
        return False, "numeric"  # a number never equals an expression in x; skip sympy
    sp, sg = _parse_structure(p), _parse_structure(g)
    for mine, other, flip in ((sp, g, False), (sg, p, True)):
        if mine is not None and mine.kind == "list" and len(_distinct(mine.items)) == 1:
            # "15\frac{39}{40}, or \frac{639}{40}": one answer given in two forms
            one = mine.items[0]
            return _compare(other, one) if flip else _compare(one, other)
    if sp is not None and sg is not None:
        verdict = _compare_structures(sp, sg)
        if verdict is not None:
            return verdict, "structure"
    if (sp is None) != (sg is None) and (np_ is not None or ng is not None):
        return False, "structure"  # a list, interval or matrix is never a single number
    lp, lg = _free_letters(p), _free_letters(g)
    if lp is not None and lg is not None and bool(lp) != bool(lg):
        return False, "variables"  # an expression in x never equals a constant
    if _math_verify_equal(p, g):
        return True, "math_verify"
    decimal = (np_ is not None and not np_.exact) or (ng is not None and not ng.exact)
    if decimal and not lp and not lg and _sympy_equal(p, g):
        return True, "sympy"  # decimals vs closed forms, where math-verify's rounding is strict
    return False, "all"


def compare(pred: str, gold: str) -> tuple[bool, str]:
    """Whether two *extracted* answers are equivalent, and which comparator decided.

    Not time-bounded by itself: use :func:`check_answer` (one pair, main thread) or
    :func:`check_pairs` (many pairs, worker processes) for anything untrusted.
    """
    return _compare(pred, gold)
