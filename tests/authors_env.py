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


def run_calls(calls: list[dict[str, Any]], timeout_s: float = 1800.0) -> list[dict[str, Any]]:
    """Run the calls in one ``.venv-authors`` process, in order; one result dict per call."""
    if not available():
        raise FileNotFoundError(f"{AUTHORS_PYTHON} is missing: run `make venv-authors`")
    env = dict(os.environ, PYTHONPATH=str(REPO / "scripts"))
    payload = "".join(json.dumps(c) + "\n" for c in calls)
    done = subprocess.run(
        [str(AUTHORS_PYTHON), "-c", _SERVER],
        input=payload,
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout_s,
        check=False,
    )
    results = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    if len(results) != len(calls):
        raise RuntimeError(
            f"{AUTHORS_PYTHON} answered {len(results)} of {len(calls)} calls "
            f"(exit {done.returncode}): {done.stderr[-2000:]}"
        )
    return results


def pair_call(row: dict[str, Any]) -> dict[str, Any]:
    """The call that scores one pairs-file row: the reward for rule ``reward``, else eval."""
    if row["rule"] == "reward":
        return {"op": "reward", "args": [row["response"], row["gold"], row.get("gate", "think")]}
    return {"op": "eval", "args": [row["response"], row["gold"], row["rule"]]}


def score_pairs(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Our verdict for each row of a pairs file (``{"result": {correct, via, pred}}`` each)."""
    return run_calls([pair_call(r) for r in rows])
