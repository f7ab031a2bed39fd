"""The authors' correctness rules: eval (per benchmark) and RL reward (per training recipe).

Eval, every benchmark: correct when any branch accepts, tried in order

* (A) ``math_equal`` on the last ``\\boxed{…}``,
* (B) ``math_equal`` on "The answer is: X" ending the response,
* (C) math-verify: ``verify(parse("\\boxed{$" + gold + "}$"), parse(response))`` on the whole
  response (the gold wrapping is the authors' own, odd as it is),

plus (D) for two benchmarks: the OlympiadBench judge on the text after ``</think>`` at precision
1e-8 (rule ``olympiad``), or PolyMath's judge on the whole response (rule ``polymath``).

Reward: gate ``think`` (no ``</think>`` -> rejected; the text after the LAST ``</think>`` is
scored) or ``one_box`` (the response must hold exactly one ``\\boxed``); then (A) on the scored
text OR (C) with the gold wrapped ``\\boxed{$gold$}``; each check bounded to 10 s and math-verify's
comparison to 3 s, as the authors' Ray calls were; an overrun or an error rejects that check.

A branch that raises is skipped; when nothing accepts and a branch raised, the verdict says
``"error"`` (the authors' eval script would have stopped on such a pair).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from deepmath.answers.authors import extract, grader

RULES = ("general", "olympiad", "polymath")
GATES = ("think", "one_box", "none")  # none: ours, the CPU demo (its small model writes neither)
OLYMPIAD_PRECISION = 1e-8
REWARD_CHECK_TIMEOUT_S = 10.0  # the ray.get bound of each reward check
REWARD_VERIFY_TIMEOUT_S = 3  # math-verify's timeout_seconds in the reward
THINK_END = "</think>"


@dataclass(frozen=True)
class Verdict:
    """One pair's verdict: correct, which branch accepted it, and the (A) extraction."""

    correct: bool
    via: str  # "boxed" | "answer_is" | "math_verify" | "olympiad" | "polymath" | "" | "error"
    pred: str | None


def gold_text(gold: Any) -> str:
    """The gold as the authors compared it: a one-item list is its item, anything else str()."""
    if isinstance(gold, list):
        if len(gold) != 1:
            raise ValueError(f"a list gold must have exactly one item, got {len(gold)}: {gold!r}")
        return str(gold[0])
    return str(gold)


def math_verify_eval(response: str, gold: str) -> bool:
    """(C) as in the authors' eval: gold wrapped ``\\boxed{$gold}$``, default configs."""
    from math_verify import parse, verify

    with grader.rearm_after():
        return bool(verify(parse("\\boxed{$" + gold + "}$"), parse(response)))


def _olympiad(response: str, gold: str, precision: float | None) -> bool:
    """(D) OlympiadBench: its judge on the text after ``</think>`` (between the first two)."""
    from deepmath.answers.authors import olympiad

    text = response.split(THINK_END)[1].strip() if THINK_END in response else response
    return bool(olympiad.judge(gold, text, OLYMPIAD_PRECISION if precision is None else precision))


def _polymath(response: str, gold: str) -> bool:
    """(D) PolyMath: its own judge on the whole response."""
    from deepmath.answers.authors import polymath

    return bool(polymath.judge(gold, response))


def eval_verdict(
    response: str, gold: Any, rule: str = "general", precision: float | None = None
) -> Verdict:
    """The authors' eval verdict for one response under a benchmark's rule."""
    if rule not in RULES:
        raise ValueError(f"rule {rule!r} is not one of {', '.join(RULES)}")
    gold = gold if isinstance(gold, str) else gold_text(gold)
    pred = extract.last_boxed(response)
    branches: list[tuple[str, Callable[[], bool]]] = [
        ("boxed", lambda: grader.math_equal(pred, gold)),
        ("answer_is", lambda: grader.math_equal(extract.answer_is(response), gold)),
        ("math_verify", lambda: math_verify_eval(response, gold)),
    ]
    if rule == "olympiad":
        branches.append(("olympiad", lambda: _olympiad(response, gold, precision)))
    elif rule == "polymath":
        branches.append(("polymath", lambda: _polymath(response, gold)))
    failed = False
    for via, check in branches:
        try:
            if check():
                return Verdict(True, via, pred)
        except Exception:
            failed = True
    return Verdict(False, "error" if failed else "", pred)


def _bounded(check: Callable[[], bool]) -> bool:
    """A reward check under its 10 s bound: an overrun or any error counts as not correct."""
    try:
        with grader.time_limit(REWARD_CHECK_TIMEOUT_S, grader.Deadline):
            return bool(check())
    except (Exception, grader.Deadline):
        return False


def _reward_math_verify(text: str, gold: Any) -> bool:
    """(C) as in the reward: both sides parsed unbounded (math-verify's own parse timeout),
    then ``verify`` with timeout_seconds=3 under the 10 s bound; gold wrapped ``\\boxed{$gold$}``.
    """
    from math_verify import parse, verify

    try:
        with grader.rearm_after():
            target = parse(text)
            wrapped = parse(f"\\boxed{{${gold}$}}")
        with grader.time_limit(REWARD_CHECK_TIMEOUT_S, grader.Deadline), grader.rearm_after():
            return bool(verify(wrapped, target, timeout_seconds=REWARD_VERIFY_TIMEOUT_S))
    except (Exception, grader.Deadline):
        return False


def reward_verdict(response: str, gold: str, gate: str = "think") -> Verdict:
    """The authors' reward verdict (+1 when correct, -1 otherwise) for one rollout."""
    if gate == "think":
        if THINK_END not in response:
            return Verdict(False, "", None)
        text = response.split(THINK_END)[-1]
    elif gate == "one_box":
        if response.count("\\boxed") != 1:
            return Verdict(False, "", None)
        text = response
    elif gate == "none":  # no format condition: the authors' check on the whole response
        text = response
    else:
        raise ValueError(f"gate {gate!r} is not one of {', '.join(GATES)}")
    try:
        pred = extract.last_boxed(text)
    except Exception:
        pred = None
    if _bounded(lambda: grader.math_equal(pred, gold)):
        return Verdict(True, "boxed", pred)
    if _reward_math_verify(text, gold):
        return Verdict(True, "math_verify", pred)
    return Verdict(False, "", pred)
