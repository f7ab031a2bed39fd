"""The DeepMath RL reward, one function for every training backend (verl, TRL).

+1 when the response is correct, -1 otherwise. The response must close its reasoning with
``</think>`` and only the text after the last one is scored (DeepMath-1.5B); the Zero-Math
variant instead requires exactly one ``\\boxed`` in the response. Correctness is the shared
checker's under its reward policy (deepmath.answers.policy): the normalising comparator on the
extracted answer OR math-verify on the whole scored text, bounded in time.

verl imports this file by path (``reward.custom_reward_function.path``) and calls
:func:`compute_score`; TRL gets :func:`trl_reward`. Both go through :func:`score`.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from typing import Any

from deepmath.answers import REWARD, CheckerPool, Policy, Result, check_answer

CORRECT = 1.0
INCORRECT = -1.0
THINK_GATE = "think"  # the DeepMath-1.5B rule
ONE_BOX = "one_box"  # the Zero-Math rule
GATES = (THINK_GATE, ONE_BOX, "none")
TIMEOUT_S = float(os.environ.get("DEEPMATH_REWARD_TIMEOUT_S", "5"))

_pool: CheckerPool | None = None
_pool_lock = threading.Lock()


def passes_gate(response: str, gate: str) -> bool:
    """The format condition that must hold before correctness is even checked."""
    if gate == THINK_GATE:
        return "</think>" in response
    if gate == ONE_BOX:
        return response.count("\\boxed") == 1
    return True


def policy_for(gate: str) -> Policy:
    """The reward's reading of a response (deepmath.answers.policy): after the last </think>
    under the DeepMath gate, the whole response under the others."""
    return REWARD if gate == THINK_GATE else REWARD.but(think="whole")


def _check(pairs: list[tuple[str, str]], policy: Policy) -> list[Result]:
    """Bounded checks: in this thread with a signal timer where possible, else in workers."""
    if threading.current_thread() is threading.main_thread() and len(pairs) == 1:
        response, gold = pairs[0]
        return [check_answer(response, gold, timeout_s=TIMEOUT_S, **policy.options())]
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = CheckerPool(timeout_s=TIMEOUT_S)
        return _pool.map(pairs, policy=policy)


def score_many(
    responses: Sequence[str], truths: Sequence[str], gate: str = THINK_GATE
) -> list[dict[str, Any]]:
    """Reward details for many responses: {score, acc, pred, reason}."""
    if gate not in GATES:
        raise ValueError(f"reward gate {gate!r}; allowed: {', '.join(GATES)}")
    out: list[dict[str, Any] | None] = [None] * len(responses)
    todo: list[int] = []
    for i, (resp, _) in enumerate(zip(responses, truths, strict=True)):
        if not resp or not passes_gate(resp, gate):
            out[i] = {"score": INCORRECT, "acc": False, "pred": None, "reason": "format"}
        else:
            todo.append(i)
    results = _check([(responses[i], str(truths[i])) for i in todo], policy_for(gate))
    for i, res in zip(todo, results, strict=True):
        out[i] = {
            "score": CORRECT if res.equivalent else INCORRECT,
            "acc": bool(res.equivalent),
            "pred": res.pred,
            "reason": res.reason,
        }
    return [o for o in out if o is not None]


def score(response: str, ground_truth: str, gate: str = THINK_GATE) -> dict[str, Any]:
    return score_many([response], [ground_truth], gate)[0]


def compute_score(
    data_source: str,
    solution_str: str,
    ground_truth: str,
    extra_info: dict[str, Any] | None = None,
    **kwargs: Any,
) -> dict[str, Any]:
    """verl's custom reward function (``reward.custom_reward_function.name: compute_score``).

    The gate comes from ``extra_info["reward_gate"]`` (set by prepare_rl_data per model), so
    one file serves DeepMath-1.5B and DeepMath-Zero-7B.
    """
    gate = (extra_info or {}).get("reward_gate", THINK_GATE)
    return score(solution_str, ground_truth, gate)


def trl_reward(
    prompts: Sequence[Any], completions: Sequence[Any], ground_truth: Sequence[str], **kwargs: Any
) -> list[float]:
    """TRL GRPOTrainer reward: dataset column ``ground_truth``, optional ``reward_gate``."""
    texts = [c if isinstance(c, str) else c[-1]["content"] for c in completions]
    gates = kwargs.get("reward_gate") or [THINK_GATE] * len(texts)
    scores: list[float] = [INCORRECT] * len(texts)
    for gate in set(gates):
        idx = [i for i, g in enumerate(gates) if g == gate]
        got = score_many([texts[i] for i in idx], [ground_truth[i] for i in idx], gate)
        for i, g in zip(idx, got, strict=True):
            scores[i] = g["score"]
    return scores
