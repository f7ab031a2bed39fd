"""One bounded check: extract, compare, and report why, within a time budget.

sympy can hang on innocent-looking inputs (``10^{10^{10}}`` is computed exactly, in C, where
no signal reaches it). :func:`check_answer` bounds a check with a ``SIGALRM`` timer when it runs
in a main thread; :mod:`deepmath.answers.pool` adds a hard kill for what a signal cannot stop.
"""

from __future__ import annotations

import re
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from deepmath.answers.equivalence import (
    _ZERO_DENOMINATOR,
    DECISIVE,
    _compare,
    _math_verify,
    _mv_parse,
    _primes,
    mv_parse_text,
)
from deepmath.answers.extract import (
    _stated_math,
    after_think,
    boxes,
    extract_answer,
    extract_answer_is,
    extract_boxed,
    extract_final_boxes,
    extract_stated,
    strip_math_delimiters,
)
from deepmath.answers.judges import (
    JUDGES,
    OLYMPIAD_PRECISION,
    _letter_of,
    choice_letter,
    gold_letter,
    olympiad_judge,
    polymath_judge,
)
from deepmath.answers.normalize import _key, normalize_answer
from deepmath.answers.values import _parse_structure

MATCH = "match"


MISMATCH = "mismatch"


TIMEOUT = "timeout"


NO_ANSWER = "no_answer"


ERROR = "error"


REASONS = (MATCH, MISMATCH, TIMEOUT, NO_ANSWER, ERROR)


DEFAULT_TIMEOUT_S = 5.0


class CheckTimeout(BaseException):  # noqa: N818 - it is a signal, not an error
    """Raised by the check timer. A BaseException so math-verify/sympy cannot swallow it."""


@dataclass
class _Budget:
    """Records whether the timer fired, in case some library swallowed the exception."""

    fired: bool = False


def is_equiv(pred: str | None, gold: str | None, *, timeout_s: float = DEFAULT_TIMEOUT_S) -> bool:
    """True if two extracted answers are equivalent; False on mismatch, timeout or error."""
    return check_answer(pred, gold, extract=False, timeout_s=timeout_s).equivalent


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


THINK_MODES = ("whole", "prefer", "require")


def scored_text(response: str | None, think: bool | str = False) -> str | None:
    """The part of a response that is scored.

    ``"require"`` (or True): only what follows the last ``</think>``, None when there is none;
    ``"prefer"``: that part when there is one, else the whole response; ``"whole"`` (or False):
    the whole response, thinking included.
    """
    mode = {True: "require", False: "whole"}.get(think, think)  # type: ignore[call-overload]
    if mode not in THINK_MODES:
        raise ValueError(f"think={think!r}; allowed: {', '.join(THINK_MODES)}")
    if not response or mode == "whole":
        return response
    tail = after_think(response)
    if tail is None and mode == "prefer":
        return response
    return tail


# Words that may stand between a gold's boxes that together state one answer: "\boxed{1}
# papers and \boxed{2} bins". A reference answer does not box intermediate results.
_GOLD_GLUE = re.compile(r"[\s,;$]*(?:[A-Za-z]+[\s,;$]*){0,3}")  # no full stop: one sentence
# A gold with no box that says "the answer is" / "Answer:" is a whole solution, not an answer.
_SAYS_ANSWER = re.compile(r"(?i)\banswer\s*(?:is\b|:)")


def gold_answer(gold: str) -> str:
    """The answer a gold string states: its boxes when it has some (several are listed, also
    when a few words name each: "\\boxed{1} papers and \\boxed{2} bins"), the answer a whole
    written-out solution states ("Final Answer: The final answer is $28\\%$"), else itself.
    """
    found = boxes(gold) if "\\boxed" in gold or "\\fbox" in gold else []
    if len(found) >= 2 and all(b[2] for b in found):
        between = [gold[a[1] : b[0]] for a, b in zip(found, found[1:], strict=False)]
        if all(_GOLD_GLUE.fullmatch(t) for t in between):
            return ", ".join(b[2] for b in found if b[2])
    boxed = extract_final_boxes(gold) if found else None
    if not boxed and _SAYS_ANSWER.search(gold):
        stated = extract_stated(gold)
        if stated:
            return strip_math_delimiters(stated)
    return strip_math_delimiters(boxed if boxed else gold.strip())


