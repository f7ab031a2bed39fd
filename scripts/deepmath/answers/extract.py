"""Where the final answer is in a response: boxes, "The answer is", ``</think>``.

Extraction is plain string code with no imports beyond ``re``, so the data-pulling stages can
use :func:`extract_boxed` without paying for a computer algebra system.
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


def boxes(text: str | None) -> list[tuple[int, int, str | None]]:
    """Every ``\\boxed{...}`` / ``\\fbox{...}`` (or ``\\boxed 5``) in order of position.

    Each entry is ``(start, end, content)``: ``end`` is just past the box, ``content`` is None
    for a box whose braces never close (its ``end`` is then the end of the text).
    """
    if not text:
        return []
    found: list[tuple[int, int, str | None]] = []
    for cmd in _BOX_COMMANDS:
        start = text.find(cmd)
        while start != -1:
            after = start + len(cmd)
            if not text[after : after + 1].isalpha():  # \boxedsomething is another macro
                content, end = _boxed_content(text, after)
                found.append((start, end, content))
            start = text.find(cmd, after)
    return sorted(found)


def extract_boxed(text: str | None) -> str | None:
    """Content of the last ``\\boxed{...}`` / ``\\fbox{...}`` (or ``\\boxed 5``), else None.

    Only the very last box counts (models often box intermediate results); if that last box is
    unbalanced the answer is None rather than an earlier box, because the final answer was cut.
    """
    found = boxes(text)
    return found[-1][2] if found else None


# What may stand between boxes that together state one answer: "\boxed{3}, \boxed{5}",
# "$\boxed{(1,4)}$ \text{ and } $\boxed{(7,3)}$", "\boxed{2} or \boxed{-2}",
# "\boxed{(3, 3)} \text{ for part (a) and } \boxed{(1, 1)}".
_BOX_GLUE = re.compile(
    r"(?:\s|[,;&$]|\\\\|\\[,;:! ]|\\q?quad|\\[()\[\]]"
    r"|\\text\{\s*(?:for\s+part\s*\(?[a-z\d]\)?\s*)?(?:and|or|,)?\s*\}"
    r"|\b(?:and|or)\b|(?:[a-zA-Z]|\\[a-zA-Z]+)(?:_\{?\w+\}?)?\s*=)*"
)


def extract_final_boxes(text: str | None) -> str | None:
    """The last box, joined with the boxes right before it that state the same answer.

    "\\boxed{3}, \\boxed{5}" answers "3, 5": boxes separated only by commas, spaces, math
    delimiters or "and"/"or" are one answer, listed. A box followed by more words ("\\boxed{4}
    cm. So the final answer is \\boxed{8}") is an earlier result: only the last cluster counts.
    """
    found = boxes(text)
    if not found or found[-1][2] is None:
        return None
    assert text is not None
    outer: list[tuple[int, int, str | None]] = []  # a box inside another box is part of it
    for box in found:
        if outer and box[0] < outer[-1][1]:
            continue
        outer.append(box)
    cluster: list[str] = []
    for i in range(len(outer) - 1, -1, -1):
        content = outer[i][2]
        if content is None:
            break
        cluster.append(content)
        if i == 0 or not _BOX_GLUE.fullmatch(text[outer[i - 1][1] : outer[i][0]]):
            break
    cluster = [c for c in reversed(cluster) if c]
    return ", ".join(cluster) if cluster else ""


def _boxed_content(text: str, after: int) -> tuple[str | None, int]:
    """A box's content and where the box ends; (None, len(text)) when its brace never closes."""
    rest = text[after:]
    stripped = rest.lstrip()
    if stripped.startswith("{"):
        open_at = after + (len(rest) - len(stripped))
        close = _matching_brace(text, open_at)
        if close is None:
            return None, len(text)
        return text[open_at + 1 : close].strip(), close + 1
    if rest.startswith(" "):
        m = re.match(r"\s+([^\s$]+)", rest)
        if m:
            return m.group(1).strip(), after + m.end()
    return None, after


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
_ANSWER_IS = re.compile(
    r"(?i)the\s+(?:final\s+|correct\s+)?(?:answer|option|choice)\s+is\s*:?[ \t]*"
)
# "Answer: 12", "**Final Answer:** $7$", "Final answer - 3" at the start of a line or sentence.
_ANSWER_LABEL = re.compile(
    r"(?im)(?:^|(?<=[.!?,;]\s))[ \t>#*_]*(?:final\s+)?answer[ \t*_]*(?::|：|-|\u2014)[ \t*_]*"
)
# "**Final Answer**" as a heading: the answer is on the next line.
_ANSWER_HEADING = re.compile(r"(?im)^[ \t>#*_]*final\s+answer[ \t*_:]*\n\s*")
# A response that is nothing but a choice letter: "**(C)**", "c." (other short texts are left
# to math-verify, which reads more of them than a letter).
_ONLY_LETTER = re.compile(r"[\s*_$]*(\(?[A-Ea-e]\)?)[\s*_$.]*")
# A concluding sentence: "Hence $y \leq 2$ is the solution.", "So, $x = 5$."
_CONCLUSION = re.compile(
    r"(?i)(?:^|(?<=[.!?:]\s)|(?<=\n))[ \t*_]*(?:hence|therefore|thus|so|finally|consequently)\b"
)
_ENDS_ON_VALUE = re.compile(
    r"\b(?:is|are|equals|be|gives|get|obtain)\s*:?\s*\$([^$]+)\$\s*[.!]?\s*$", re.I
)
_INLINE_MATH = re.compile(r"\$\$(.+?)\$\$|\$(.+?)\$|\\\((.+?)\\\)|\\\[(.+?)\\\]", re.S)
_MATH_GLUE = re.compile(r"(?:\s|[,;]|\band\b|\bor\b)*")


def _stated_math(segment: str) -> str | None:
    """The math a statement commits to: its inline math run (joined), else None.

    "$x = 3$ and $y = 2$" states "x = 3, y = 2"; math runs separated by other words ("$5$ since
    $5 > 3$") keep only the first, which is what the sentence is about.
    """
    found = [
        (m.start(), m.end(), next(g for g in m.groups() if g is not None))
        for m in _INLINE_MATH.finditer(segment)
    ]
    if not found:
        return None
    run = [found[0][2].strip()]
    for (_, end, _), (start, _, content) in zip(found, found[1:], strict=False):
        if not _MATH_GLUE.fullmatch(segment[end:start]):
            break
        run.append(content.strip())
    run = [r for r in run if r]
    return ", ".join(run) if run else None


# A sentence that opens with a word names what it states: "The largest $n$ is 34."
_PROSE = re.compile(r"[ \t*_]*(?:[A-Za-z][a-z]+|I)\b")
# A sentence that opens with its value: "34 is the largest such $n$.", "3 cannot be the answer".
_VALUE_FIRST = re.compile(
    r"[ \t*_]*(\$[^$]+\$|[+-]?\d[\d.,/]*)\s+"
    r"(?:(?P<denied>(?:is|are|was|were)n't|cannot|can't|can\s+not|could\s+not|couldn't"
    r"|does\s+not|doesn't|do\s+not|don't|fails?)|(?:is|are|was|were|must\s+be))\b"
)
# What a value-first sentence must say of its value for the value to be the answer.
_AFFIRMS = re.compile(
    r"(?i)\s*(?:(?:indeed|also|therefore|thus|hence|then|exactly|precisely)\s+)?"
    r"(?:the|our|my|correct|right)\b"
)
# A judgment that takes the value back: "is the wrong answer", "is not the largest".
_JUDGED = re.compile(
    r"(?i)\b(?:not|no|never|wrong|incorrect|false|impossible|invalid|extraneous|excluded"
    r"|rejected|neither|nor|too)\b"
)
# Where the predicate of a value-first sentence ends: "3 is wrong; we get 5".
_CLAUSE_END = re.compile(
    r"[;,:.!?\u2014]|\s-\s|\b(?:but|so|and|instead|hence|thus|therefore|since|because|as)\b"
)
# What leads into a corrected value: "; so", ", but instead".
_CORRECTION_LEAD = re.compile(
    r"(?:[\s;,:.!?\u2014-]|\b(?:but|so|and|instead|rather|hence|thus|therefore|actually)\b)*"
)
_IS_VALUE = re.compile(r"\b(?:is|are|equals|was|were)\s+(?:equal\s+to\s+)?:?\s*(?=[$\d+-]|\\\()")
_NUMBER_WORD = re.compile(r"(?<![\w.])[+-]?\d+(?:\.\d+)?(?![\w.]|\.\d)")
# A statement that opens with a parenthesised choice letter: "(c) $12$", "(B) 7 apples".
_LETTER_FIRST = re.compile(r"[ \t*_]*\([A-Ea-e]\)\s")
# "$k$ is ...": a math run with a letter and no value in it names what follows.
_NAMED_BY_MATH = re.compile(r"[ \t*_]*\$[^$=\d]*[a-zA-Z][^$=\d]*\$\s*$")
# Where a stated value ends and its justification begins: "5 ways, since 5 is prime".
_REASON = re.compile(r",?\s+(?:since|because|as|which|so|for|when|where)\b")
_NEGATION = re.compile(r"(?i)\b(?:not|no|none|never|neither|nor|between)\b")


def _prose_value(sentence: str) -> str | None:
    """The value a prose sentence states: what follows its first "is" ("The value of $k$ is
    $\\frac12$" states \\frac12), else its one number ("Jane started 3 hours ago"), else None.

    A sentence opening with math or a number is not prose, and one that negates or gives a
    range ("not 3", "between 3 and 5") states no single value.
    """
    if _NEGATION.search(sentence):
        return None
    # an "is" inside math is not the sentence's: blank each math run but its opening "$"
    outside = _INLINE_MATH.sub(lambda m: "$" + " " * (len(m.group(0)) - 1), sentence)
    m = _IS_VALUE.search(outside)
    prose = _PROSE.match(sentence) is not None
    if m and (prose or _NAMED_BY_MATH.match(sentence[: m.start()])):
        rest = _REASON.split(sentence[m.end() :], maxsplit=1)[0]
        math = _stated_math(rest) if re.match(r"\$|\\\(", rest) else None
        return math or re.sub(r"[.\s]+$", "", rest).strip() or None
    if not prose or _INLINE_MATH.search(sentence):
        return None
    numbers = _NUMBER_WORD.findall(sentence.rstrip().rstrip(".!?"))  # "we get 5." states 5
    return numbers[0] if len(numbers) == 1 else None


def _is_value(written: str) -> bool:
    """Whether what opens a sentence is a value ("34", "$\\frac12$", "$x = 1$"), not a name
    ("$k$ is ...", which the words after "is" give a value to)."""
    math = strip_math_delimiters(written)
    return "=" in math or not re.search(r"[a-zA-Z]", re.sub(r"\\[a-zA-Z]+", "", math))


def _value_first(line: str, first: re.Match[str]) -> str | None:
    """The answer of a line that opens with a value: the value when the line states it as the
    answer ("34 is the largest such $n$", "12 is the answer"), else the value given after it
    ("3 is wrong; we get 5" answers 5), else None.

    A value that is judged ("is wrong", "cannot be", "is the wrong answer") or only described
    ("5 is prime") is not stated as the answer: reading it would credit a rejected value.
    """
    clause = _CLAUSE_END.search(line, first.end())
    end = clause.start() if clause else len(line)
    said = line[first.end() : end]
    affirmed = not said.strip() or bool(_AFFIRMS.match(said) and not _JUDGED.search(said))
    if affirmed and first.group("denied") is None:
        return strip_math_delimiters(first.group(1))
    rest = line[_CORRECTION_LEAD.match(line, end).end() :]
    if not re.search(r"\d|\$|\\[(\[]|\\(?:boxed|fbox)\b", rest):
        return None
    return _statement(rest, 0) or None


def _statement(text: str, at: int) -> str | None:
    """The rest of the line from ``at``, cut at the end of its sentence; None when the line
    takes back the value it opens with and states no other ("3 is wrong.")."""
    line = text[at:].split("\n", 1)[0][:500]
    inner = extract_final_boxes(line)
    if inner is not None:
        return inner
    sentence = re.split(r"(?<=[.!?])\s", line, maxsplit=1)[0]
    if _LETTER_FIRST.match(sentence):  # "(c) $12$": the choice letter, with what it says
        return re.sub(r"[.\s]+$", "", sentence).strip()
    first = _VALUE_FIRST.match(line)
    if first and _is_value(first.group(1)):
        return _value_first(line, first)
    prose = _prose_value(sentence)
    if prose is not None:
        return prose
    math = _stated_math(line)
    if math is not None:
        return math
    ans = re.split(r"\.\s", line, maxsplit=1)[0].strip()
    ans = re.sub(r"[.\s]+$", "", ans).strip("*_ ")
    return strip_math_delimiters(ans)


def extract_answer_is(text: str | None) -> str | None:
    """The X of the last "The answer is: X" sentence, else None.

    X runs to the end of its line or sentence (a full stop followed by a space); a full stop
    right at the end belongs to the sentence, not to the answer. Inline math in X is the answer
    ("The final answer is $20{,}310$." states 20{,}310).
    """
    if not text:
        return None
    last = None
    for m in _ANSWER_IS.finditer(text):
        last = m
    if last is None:
        return None
    return _statement(text, last.end()) or None


def extract_stated(text: str | None) -> str | None:
    """An answer stated without a box: the last "Answer: X" / "The answer is X" / "#### X",
    else the math of the last concluding sentence ("Hence $y \\leq 2$ is the solution.").

    The last resort for responses that never box their answer; consumers whose policy demands
    a box do not call it.
    """
    if not text:
        return None
    marks = [(m.end(), "label") for m in _ANSWER_LABEL.finditer(text)]
    marks += [(m.end(), "is") for m in _ANSWER_IS.finditer(text)]
    marks += [(m.end(), "gsm8k") for m in re.finditer(r"####[ \t]*", text)]
    marks += [(m.end(), "heading") for m in _ANSWER_HEADING.finditer(text)]
    if marks:
        at, _kind = max(marks)
        found = _statement(text, at)
        if found is None:
            return None  # the final answer rejects its value: no earlier result stands in
        if found:
            return found
    only = _ONLY_LETTER.fullmatch(text)
    if only:
        return only.group(1)
    display = _display_at_end(text)
    if display:
        return display
    last = None
    for m in _CONCLUSION.finditer(text):
        last = m
    if last is not None:
        line = text[last.end() :].split("\n", 1)[0][:500]
        sentence = re.split(r"(?<=[.!?])\s", line, maxsplit=1)[0]
        found = _stated_math(sentence)
        if found:
            return found
    m = _ENDS_ON_VALUE.search(text)  # "..., the quotient is $x^5 - 1$." as the last words
    return m.group(1).strip() if m else None


def _display_at_end(text: str) -> str | None:
    """The content of a display block (``$$...$$``, ``\\[...\\]``) that ends the text, else None.

    A response whose last thing is displayed math, with no box and no "Answer:", states it.
    """
    tail = text.rstrip().rstrip(".").rstrip()
    for left, right in (("$$", "$$"), ("\\[", "\\]")):
        if tail.endswith(right):
            start = tail.rfind(left, 0, len(tail) - len(right))
            if start != -1:
                content = tail[start + len(left) : len(tail) - len(right)].strip()
                return _unaligned(content).rstrip(".,; ") or None
    return None


def _unaligned(math: str) -> str:
    """An ``aligned`` block as the chain it writes: ``x &= 2+3 \\\\ &= 5`` is ``x = 2+3 = 5``."""
    m = re.fullmatch(r"\\begin\{(aligned|align\*?|gathered|split)\}(.*)\\end\{\1\}", math, re.S)
    if m is None:
        return math
    return re.sub(r"\s+", " ", re.sub(r"\\\\|&", " ", m.group(2))).strip()


def extract_answer(text: str | None, *, think: bool = False, stated: bool = False) -> str | None:
    """The final answer of a solution: the last box (with the boxes listed right before it),
    else "The answer is X", else (``stated=True``) an answer stated without a box, else None.

    ``think=True`` first keeps only the text after the last ``</think>`` (None if absent).
    Empty boxes count as no answer.
    """
    if think:
        text = after_think(text)
    if not text:
        return None
    boxed = extract_final_boxes(text)
    if boxed:
        return boxed
    if boxed is None and boxes(text):
        return None  # the last box was cut off: the final answer is missing
    if stated:
        return extract_stated(text)
    return extract_answer_is(text)


def strip_math_delimiters(s: str) -> str:
    s = s.strip()
    for left, right in (("$$", "$$"), ("$", "$"), ("\\(", "\\)"), ("\\[", "\\]")):
        if s.startswith(left) and s.endswith(right) and len(s) >= len(left) + len(right):
            s = s[len(left) : len(s) - len(right)].strip()
    return s
