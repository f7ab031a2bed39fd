"""What kind of answer each item asks for: the answer-type profile of a dataset.

An RL dataset is only as good as its checkable answers. A Yes/No or True/False answer can be
guessed half the time, a choice letter a quarter of the time, and a proof has no final answer a
rule can check: a dataset heavy in these rewards guessing. The profile sorts every item into one
answer type, in this order (the first that fits wins):

- ``proof``: the question asks for a proof ("prove", "show that", ...) whatever its answer;
- ``boolean``: Yes / No / True / False (any case, in ``\\text{}`` or ``\\boxed{}``);
- ``choice``: a lone choice letter A–E, bare or as ``(B)`` / ``\\text{(C)}``;
- ``integer``, ``decimal``, ``fraction`` (``\\frac``, ``a/b``, a mixed number): plain numbers;
- ``interval_set``: intervals, sets, unions, tuples and lists of values;
- ``expression``: formulas with variables, functions, roots, pi, ...;
- ``text``: anything else (names, words); ``missing``: no answer at all.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

import pandas as pd

from deepmath.answers.extract import strip_math_delimiters

TYPES = (
    "proof",
    "boolean",
    "choice",
    "integer",
    "decimal",
    "fraction",
    "interval_set",
    "expression",
    "text",
    "missing",
)
# The two kinds a rule can check poorly, reported together as the "guessable" share.
GUESSABLE = ("boolean", "choice")

_PROOF = re.compile(
    r"\b(prove|proof|show that|show rigorously|demonstrate that|justify (?:that|why|your)|"
    r"verify that|establish that|disprove)\b",
    re.IGNORECASE,
)
_BOOLEAN = {"yes", "no", "true", "false", "correct", "incorrect"}
_CHOICE = re.compile(r"^\(?([A-E])\)?\.?$")
_INTEGER = re.compile(r"^[+-]?\d+$")
_DECIMAL = re.compile(r"^[+-]?(\d+\.\d*|\.\d+)$")
_FRACTION = re.compile(r"^[+-]?(\d+\s*)?(\\[dt]?frac\{\s*\d+\s*\}\{\s*\d+\s*\}|\d+\s*/\s*\d+)$")
_INTERVAL = re.compile(r"^[\[(].*,.*[\])]$")
_SET = re.compile(r"\\\{|\\cup|\\cap|\\emptyset|\\varnothing|\\mathbb")
_WRAPPERS = re.compile(r"\\(?:boxed|text|textbf|mathrm|mbox|textrm)\{([^{}]*)\}")


def _plain(answer: str) -> str:
    """The answer without math delimiters, wrappers, spaces, a trailing period or ``x =``."""
    s = strip_math_delimiters(answer.strip())
    for _ in range(3):  # nested \boxed{\text{Yes}}
        s = _WRAPPERS.sub(r"\1", s)
    s = s.replace("\\!", "").replace("\\,", "").replace("\\ ", " ").strip()
    s = re.sub(r"^[A-Za-z]\s*=\s*(?=\S)", "", s) if "," not in s else s
    s = s.rstrip(".").strip()
    s = re.sub(r"(?<=\d),(?=\d{3}(?:\D|$))", "", s)  # 1,000
    return s


def answer_type(question: str | None, answer: Any) -> str:
    """One of :data:`TYPES` for a question and its final answer."""
    if question and _PROOF.search(question):
        return "proof"
    if answer is None or (isinstance(answer, float) and pd.isna(answer)):
        return "missing"
    text = str(answer).strip()
    if not text:
        return "missing"
    s = _plain(text)
    low = re.sub(r"[^a-z]", "", s.lower())
    if low in _BOOLEAN and not re.search(r"\d", s):
        return "boolean"
    if _CHOICE.match(s.replace(" ", "")):
        return "choice"
    compact = s.replace(" ", "")
    if _INTEGER.match(compact):
        return "integer"
    if _DECIMAL.match(compact):  # 43.0 (a float column) is an integer answer
        return "integer" if re.fullmatch(r"[+-]?\d+\.0*", compact) else "decimal"
    if _FRACTION.match(s.strip()):
        return "fraction"
    if _SET.search(s) or _INTERVAL.match(compact) or re.search(r"\d\s*,\s*[-\d\\]", s):
        return "interval_set"
    math_like = re.search(r"[\\^_=+*/()\d]", s) or re.fullmatch(r"[A-Za-z]", s)
    if math_like:
        return "expression"
    return "text"


def profile(questions: Iterable[str | None], answers: Iterable[Any]) -> dict[str, Any]:
    """Counts and shares per type, plus the guessable share (boolean + choice)."""
    types = pd.Series(
        [answer_type(q, a) for q, a in zip(questions, answers, strict=True)], dtype=object
    )
    counts = {t: int((types == t).sum()) for t in TYPES}
    total = int(len(types))
    shares = {t: (counts[t] / total if total else 0.0) for t in TYPES}
    return {
        "items": total,
        "counts": counts,
        "shares": shares,
        "guessable_share": sum(shares[t] for t in GUESSABLE),
    }


def profile_table(profiles: Mapping[str, Mapping[str, Any]]) -> pd.DataFrame:
    """One row per dataset: items, then the share of each type in percent."""
    rows = []
    for name, prof in profiles.items():
        row: dict[str, Any] = {"dataset": name, "items": prof["items"]}
        row.update({t: round(100 * prof["shares"][t], 2) for t in TYPES})
        row["guessable"] = round(100 * prof["guessable_share"], 2)
        rows.append(row)
    return pd.DataFrame(rows)