def check_answer(
    response: str | None,
    gold: str | None,
    *,
    extract: bool = True,
    think: bool | str = False,
    stated: bool = False,
    timeout_s: float | None = DEFAULT_TIMEOUT_S,
    fallback_full_text: bool = False,
    rescue: bool = False,
    judges: tuple[str, ...] | list[str] = (),
    choice: bool = False,
    precision: float | None = None,
) -> Result:
    """Check one prediction against one gold answer, bounded in time.

    ``extract=True`` treats ``response`` as a full solution (the last box with the boxes listed
    right before it, else "The answer is", else with ``stated=True`` an answer stated without a
    box); ``extract=False`` treats it as an already-extracted answer. ``think`` picks the scored
    part (:func:`scored_text`). The verdict is the normalising comparator's, OR, with
    ``fallback_full_text=True``, math-verify's on the whole scored text against the gold (its
    own extraction, the DeepMath reward's second check), unless the comparator's "unequal" was
    final (:data:`~deepmath.answers.equivalence.DECISIVE`) or a guard finds that math-verify read
    only part of an answer (:func:`_math_verify_text`). ``rescue=True`` also accepts a right
    "The answer is X" sentence when the last box is wrong (the authors' evaluation ORs both).

    ``choice=True`` (multiple-choice benchmarks) reads the letter the response commits to
    (:func:`~deepmath.answers.judges.choice_letter`); when there is one and the gold is a letter,
    the letters alone decide (method ``choice``), as they do for the authors: a letter is not
    an expression that math-verify might read another way. Without a letter the usual path
    runs. ``judges`` names benchmark judges OR-ed in, in order, when the usual path says
    unequal: ``"olympiad"`` (OlympiadBench's official judge on the text after the last
    ``</think>``, else the whole response, with the problem's ``precision``, default 1e-8) and
    ``"polymath"`` (PolyMath's first-box check on the whole response); see
    :mod:`deepmath.answers.judges`.
    :mod:`deepmath.answers.policy` has each consumer's choice of these options.

    The bound is a ``SIGALRM`` timer, so it only applies in a main thread (e.g. inside a
    worker process of :func:`check_pairs`); elsewhere the check runs unbounded, so call this
    directly only from a process you can afford to lose, or use :func:`check_pairs`.
    """
    unknown = [j for j in judges if j not in JUDGES]
    if unknown:
        raise ValueError(f"judges={unknown!r}; allowed: {', '.join(JUDGES)}")
    t0 = time.perf_counter()
    budget = _Budget()
    pred: str | None = None

    def done(ok: bool, reason: str, method: str | None = None, detail: str | None = None):
        return Result(ok, reason, pred, method, detail, time.perf_counter() - t0)

    try:
        with _deadline(timeout_s, budget):
            text = scored_text(response, think) if extract else response
            if extract:
                pred = extract_answer(text, stated=stated)
            else:
                pred = response.strip() if response else None
            if gold is None or not str(gold).strip():
                return done(False, ERROR, detail="gold answer is empty")
            gold_ans = gold_answer(str(gold))
            if choice:
                letter = choice_letter(text) if extract else _letter_of(response)
                want = gold_letter(gold_ans)
                if letter is not None and want is not None:
                    pred = letter
                    ok = letter == want
                    return done(ok, MATCH if ok else MISMATCH, "choice")
            ok, method = _compare(pred, gold_ans) if pred else (False, None)
            # math-verify reads a text's last box first: when that box is the answer already
            # compared, reading the whole text again cannot change the verdict.
            boxed = pred is not None and pred == extract_boxed(text)
            if (
                not ok
                and extract
                and fallback_full_text
                and text
                and not boxed
                and (method not in DECISIVE)
            ):
                hit = _math_verify_text(text, gold_ans, pred)
                if hit is not None:
                    pred = pred or hit
                    ok, method = True, "math_verify_full_text"
            if not ok and extract and rescue and text and pred:
                said = extract_answer_is(text)
                if said and said != pred and _compare(said, gold_ans)[0]:
                    pred, ok, method = said, True, "answer_is"
            if not ok and judges:
                hit = _judged(response, gold_ans, judges, precision)
                if hit is not None:
                    method, read = hit
                    pred, ok = read or pred, True  # the record shows the answer accepted
            if not ok and not pred:
                return done(False, NO_ANSWER)
    except CheckTimeout:
        return done(False, TIMEOUT, detail=f"over {timeout_s} s")
    except (RecursionError, MemoryError) as err:
        return done(False, ERROR, detail=type(err).__name__)
    except Exception as err:  # a comparator bug must cost one pair, not a shard
        return done(False, ERROR, detail=f"{type(err).__name__}: {str(err)[:200]}")
    if budget.fired:
        return done(False, TIMEOUT, detail=f"over {timeout_s} s")
    return done(ok, MATCH if ok else MISMATCH, method)


