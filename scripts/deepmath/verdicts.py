"""Parsers for LLM answers: judge verdicts, difficulty ratings, rewrite forms, topic paths.

Why one module: these are the places where a model's free text becomes data. Each parser
returns None for text it cannot read (the caller counts those and applies the config's
policy); none of them raises on hostile input.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

_THINK_END = "</think>"

_VERDICT = re.compile(r"\b(true|false|yes|no|same|different|not the same)\b", re.IGNORECASE)
_YES = {"true", "yes", "same"}


def strip_reasoning(text: str | None) -> str:
    """Drop a reasoning block (everything up to the last </think>) if a model emitted one."""
    if not text:
        return ""
    return text.rsplit(_THINK_END, 1)[1] if _THINK_END in text else text


def parse_judge(text: str | None) -> bool | None:
    """True if the judge says the two problems are the same, False if not, None if unclear.

    The first verdict word counts ("True. They are not the same..." reads as True), since the
    prompt asks for one word first.
    """
    match = _VERDICT.search(strip_reasoning(text)[:2000])
    if not match:
        return None
    return match.group(1).lower() in _YES


_SCORE_LINE = re.compile(
    r"(?:score|rating|difficulty)\s*(?:is|of|=|:)?\s*\**\s*(\d+(?:\.\d+)?)(?![\d.eE])"
    r"(?:\s*/\s*(\d+))?",
    re.IGNORECASE,
)
_BOXED_NUM = re.compile(r"\\boxed\{\s*(\d+(?:\.\d+)?)\s*\}")


def _snap_rating(value: float) -> float | None:
    if not math.isfinite(value) or value < 1 or value > 10:
        return None
    return round(value * 2) / 2


def parse_rating(text: str | None) -> float | None:
    """The rating on the AoPS 1-10 scale in 0.5 steps, or None.

    Takes the last "Score: X" (the prompt asks for it after the summary), else a boxed number;
    values outside 1-10 are rejected, others snapped to the nearest half point.
    """
    body = strip_reasoning(text)
    if "=== report over ===" in body:
        body = body.split("=== report over ===", 1)[0]
    lines = _SCORE_LINE.findall(body)
    if lines:
        value, scale = lines[-1]
        if scale and scale != "10":
            return None  # "Rating: 3.3/5" is on some other scale, not the rubric's 1-10
        return _snap_rating(float(value))
    boxed = _BOXED_NUM.findall(body)
    return _snap_rating(float(boxed[-1])) if boxed else None


@dataclass(frozen=True)
class RewriteVerdict:
    """What the rewriter decided for one item."""

    keep: bool
    reason: str
    question: str | None
    answer: str | None


_FIELD = re.compile(
    r"^\s*\**\s*(verdict|reason|question|answer)\s*(?::\s*\**|\**\s*:)[ \t]*", re.IGNORECASE | re.M
)


def parse_rewrite(text: str | None) -> RewriteVerdict | None:
    """Read the 'Verdict / Reason / Question / Answer' form; None if there is no verdict."""
    body = strip_reasoning(text)
    marks = list(_FIELD.finditer(body))
    fields: dict[str, str] = {}
    for i, mark in enumerate(marks):
        end = marks[i + 1].start() if i + 1 < len(marks) else len(body)
        name = mark.group(1).lower()
        fields.setdefault(name, body[mark.end() : end].strip())
    verdict = fields.get("verdict", "").split()
    if not verdict:
        return None
    word = verdict[0].strip("*.:").upper()
    if word not in {"KEEP", "DROP"}:
        return None
    keep = word == "KEEP"
    question = fields.get("question") or None
    if keep and not question:
        return None  # a KEEP without a question is not usable
    return RewriteVerdict(keep, fields.get("reason", ""), question, fields.get("answer") or None)


def _topic_key(path: str) -> str:
    parts = [p.strip().lower() for p in re.split(r"\s*(?:->|→|>)\s*", path) if p.strip()]
    return " -> ".join(parts)


def parse_topic(text: str | None, allowed: Sequence[str], min_similarity: float = 90) -> str | None:
    """The allowed topic path the answer names, or None.

    Exact match first (case and arrow spacing ignored), then a topic path that appears inside
    the answer, then the closest path by fuzzy matching above ``min_similarity``.
    """
    body = strip_reasoning(text).strip()
    if not body:
        return None
    keys = {_topic_key(t): t for t in allowed}
    for line in body.splitlines():
        key = _topic_key(line.strip().strip("`*.\"'"))
        if key in keys:
            return keys[key]
    lowered = _topic_key(body)
    inside = [k for k in keys if k in lowered]
    if inside:
        return keys[max(inside, key=len)]
    from rapidfuzz import fuzz, process

    first = _topic_key(body.splitlines()[0])
    best = process.extractOne(first, list(keys), scorer=fuzz.ratio)
    if best and best[1] >= min_similarity:
        return keys[best[0]]
    return None


_YES_NO = {"yes", "no", "true", "false"}
_PROOF = re.compile(
    r"\b(prove|proof|show that|demonstrate that|justify|explain why|verify that)\b", re.IGNORECASE
)


def is_yes_no(answer: str | None) -> bool:
    """The paper's known leak: ~18% of DeepMath answers are Yes/No/True/False."""
    if not isinstance(answer, str) or not answer:
        return False  # missing (None, or NaN from a parquet null)
    text = re.sub(r"\\text\{([^}]*)\}", r"\1", answer).strip(" $.").lower()
    return text in _YES_NO


def is_proof_like(question: str | None) -> bool:
    """Questions asking for a proof or justification rather than a value."""
    return isinstance(question, str) and bool(_PROOF.search(question))
