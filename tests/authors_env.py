"""Run the authors' scorer in ``.venv-authors`` from a test (or a benchmark) in ``.venv``.

The scorer must run under the authors' versions (antlr 4.11.0 for sympy's ``parse_latex``,
math-verify 0.7.0), which ``.venv`` does not have; this helper starts ``.venv-authors/bin/python``
once per batch, sends the calls as JSON lines on stdin and reads one JSON result per call. Each
call is ``{"op": ..., "args": [...]}`` with ``op`` one of :data:`OPS`; an exception comes back as
``{"error": "<type>: <message>"}`` so a batch never stops at one bad call.
"""

from __future__ import annotations

import json
import os
import subprocess
import threading
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
AUTHORS_PYTHON = REPO / ".venv-authors" / "bin" / "python"
OPS = ("eval", "reward", "math_equal", "last_boxed", "answer_is", "normalize", "env", "is_exact")

_SERVER = r"""
import json, sys, time
from dataclasses import asdict
from deepmath.answers.authors import env, extract, grader, rules

OPS = {
    "eval": lambda *a: asdict(rules.eval_verdict(*a)),
    "reward": lambda *a: asdict(rules.reward_verdict(*a)),
    "math_equal": grader.math_equal,
    "last_boxed": extract.last_boxed,
    "answer_is": extract.answer_is,
    "normalize": grader.normalize_answer,
    "env": env.environment,
    "is_exact": env.is_exact,
}
for line in sys.stdin:
    call = json.loads(line)
    start = time.perf_counter()
    try:
        out = {"result": OPS[call["op"]](*call.get("args", []))}
    except Exception as exc:
        out = {"error": f"{type(exc).__name__}: {exc}"}
    out["seconds"] = time.perf_counter() - start
    print(json.dumps(out), flush=True)
"""


def available() -> bool:
    """True when ``.venv-authors`` is built (``make venv-authors``)."""
    return AUTHORS_PYTHON.exists()


def _start(calls: list[dict[str, Any]]) -> subprocess.Popen:
    """One ``.venv-authors`` process serving ``calls`` (sent on stdin by the caller)."""
    env = dict(os.environ, PYTHONPATH=str(REPO / "scripts"))
    return subprocess.Popen(
        [str(AUTHORS_PYTHON), "-c", _SERVER],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def run_calls(
    calls: list[dict[str, Any]], timeout_s: float = 1800.0, workers: int = 1
) -> list[dict[str, Any]]:
    """Run the calls in ``workers`` ``.venv-authors`` processes; one result per call, in order.

    The calls are dealt round-robin, so slow pairs that sit together in a file are spread.
    """
    if not available():
        raise FileNotFoundError(f"{AUTHORS_PYTHON} is missing: run `make venv-authors`")
    workers = max(1, min(workers, len(calls)))
    shares = [calls[i::workers] for i in range(workers)]
    procs = [_start(share) for share in shares]
    threads = []
    outputs: list[tuple[str, str]] = [("", "")] * workers

    def talk(i: int) -> None:
        payload = "".join(json.dumps(c) + "\n" for c in shares[i])
        outputs[i] = procs[i].communicate(payload, timeout=timeout_s)

    for i in range(workers):
        threads.append(threading.Thread(target=talk, args=(i,)))
        threads[-1].start()
    for thread in threads:
        thread.join()
    results: list[dict[str, Any]] = [{}] * len(calls)
    for i, (stdout, stderr) in enumerate(outputs):
        got = [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]
        if len(got) != len(shares[i]):
            raise RuntimeError(
                f"{AUTHORS_PYTHON} answered {len(got)} of {len(shares[i])} calls "
                f"(exit {procs[i].returncode}): {stderr[-2000:]}"
            )
        results[i::workers] = got
    return results


def pair_call(row: dict[str, Any]) -> dict[str, Any]:
    """The call that scores one pairs-file row: the reward for rule ``reward``, else eval."""
    if row["rule"] == "reward":
        return {"op": "reward", "args": [row["response"], row["gold"], row.get("gate", "think")]}
    return {"op": "eval", "args": [row["response"], row["gold"], row["rule"]]}


def score_pairs(rows: list[dict[str, Any]], workers: int = 2) -> list[dict[str, Any]]:
    """Our verdict for each row of a pairs file (``{"result": {correct, via, pred}}`` each)."""
    return run_calls([pair_call(r) for r in rows], workers=workers)
