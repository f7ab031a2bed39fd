"""The DeepMath RL reward, one function for every training backend (verl, TRL).

+1 when the response is correct, -1 otherwise, as the authors computed it. First a format gate:
``think`` (DeepMath-1.5B, -Zero-7B, -Omn) wants a ``</think>`` and scores only the text after
the last one; ``one_box`` (DeepMath-Zero-Math) wants exactly one ``\\boxed`` in the whole
response; ``none`` (our CPU demo, whose small model writes neither) scores the whole response.
Then correctness, by the run's ``reward_scorer``:

- ``authors`` (default): the authors' own check, (A) ``math_equal`` on the last box OR (C)
  math-verify 0.7.0 against ``\\boxed{$gold$}``, run in the authors' interpreter by the worker
  pool of :mod:`deepmath.answers.authors.pool` (one pool per process, started on first use,
  closed at exit). A pair over its time bound or a worker that fails scores -1, as their
  ``ray.get`` timeout did.
- ``ours``: the project's checker under its reward policy (:mod:`deepmath.answers.policy`) in
  a :class:`~deepmath.answers.CheckerPool`; a deviation from the paper (:data:`DEVIATIONS`).

Neither runs a check in the caller's thread: verl's reward manager and TRL may call from any
thread, and a signal timer belongs to the main thread only.

verl imports this file by path (``reward.custom_reward_function.path``) and calls
:func:`compute_score`; TRL gets :func:`trl_reward`. Both go through :func:`score_many`. The
scorer is the run's: verl passes it to :func:`compute_score` as the ``scorer`` keyword
(``reward.custom_reward_function.reward_kwargs.scorer``, part of the composed config), so a Ray
worker scores with the run's scorer whatever its environment; TRL, in-process, and verl configs
without that keyword use ``$DEEPMATH_REWARD_SCORER``. The authors' interpreter comes from
``$DEEPMATH_AUTHORS_PYTHON``. The trainers set both from the run before Ray or TRL starts, so
every Ray worker inherits them.

Worker bounds: verl 0.9 runs ``reward.num_workers`` reward processes, spread round-robin over
the nodes, and each calls :func:`compute_score` from up to ``min(32, cores + 4)`` executor
threads. Every such process has one pool, and its workers (the authors' each hold sympy, about
200 MB) number at most ``$DEEPMATH_REWARD_WORKERS``, which :func:`trainer_env` sets to the
node's cores divided by the reward processes on the busiest node (at least 1); the threads
queue for those workers. ``$DEEPMATH_REWARD_TIMEOUT_S`` overrides a pair's time bound.
"""

from __future__ import annotations

import atexit
import logging
import math
import os
import threading
from collections.abc import Mapping, Sequence
from typing import Any

log = logging.getLogger("deepmath.reward")

CORRECT = 1.0
INCORRECT = -1.0
THINK_GATE = "think"  # DeepMath-1.5B, -Zero-7B, -Omn (the authors' reward_func.py)
ONE_BOX = "one_box"  # DeepMath-Zero-Math (the authors' reward_func_2.py)
NO_GATE = "none"
GATES = (THINK_GATE, ONE_BOX, NO_GATE)

AUTHORS = "authors"
OURS = "ours"
SCORERS = (AUTHORS, OURS)
DEFAULT_SCORER = AUTHORS
SCORER_ENV = "DEEPMATH_REWARD_SCORER"
AUTHORS_PYTHON_ENV = "DEEPMATH_AUTHORS_PYTHON"  # deepmath.answers.authors.pool.PYTHON_ENV
TIMEOUT_ENV = "DEEPMATH_REWARD_TIMEOUT_S"
WORKERS_ENV = "DEEPMATH_REWARD_WORKERS"
# A pair's bound. The authors' check bounds each of its two branches at 10 s and answers
# inside that; the pool's hard kill is the backstop above both. Our checker bounds the pair.
DEFAULT_TIMEOUT_S = {AUTHORS: 30.0, OURS: 5.0}

# Run keys whose values make a run score unlike the paper; the training output lists them.
DEVIATIONS: dict[str, str] = {
    OURS: "reward_scorer: ours scores with the project's checker (deepmath.answers, reward "
    "policy) instead of the authors' math_equal OR math-verify 0.7.0: it accepts and rejects "
    "some answers differently, so rewards, and the trained model, are not the paper's",
}

_pools: dict[str, Any] = {}
_pools_pid = os.getpid()
_pools_lock = threading.Lock()
_ours_lock = threading.Lock()  # CheckerPool.map serves one call at a time


def check_scorer(scorer: str) -> str:
    if scorer not in SCORERS:
        raise ValueError(f"reward_scorer {scorer!r}; allowed: {', '.join(SCORERS)}")
    return scorer


