"""Final-answer extraction and equivalence, shared by verification, rewards and evaluation.

This module starts with what the front half of the pipeline needs (reference answers from
``\\boxed{}`` and GSM8K ``####``); the equivalence checker grows here as well.
"""

from __future__ import annotations

import re

_BOX_COMMANDS = ("\\boxed", "\\fbox")


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
    """Content of the last ``\\boxed{...}`` / ``\\fbox{...}`` (or ``\\boxed 5``), else None."""
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