def _judged(
    response: str | None,
    gold_ans: str,
    judges: tuple[str, ...] | list[str],
    precision: float | None,
) -> tuple[str, str | None] | None:
    """The first benchmark judge that accepts the response, and what it read; None: none does.

    Each judge sees the text its benchmark's evaluation gives it (as the authors call them):
    OlympiadBench's the part after the last ``</think>`` (else all of it), PolyMath's the whole
    response.
    """
    for name in judges:
        if name == "olympiad":
            prec = precision if precision is not None else OLYMPIAD_PRECISION
            hit, read = olympiad_judge(scored_text(response, "prefer"), gold_ans, prec)
        else:
            hit, read = polymath_judge(response, gold_ans)
        if hit:
            return name, read
    return None


def _items(answer: str) -> int:
    """How many answers an answer lists: 3 for "12, 30, 77" and for "\\{1,2,3\\}", else 1."""
    s = normalize_answer(answer)
    found = _parse_structure(s)
    if found is None or found.kind not in ("set", "list"):
        return 1
    return len(found.items)


def _math_verify_text(text: str, gold_ans: str, pred: str | None) -> str | None:
    """What math-verify reads in ``text``, when it finds it equal to the gold and no guard objects.

    math-verify extracts one expression from each side, so it can call two different lists equal
    ("12, 30, 77" and "14, 30, 77" both read as 77) or pick one of several candidates. Its
    "equal" is refused when what it read from the gold or the prediction has fewer items than
    the answer itself, when the primes differ (F vs F'), when it read a fraction over zero, and,
    with no answer extracted, when the response ends on several expressions without committing
    to one ("$x = 5$" on one line and "$x = -5$" on the next).
    """
    mv = _math_verify()
    # math-verify's regexes are quadratic in long runs of white space; one space or one blank
    # line means the same to it
    text = re.sub(r"[ \t]*\n\s*\n\s*", "\n\n", re.sub(r"[ \t]{2,}", " ", text))
    # The gold as the reward parses it, parse("\\boxed{gt}"): a bare "288\\pi" is no number.
    golds = _mv_parse(gold_ans)
    found = mv_parse_text(text)
    if not golds or not found or not mv.verify(golds, found, timeout_seconds=None):
        return None
    read_gold, read = str(golds[-1]), str(found[-1])
    if _items(read_gold) < _items(gold_ans):
        return None
    if pred is not None and _items(read) < _items(pred):
        return None
    if _primes(_key(normalize_answer(read))) != _primes(_key(normalize_answer(gold_ans))):
        return None
    if _ZERO_DENOMINATOR.search(_key(normalize_answer(read))):
        return None
    if pred is None and _uncommitted(text, read):
        return None
    return read


_CONCLUDES = re.compile(r"(?i)\b(?:so|thus|hence|therefore|answer|final|conclude|finally)\b")


def _uncommitted(text: str, read: str) -> bool:
    """Whether a response without an extracted answer ends on several candidate expressions."""
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    if not lines or _CONCLUDES.search(lines[-1]):
        return False
    last = _stated_math(lines[-1])
    if last is not None and re.match(r"\s*(?:=|\\approx)", last):
        return False  # "$= 12$" continues the line before it: one chain, one answer
    if last is not None and _items(last) > _items(read):
        return True  # "$x = 5$ or $x = -5$": two answers, math-verify took one
    return len(lines) >= 2 and last is not None and _stated_math(lines[-2]) is not None