def run_scorer(env: Mapping[str, str] | None = None) -> str:
    """The scorer of the run this process trains (``$DEEPMATH_REWARD_SCORER``, else authors)."""
    env = os.environ if env is None else env
    return check_scorer(env.get(SCORER_ENV) or DEFAULT_SCORER)


def deviations(spec: Mapping[str, Any]) -> dict[str, str]:
    """A run's reward settings that differ from the authors', with the reason (none: ``{}``)."""
    scorer = spec.get("reward_scorer") or DEFAULT_SCORER
    return {"reward_scorer": DEVIATIONS[scorer]} if scorer in DEVIATIONS else {}


def spec_scorer(spec: Mapping[str, Any]) -> str:
    """A run's ``reward_scorer`` (``rl.runs.<name>``), checked; authors when unset."""
    return check_scorer(spec.get("reward_scorer") or DEFAULT_SCORER)


def reward_processes(spec: Mapping[str, Any], env: Mapping[str, str] | None = None) -> int:
    """How many processes compute the run's reward on one node, each with its own pool.

    verl: ``reward.num_workers`` of the composed config (the recipe's ``reward_workers``, or
    the last ``verl_overrides`` entry that sets it), which verl places round-robin over the
    nodes, so the head node has the most. TRL (any in-process reward): one per rank on the node
    (``$LOCAL_WORLD_SIZE``, else 1).
    """
    env = os.environ if env is None else env
    if spec.get("backend") != "verl":
        return _int_env(env, "LOCAL_WORLD_SIZE") or 1
    from deepmath import verl_recipe

    total = int(verl_recipe.recipe(spec)["reward_workers"])
    for raw in spec.get("verl_overrides") or []:
        if isinstance(raw, str) and "=" in raw:
            key, value = raw.split("=", 1)
            if verl_recipe.override_key(key) == "reward.num_workers":
                total = _parse_int(f"rl verl_overrides {key}", value)
    nodes = max(1, int(spec.get("nodes", 1)))
    return max(1, -(-total // nodes))


def trainer_env(
    spec: Mapping[str, Any],
    authors_python: str | None = None,
    record: str | os.PathLike[str] | None = None,
    *,
    cores: int | None = None,
    env: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """What a trainer exports before its reward runs anywhere (Ray workers inherit it): the
    run's scorer, for the authors' one its interpreter (flag, record, environment, venv), and
    the bound on each reward process's pool: this node's ``cores`` over its reward processes,
    so that all of them together start no more workers than there are cores (a smaller bound
    already in ``env`` is kept)."""
    from deepmath.answers.authors import pool

    env = os.environ if env is None else env
    scorer = spec_scorer(spec)
    out = {SCORER_ENV: scorer}
    if scorer == AUTHORS:
        out[pool.PYTHON_ENV] = pool.authors_python(authors_python, record=record)
    cores = pool.default_workers() if cores is None else cores
    bound = max(1, cores // reward_processes(spec, env))
    out[WORKERS_ENV] = str(min(bound, workers_bound(env) or bound))
    return out


def scorer_versions(spec: Mapping[str, Any], env: Mapping[str, str]) -> dict[str, Any] | None:
    """The versions the run's reward is computed with (None for our checker, which runs in
    the trainer's own env): started once, so a broken interpreter fails before training does."""
    if spec_scorer(spec) != AUTHORS:
        return None
    from deepmath.answers.authors.pool import PYTHON_ENV, AuthorsPool

    with AuthorsPool(env[PYTHON_ENV], workers=1) as pool:
        hello = pool.hello()
    if not hello.get("exact"):
        log.warning(
            "the authors' scorer runs under %s with %s, not the authors' versions "
            "(requirements/authors.txt): some rewards may differ from theirs",
            env[PYTHON_ENV],
            hello.get("environment"),
        )
    return dict(hello["environment"])


def _parse_int(name: str, raw: str) -> int:
    """``raw`` as an integer >= 1, else an error that names ``name``, the value and the rule."""
    try:
        value = int(raw.strip())
    except ValueError:
        value = 0
    if value < 1:
        raise ValueError(f"{name}={raw!r}: allowed: an integer >= 1")
    return value


def _int_env(env: Mapping[str, str], name: str) -> int | None:
    raw = env.get(name)
    return _parse_int(name, raw) if raw and raw.strip() else None


def workers_bound(env: Mapping[str, str] | None = None) -> int | None:
    """``$DEEPMATH_REWARD_WORKERS``: the most workers one process's pool starts (None: unset,
    the pool's default, all this process's cores)."""
    return _int_env(os.environ if env is None else env, WORKERS_ENV)


def timeout_s(scorer: str) -> float:
    """A pair's time bound: ``$DEEPMATH_REWARD_TIMEOUT_S``, else the scorer's default."""
    raw = os.environ.get(TIMEOUT_ENV)
    if not raw or not raw.strip():
        return DEFAULT_TIMEOUT_S[scorer]
    try:
        value = float(raw.strip())
    except ValueError:
        value = math.nan
    if not (0 < value < math.inf):
        raise ValueError(f"{TIMEOUT_ENV}={raw!r}: allowed: a number of seconds > 0")
    return value


def passes_gate(response: str, gate: str) -> bool:
    """The format condition that must hold before correctness is even checked."""
    if gate == THINK_GATE:
        return "</think>" in response
    if gate == ONE_BOX:
        return response.count("\\boxed") == 1
    return True


def policy_for(gate: str) -> Any:
    """Our checker's reading of a response (deepmath.answers.policy): after the last </think>
    under the think gate, the whole response under the others."""
    from deepmath.answers import REWARD

    return REWARD if gate == THINK_GATE else REWARD.but(think="whole")


def _pool(scorer: str) -> Any:
    """This process's pool for ``scorer``: started on first use, one per process (a forked
    child starts its own), closed at exit."""
    global _pools_pid
    with _pools_lock:
        if _pools_pid != os.getpid():  # inherited through fork: the workers are the parent's
            _pools.clear()
            _pools_pid = os.getpid()
        pool = _pools.get(scorer)
        if pool is None:
            workers = workers_bound()
            if scorer == AUTHORS:
                from deepmath.answers.authors.pool import AuthorsPool

                pool = AuthorsPool(workers=workers, timeout_s=timeout_s(AUTHORS))
            else:
                from deepmath.answers import CheckerPool

                pool = CheckerPool(workers, timeout_s=timeout_s(OURS))
            _pools[scorer] = pool
        return pool


@atexit.register
def close_pools() -> None:
    """Stop this process's checker workers (also at exit)."""
    with _pools_lock:
        pools = list(_pools.values()) if _pools_pid == os.getpid() else []
        _pools.clear()
    for pool in pools:
        pool.close()


def _check(
    responses: Sequence[str], truths: Sequence[str], gate: str, scorer: str
) -> list[tuple[bool, Any, str]]:
    """(correct, pred, reason) of gated responses, all through the scorer's worker pool."""
    if not responses:
        return []
    pool = _pool(scorer)
    if scorer == AUTHORS:
        verdicts = pool.reward_verdicts(
            [(r, t, gate) for r, t in zip(responses, truths, strict=True)]
        )
        return [(bool(v.correct), v.pred, v.via) for v in verdicts]
    with _ours_lock:
        results = pool.map(list(zip(responses, truths, strict=True)), policy=policy_for(gate))
    return [(bool(r.equivalent), r.pred, r.reason) for r in results]


def score_many(
    responses: Sequence[str],
    truths: Sequence[str],
    gate: str = THINK_GATE,
    scorer: str | None = None,
) -> list[dict[str, Any]]:
    """Reward details for many responses: {score, acc, pred, reason}.

    ``acc`` is the correctness (what verl's dynamic sampling filters on), ``reason`` why:
    ``format`` (the gate failed), the branch that accepted, or ``timeout`` / ``error``.
    """
    if gate not in GATES:
        raise ValueError(f"reward gate {gate!r}; allowed: {', '.join(GATES)}")
    scorer = check_scorer(scorer) if scorer else run_scorer()
    out: list[dict[str, Any] | None] = [None] * len(responses)
    todo: list[int] = []
    for i, (resp, _) in enumerate(zip(responses, truths, strict=True)):
        if not resp or not passes_gate(resp, gate):
            out[i] = {"score": INCORRECT, "acc": False, "pred": None, "reason": "format"}
        else:
            todo.append(i)
    checked = _check([responses[i] for i in todo], [str(truths[i]) for i in todo], gate, scorer)
    for i, (correct, pred, reason) in zip(todo, checked, strict=True):
        out[i] = {
            "score": CORRECT if correct else INCORRECT,
            "acc": correct,
            "pred": pred,
            "reason": reason,
        }
    return [o for o in out if o is not None]


def score(
    response: str, ground_truth: str, gate: str = THINK_GATE, scorer: str | None = None
) -> dict[str, Any]:
    return score_many([response], [ground_truth], gate, scorer)[0]


def compute_score(
    data_source: str,
    solution_str: str,
    ground_truth: str,
    extra_info: dict[str, Any] | None = None,
    scorer: str | None = None,
    **kwargs: Any,
) -> dict[str, Any]:
    """verl's custom reward function (``reward.custom_reward_function.name: compute_score``).

    The gate comes from ``extra_info["reward_gate"]`` (set by prepare_rl_data per model), so
    one file serves DeepMath-1.5B and DeepMath-Zero-7B; the scorer from verl's
    ``reward.custom_reward_function.reward_kwargs.scorer`` (the run's, set by
    deepmath.verl_recipe, so it does not depend on what a Ray worker's environment holds),
    else from the environment.
    """
    gate = (extra_info or {}).get("reward_gate", THINK_GATE)
    return score(solution_str, ground_truth, gate, scorer)


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
