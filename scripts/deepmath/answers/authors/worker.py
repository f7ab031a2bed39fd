"""One worker of the authors' scorer: JSON lines in on stdin, JSON lines out on stdout.

``python -m deepmath.answers.authors.worker [--memory-mb N]`` runs under the authors'
interpreter (``.venv-authors`` or the ``envs/authors.yaml`` conda env), started by
:class:`deepmath.answers.authors.pool.AuthorsPool` with ``PYTHONPATH=<repo>/scripts`` only, so it
sees that env's math-verify / antlr / sympy and nothing of the caller's.

Protocol (one line each way, UTF-8 JSON with non-ASCII escaped, so a line never holds a raw
newline):

- the first line out is a hello: ``{"hello": "deepmath.answers.authors.worker", "pid",
  "python", "environment", "exact"}`` written only after sympy and math-verify are imported, so
  that the caller's per-pair deadline never pays for the imports;
- then for each request ``{"id", "op", "args"}`` one answer ``{"id", "ok": true, "result"}`` or
  ``{"id", "ok": false, "error"}``. Ops: ``eval`` (``rules.eval_verdict``), ``reward``
  (``rules.reward_verdict``), ``env`` (the versions), ``ping`` (the pid) and ``sleep`` (sleeps
  ``args["s"]`` seconds: the pool's fault tests use it as a pair that never ends).

Only protocol lines reach stdout: file descriptor 1 is pointed at stderr before anything is
imported, so a library's ``print`` (or a C extension's) cannot corrupt the stream. The worker
owns its main thread, so the authors' own in-check time bounds (SIGALRM) may run here; the pool
adds the hard kill. It exits on end of input, and when its parent is gone.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict
from typing import IO, Any

HELLO = "deepmath.answers.authors.worker"
# Imported before the hello: what every pair needs (the rules and their libraries).
PRELOAD = ("deepmath.answers.authors.rules", "sympy", "math_verify", "latex2sympy2_extended")
PARENT_CHECK_S = 1.0
START_FAILED = 3  # exit code: the worker could not import what it serves


def _verdict(v: Any) -> dict[str, Any]:
    return asdict(v)


def op_eval(args: dict[str, Any]) -> dict[str, Any]:
    """The authors' evaluation verdict of one (response, gold) under a benchmark's rule."""
    from deepmath.answers.authors.rules import eval_verdict

    rule = args.get("rule") or "general"
    return _verdict(eval_verdict(args["response"], args["gold"], rule, args.get("precision")))


def op_reward(args: dict[str, Any]) -> dict[str, Any]:
    """The authors' RL reward verdict of one (response, gold) under a format gate."""
    from deepmath.answers.authors.rules import reward_verdict

    return _verdict(reward_verdict(args["response"], args["gold"], args.get("gate") or "think"))


def op_env(args: dict[str, Any]) -> dict[str, Any]:
    """This interpreter's scorer versions and whether they are the authors' pins."""
    from deepmath.answers.authors.env import environment, is_exact

    return {"environment": environment(), "exact": bool(is_exact())}


def op_ping(args: dict[str, Any]) -> dict[str, Any]:
    return {"pid": os.getpid()}


def op_sleep(args: dict[str, Any]) -> dict[str, Any]:
    """A pair that takes ``s`` seconds (the pool's timeout and kill tests)."""
    seconds = float(args.get("s", 0))
    time.sleep(seconds)
    return {"slept": seconds}


OPS: dict[str, Callable[[dict[str, Any]], Any]] = {
    "eval": op_eval,
    "reward": op_reward,
    "env": op_env,
    "ping": op_ping,
    "sleep": op_sleep,
}


def protocol_stream() -> IO[str]:
    """A private copy of stdout for the protocol; fd 1 (and ``sys.stdout``) become stderr."""
    out = os.fdopen(os.dup(1), "w", encoding="utf-8", newline="\n")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return out


def send(out: IO[str], message: dict[str, Any]) -> None:
    out.write(json.dumps(message, ensure_ascii=True) + "\n")
    out.flush()


def cap_memory(memory_mb: int | None) -> None:
    """Cap the address space, so a runaway expression fails with MemoryError, not swapping."""
    if not memory_mb:
        return
    import resource

    limit = int(memory_mb) * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def watch_parent() -> None:
    """Exit when the parent is gone, even in the middle of a pair that never ends.

    A thread, not ``PR_SET_PDEATHSIG``: that fires when the parent *thread* that started us
    ends, and the trainer's reward threads come and go.
    """
    parent = os.getppid()

    def watch() -> None:
        while True:
            time.sleep(PARENT_CHECK_S)
            if os.getppid() != parent:
                os._exit(1)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def hello() -> dict[str, Any]:
    """Import what the pairs need, then say who we are (an import error ends the worker)."""
    import importlib

    for name in PRELOAD:
        importlib.import_module(name)
    return {"hello": HELLO, "pid": os.getpid(), "python": sys.executable, **op_env({})}


def answer(line: bytes) -> dict[str, Any]:
    """The reply to one request line (an error of the op is an answer too, not a crash)."""
    try:
        request = json.loads(line)
        rid = request.get("id")
    except (ValueError, AttributeError) as err:
        return {"id": None, "ok": False, "error": f"not a JSON request: {err}"}
    op = OPS.get(request.get("op"))
    if op is None:
        return {"id": rid, "ok": False, "error": f"unknown op {request.get('op')!r}"}
    try:
        return {"id": rid, "ok": True, "result": op(request.get("args") or {})}
    except Exception as err:  # the pair's error, reported; the worker lives on
        return {"id": rid, "ok": False, "error": f"{type(err).__name__}: {err}"}


def serve(out: IO[str]) -> None:
    """Answer requests one at a time until stdin closes."""
    for line in sys.stdin.buffer:
        if line.strip():
            send(out, answer(line))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=f"python -m {HELLO}", description=__doc__)
    parser.add_argument("--memory-mb", type=int, default=None, help="address-space cap")
    args = parser.parse_args(argv)
    out = protocol_stream()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the pool handles Ctrl-C and kills us
    watch_parent()
    try:
        cap_memory(args.memory_mb)
        send(out, hello())
    except Exception:
        traceback.print_exc()
        return START_FAILED
    serve(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
