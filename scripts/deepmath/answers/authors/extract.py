"""Where the authors' scorer finds the answer: the last ``\\boxed{…}``, or a last-line regex.

Both are stricter than they look, and the verdicts depend on it:

* the box is the LAST ``\\boxed`` (``rfind``); braces are counted from there and the text must
  begin with ``\\boxed{``: ``\\boxed 5`` or an unclosed box gives nothing, and ``\\fbox{…}`` gives
  nothing either (the ``\\fbox`` fallback is only reached when there is no ``\\boxed`` at all, and
  then the extraction has already stopped);
* "The answer is: X" is searched with ``$`` and no MULTILINE: case-sensitive, colon and one
  space required, and only a match that runs to the end of the text (or to a final newline)
  counts, so in practice only the last line.
"""

from __future__ import annotations

import re

ANSWER_IS = re.compile(r"The answer is: (.+)$")
_BOX = "\\boxed"
_BOX_OPEN = "\\boxed{"


def _closing_brace(text: str, start: int) -> int | None:
    """Index of the first ``}`` after ``start`` that brings the brace count back to zero."""
    depth = 0
    for i in range(start, len(text)):
        if text[i] == "{":
            depth += 1
        elif text[i] == "}":
            depth -= 1
            if depth == 0:
                return i
    return None


def last_boxed(text: str) -> str | None:
    """Content of the last ``\\boxed{…}``; None when there is none or it is malformed."""
    if _BOX not in text:
        return None
    start = text.rfind(_BOX)
    end = _closing_brace(text, start)
    if end is None:
        return None
    boxed = text[start : end + 1]
    if not boxed.startswith(_BOX_OPEN):
        return None
    return boxed[len(_BOX_OPEN) : -1]


def answer_is(text: str) -> str | None:
    """X of "The answer is: X" when it ends the text (the first such match); else None."""
    found = ANSWER_IS.search(text)
    return found.group(1) if found else None
