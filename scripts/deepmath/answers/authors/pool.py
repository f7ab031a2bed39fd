"""The authors' scorer in worker processes of its own interpreter, each pair under a hard deadline.

Why subprocesses of another Python: the authors' grader needs antlr 4.11.0 and math-verify 0.7.0,
which neither the main env nor the verl env has (see ``requirements/authors.txt``). The workers
run ``python -m deepmath.answers.authors.worker`` under that interpreter with
``PYTHONPATH=<repo>/scripts`` and nothing of the caller's ``sys.path``, and speak JSON lines.

Which interpreter (:func:`authors_python`): ``--authors-python``, else the record the
``authors_python`` rule writes (when a job is handed one: the interpreter the workflow checked
wins over a stray ``$DEEPMATH_AUTHORS_PYTHON``, with a warning naming both), else
``$DEEPMATH_AUTHORS_PYTHON``, else ``<repo>/.venv-authors/bin/python``; else an error that says
how to build it. A path with a ``/`` is made absolute (the workers start in ``scripts/``), a bare
name is looked up on ``PATH``.

The workers run with ``PYTHONHASHSEED=0``: a verdict that depends on set or dict order (sympy
on some degenerate forms) is the same on every run; the hello says so (``hash_seed``).

:class:`AuthorsPool` keeps one pair in flight per worker. A worker not back within
``timeout_s + grace_s`` is killed with its whole process group and replaced, and its pair is
``Verdict(False, "timeout", None)``; a worker that dies mid-pair gives ``"error"`` and is
replaced; a worker that cannot start at all (a wrong interpreter, an import error) is one
:class:`DeepmathError` naming the interpreter and the end of its stderr, never a respawn loop.
Each worker's address space is capped (``memory_mb``). Any thread may call the pool, several at
once (the trainer's reward threads): nothing here uses signals in the caller.

``python -m deepmath.answers.authors.pool where --out FILE`` is the ``authors_python`` rule's
job: it records which interpreter runs the authors' scorer and its versions, after starting a
worker with it. This module imports only the standard library (the rule runs it in the authors'
env, which has nothing else).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import select
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from collections import deque
from collections.abc import Mapping, Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

try:
    from deepmath.io import DeepmathError
except ImportError:  # the authors' env (pandas-free) runs only the `where` command

    class DeepmathError(RuntimeError):  # type: ignore[no-redef]
        """An error with a message meant for the user (no traceback needed)."""


log = logging.getLogger("deepmath.answers.authors.pool")

PYTHON_ENV = "DEEPMATH_AUTHORS_PYTHON"
SCRIPTS_DIR = Path(__file__).resolve().parents[3]
REPO_DIR = SCRIPTS_DIR.parent
VENV_PYTHON = REPO_DIR / ".venv-authors" / "bin" / "python"
WORKER_MODULE = "deepmath.answers.authors.worker"
HOW_TO_BUILD = (
    "build it with `make venv-authors` (or the conda env envs/authors.yaml), or name one with "
    f"--authors-python / ${PYTHON_ENV}"
)
DEFAULT_TIMEOUT_S = 30.0
DEFAULT_GRACE_S = 2.0
START_TIMEOUT_S = 180.0
STDERR_TAIL = 2000
OK, TIMEOUT, ERROR = "ok", "timeout", "error"
# The caller's environment that must not reach the authors' interpreter.
DROPPED_ENV = ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "PYTHONUSERBASE", "PYTHONSAFEPATH")
# The workers' hash seed: fixed, so that no verdict depends on the run (see the module doc).
HASH_SEED = "0"


# --------------------------------------------------------------------------- the interpreter


def authors_python(
    flag: str | None = None,
    env: Mapping[str, str] | None = None,
    record: str | os.PathLike[str] | None = None,
) -> str:
    """The interpreter of the authors' scorer: flag, then record, environment, .venv-authors.

    An explicitly passed record (a workflow job's input) wins over ``$DEEPMATH_AUTHORS_PYTHON``:
    the record is the interpreter the ``authors_python`` rule checked; a different one left in
    the environment is named in a warning and not used. The result is absolute (see
    :func:`absolute_python`).
    """
    env = os.environ if env is None else env
    if flag:
        return absolute_python(str(flag))
    from_env = env.get(PYTHON_ENV)
    if record:
        python = absolute_python(read_record(record)["python"])
        if from_env and absolute_python(from_env) != python:
            log.warning(
                "the authors' scorer runs %s, as recorded in %s; $%s=%s is not used (pass "
                "--authors-python to choose another interpreter)",
                python,
                record,
                PYTHON_ENV,
                from_env,
            )
        return python
    if from_env:
        return absolute_python(from_env)
    if VENV_PYTHON.exists():
        return str(VENV_PYTHON)
    raise DeepmathError(
        f"no Python for the authors' scorer: {VENV_PYTHON} does not exist; " + HOW_TO_BUILD
    )


def absolute_python(python: str) -> str:
    """An interpreter path that still works from the workers' folder (``scripts/``).

    A path with a ``/`` (``.venv-authors/bin/python``) is made absolute against the caller's
    working directory, where the user meant it; a bare name (``python3.11``) is looked up on
    ``PATH`` (left as it is when not found, so the start error names what was given).
    """
    if "/" in python:
        return os.path.abspath(python)
    return shutil.which(python) or python


def read_record(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The ``authors_python`` rule's record: ``{"python", "environment"}``."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError) as err:
        raise DeepmathError(f"the authors' interpreter record {path}: {err}") from None
    if not isinstance(data, dict) or not isinstance(data.get("python"), str):
        raise DeepmathError(f"the authors' interpreter record {path} has no 'python' path")
    return data


def worker_env(base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The workers' environment: the caller's, but Python's own search path only ``scripts/``,
    and a fixed hash seed (a verdict must not depend on the run)."""
    base = os.environ if base is None else base
    env = {k: v for k, v in base.items() if k not in DROPPED_ENV}
    env["PYTHONPATH"] = str(SCRIPTS_DIR)
    env["PYTHONHASHSEED"] = HASH_SEED
    env["PYTHONNOUSERSITE"] = "1"
    env["PYTHONIOENCODING"] = "utf-8"
    return env


def default_workers() -> int:
    """Cores this process may use (affinity-aware, so Slurm/cgroup limits are respected)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - non-Linux
        return max(1, os.cpu_count() or 1)


# --------------------------------------------------------------------------- one worker


@dataclass(frozen=True)
class Outcome:
    """What came back for one request: ``ok`` with the op's result, ``timeout`` or ``error``."""

    status: str
    value: Any = None
    detail: str = ""


@dataclass(eq=False)
class _Worker:
    proc: subprocess.Popen[bytes]
    stderr: IO[bytes]
    hello: dict[str, Any] = field(default_factory=dict)
    buf: bytearray = field(default_factory=bytearray)

    @property
    def fd(self) -> int:
        assert self.proc.stdout is not None
        return self.proc.stdout.fileno()

    def send(self, message: Mapping[str, Any]) -> None:
        """One request line (a dead worker raises BrokenPipeError / OSError)."""
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(message, ensure_ascii=True, default=_jsonable).encode())
        self.proc.stdin.write(b"\n")
        self.proc.stdin.flush()

    def line(self) -> bytes | None:
        """A complete line already read, if any."""
        end = self.buf.find(b"\n")
        if end < 0:
            return None
        out = bytes(self.buf[:end])
        del self.buf[: end + 1]
        return out

    def fill(self) -> bool:
        """Read what the worker has written; False at end of output (the worker is gone)."""
        chunk = os.read(self.fd, 1 << 16)
        self.buf.extend(chunk)
        return bool(chunk)

    def kill(self) -> None:
        """Kill the worker's whole process group (it leads its own session) and reap it."""
        from deepmath.procs import kill_group  # stdlib only, like this module

        kill_group(self.proc.pid)
        with suppress(Exception):
            self.proc.kill()
        with suppress(Exception):
            self.proc.wait(timeout=10)
        for stream in (self.proc.stdin, self.proc.stdout, self.stderr):
            with suppress(Exception):
                stream.close()  # type: ignore[union-attr]

    def stderr_tail(self, limit: int = STDERR_TAIL) -> str:
        with suppress(Exception):
            self.stderr.flush()
            size = self.stderr.seek(0, os.SEEK_END)
            self.stderr.seek(max(0, size - limit))
            return self.stderr.read().decode("utf-8", "replace").strip()
        return ""


def _jsonable(value: Any) -> Any:
    """numpy arrays and scalars (a parquet gold) as plain JSON; anything else as its text."""
    if hasattr(value, "tolist"):
        return value.tolist()
    return str(value)


def _overdue(mine: Mapping[_Worker, tuple[int, float]], now: float) -> list[_Worker]:
    """Workers past their pair's deadline with no complete answer waiting in their buffer.

    An answer already read (it came with the last bytes before the deadline) is left in the
    buffer for the next :func:`_wait_lines`: looking must not consume it.
    """
    return [w for w, (_, deadline) in mine.items() if now >= deadline and b"\n" not in w.buf]


def _wait_lines(workers: Sequence[_Worker], timeout_s: float) -> dict[_Worker, bytes | None]:
    """Lines from those workers that answer within ``timeout_s`` (None: the worker is gone)."""
    got: dict[_Worker, bytes | None] = {}
    for w in workers:
        line = w.line()
        if line is not None:
            got[w] = line
    if got:
        return got
    poller = select.poll()
    by_fd = {w.fd: w for w in workers}
    for fd in by_fd:
        poller.register(fd, select.POLLIN | select.POLLHUP | select.POLLERR)
    try:
        events = poller.poll(max(0.0, timeout_s) * 1000)
    except InterruptedError:  # pragma: no cover - PEP 475 retries; a handler may raise instead
        return got
    for fd, _ in events:
        w = by_fd[fd]
        if not w.fill():
            got[w] = None
            continue
        line = w.line()
        if line is not None:
            got[w] = line
    return got


# --------------------------------------------------------------------------- the pool


class AuthorsPool:
    """Worker processes of the authors' interpreter, one pair each at a time, hard deadlines.

    Workers start lazily (as many as a call has pairs, at most ``workers``) and stay up between
    calls; ``close()`` (or leaving the ``with`` block, or the end of the program) kills them.
    Several threads may call at once: each call takes idle workers (or starts new ones up to
    ``workers``) and hands a worker back between pairs while other calls wait for one.
    """

    def __init__(
        self,
        python: str | None = None,
        workers: int | None = None,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        memory_mb: int | None = 4096,
        *,
        grace_s: float = DEFAULT_GRACE_S,
        start_timeout_s: float = START_TIMEOUT_S,
    ) -> None:
        if timeout_s <= 0:
            raise ValueError(f"timeout_s={timeout_s!r} must be positive")
        self.python = absolute_python(python) if python else authors_python()
        self.workers = int(workers or default_workers())
        if self.workers < 1:
            raise ValueError(f"workers={workers!r} must be at least 1")
        self.timeout_s = float(timeout_s)
        self.grace_s = float(grace_s)
        self.memory_mb = memory_mb
        self.start_timeout_s = float(start_timeout_s)
        self.respawns = 0  # workers replaced after a timeout or a death
        self.timeouts = 0
        self.errors = 0
        self._cond = threading.Condition()
        self._idle: list[_Worker] = []
        self._all: set[_Worker] = set()
        self._starting = 0
        self._waiting = 0
        self._hello: dict[str, Any] | None = None
        self._closed = False
        self._pid = os.getpid()
        # the end of the program kills the workers even without close()
        self._finalizer = weakref.finalize(self, _kill_all, self._all)

    def __enter__(self) -> AuthorsPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ----------------------------------------------------------------- public API

    def eval_verdicts(
        self, items: Sequence[tuple[str, Any, str, float | None]], progress: bool = False
    ) -> list[Any]:
        """The authors' eval verdicts of ``(response, gold, rule, precision)``, in input order."""
        args = [{"response": r, "gold": g, "rule": rule, "precision": p} for r, g, rule, p in items]
        return [_to_verdict(o) for o in self.run("eval", args, progress=progress)]

    def reward_verdicts(self, items: Sequence[tuple[str, str, str]]) -> list[Any]:
        """The authors' reward verdicts of ``(response, gold, gate)``, in input order."""
        args = [{"response": r, "gold": g, "gate": gate} for r, g, gate in items]
        return [_to_verdict(o) for o in self.run("reward", args)]

    def environment(self) -> dict[str, Any]:
        """The worker env's versions (math-verify, latex2sympy2_extended, antlr, sympy, python)."""
        return dict(self.hello()["environment"])

    def hello(self) -> dict[str, Any]:
        """A worker's hello (starting one if none ever started): pid, python, versions, exact."""
        if self._hello is None:
            self.run("ping", [{}])
        assert self._hello is not None
        return self._hello

    def pids(self) -> list[int]:
        """The live workers' process ids."""
        with self._cond:
            return [w.proc.pid for w in self._all]

    def run(
        self, op: str, args: Sequence[Mapping[str, Any]], progress: bool = False
    ) -> list[Outcome]:
        """Send ``op`` once per item of ``args``; one :class:`Outcome` each, in input order."""
        outcomes: list[Outcome | None] = [None] * len(args)
        if not args:
            return []
        bar = _progress_bar(len(args), progress)
        mine: dict[_Worker, tuple[int, float]] = {}  # worker -> (item, deadline)
        pending = deque(range(len(args)))

        def done(idx: int, outcome: Outcome) -> None:
            outcomes[idx] = outcome
            if bar is not None:
                bar.update(1)

        try:
            while pending or mine:
                for w in self._acquire(len(pending), block=not mine):
                    self._start_pair(w, pending, mine, op, args)
                if not mine:
                    continue
                now = time.monotonic()
                wait_s = min(deadline for _, deadline in mine.values()) - now
                if pending and len(mine) < self.workers:
                    wait_s = min(wait_s, 0.02)  # look again for a worker another call frees
                for w, line in _wait_lines(list(mine), wait_s).items():
                    idx, _ = mine.pop(w)
                    if line is None:
                        done(idx, self._lost(w, ERROR, "the worker died"))
                        continue
                    done(idx, self._reply(w, idx, line))
                    if w not in self._all:
                        continue  # it answered out of turn and was discarded
                    if pending and not self._waiting:
                        self._start_pair(w, pending, mine, op, args)
                    else:
                        self._release(w)
                for w in _overdue(mine, time.monotonic()):
                    idx, _ = mine.pop(w)
                    done(idx, self._lost(w, TIMEOUT, f"over {self.timeout_s:g} s"))
        except BaseException:
            for w in mine:  # their pairs are still running: nobody may reuse them
                self._discard(w)
            raise
        finally:
            if bar is not None:
                bar.close()
        return [o for o in outcomes if o is not None]

    def close(self) -> None:
        """Kill every worker (a call still running in another thread gets errors, then stops)."""
        with self._cond:
            self._closed = True
            workers = list(self._all)
            self._all.clear()
            self._idle.clear()
            self._cond.notify_all()
        for w in workers:
            w.kill()

    # ----------------------------------------------------------------- scheduling

    def _start_pair(
        self,
        w: _Worker,
        pending: deque[int],
        mine: dict[_Worker, tuple[int, float]],
        op: str,
        args: Sequence[Mapping[str, Any]],
    ) -> None:
        """Give ``w`` the next pending item (a worker that died while idle is replaced)."""
        idx = pending.popleft()
        try:
            w.send({"id": idx, "op": op, "args": args[idx]})
        except (BrokenPipeError, OSError, ValueError):
            pending.appendleft(idx)
            self._discard(w)
            self.respawns += 1
            return
        mine[w] = (idx, time.monotonic() + self.timeout_s + self.grace_s)

    def _acquire(self, want: int, block: bool) -> list[_Worker]:
        """Up to ``want`` workers for this call: idle ones, then new ones within ``workers``.

        ``block``: the call holds none, so wait until one is free (or may be started).
        """
        if want <= 0:
            return []
        with self._cond:
            while True:
                self._check_open()
                # a call that holds workers leaves the idle ones to calls that hold none
                free = len(self._idle) if block or not self._waiting else 0
                got = [self._idle.pop() for _ in range(min(want, free))]
                room = self.workers - len(self._all) - self._starting
                start = max(0, min(want - len(got), room))
                self._starting += start
                if got or start or not block:
                    break
                self._waiting += 1
                try:
                    self._cond.wait()
                finally:
                    self._waiting -= 1
        try:
            got += self._start_workers(start)
        except BaseException:
            for w in got:
                self._release(w)
            raise
        return got

    def _release(self, w: _Worker) -> None:
        """Hand an idle worker back to the pool (another call may be waiting for one)."""
        with self._cond:
            if self._closed or w not in self._all:
                w.kill()
                return
            self._idle.append(w)
            self._cond.notify()

    def _discard(self, w: _Worker) -> None:
        """Kill a worker and forget it; the next call that needs one starts a fresh one."""
        w.kill()
        with self._cond:
            self._all.discard(w)
            self._cond.notify()

    def _lost(self, w: _Worker, status: str, why: str) -> Outcome:
        """A pair whose worker overran its deadline or died: kill, forget, report."""
        tail = ""
        if status == ERROR:
            with suppress(subprocess.TimeoutExpired):
                w.proc.wait(timeout=1)  # a dead worker's own exit code
            why = f"{why} (exit code {w.proc.returncode})"
            tail = w.stderr_tail(500)
        self._discard(w)
        self.respawns += 1
        if status == TIMEOUT:
            self.timeouts += 1
        else:
            self.errors += 1
            log.warning("authors' scorer worker %d: %s; stderr: %s", w.proc.pid, why, tail)
        return Outcome(status, None, f"{why}; worker {w.proc.pid} replaced")

    def _reply(self, w: _Worker, idx: int, line: bytes) -> Outcome:
        """The outcome of a worker's answer line to request ``idx``."""
        try:
            msg = json.loads(line)
        except ValueError:
            msg = None
        if not isinstance(msg, dict) or msg.get("id") != idx:
            # not an answer to this request: the stream cannot be trusted any more
            self._discard(w)
            self.errors += 1
            return Outcome(ERROR, None, f"worker {w.proc.pid} answered {line[:200]!r}")
        if msg.get("ok"):
            return Outcome(OK, msg.get("result"))
        self.errors += 1
        log.warning("authors' scorer: %s", msg.get("error"))
        return Outcome(ERROR, None, str(msg.get("error")))

    def _check_open(self) -> None:
        if self._closed:
            raise DeepmathError("the authors' scorer pool is closed")
        if os.getpid() != self._pid:
            raise DeepmathError(
                "an AuthorsPool was inherited through fork; create one in this process"
            )

    def _start_workers(self, count: int) -> list[_Worker]:
        """Start ``count`` workers at once (their imports overlap), each greeted before use.

        The caller reserved them in ``_starting``; a start that fails kills the others and
        raises (so a broken interpreter is one error, not a respawn per pair).
        """
        launched: list[_Worker] = []
        try:
            for _ in range(count):
                launched.append(self._launch())
            for w in launched:
                self._greet(w)
        except BaseException:
            for w in launched:
                w.kill()
            with self._cond:
                self._starting -= count
                self._cond.notify_all()
            raise
        with self._cond:
            self._starting -= count
            closed = self._closed
            if not closed:
                self._all.update(launched)
        if closed:  # close() ran while they started
            for w in launched:
                w.kill()
            raise DeepmathError("the authors' scorer pool is closed")
        return launched

    def _launch(self) -> _Worker:
        """Start one worker process (its hello comes later, :meth:`_greet`)."""
        cmd = [self.python, "-s", "-m", WORKER_MODULE]
        if self.memory_mb:
            cmd += ["--memory-mb", str(int(self.memory_mb))]
        err = tempfile.TemporaryFile(prefix="deepmath-authors-worker-")  # noqa: SIM115 - the worker keeps it
        try:
            proc = subprocess.Popen(
                cmd,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=err,
                env=worker_env(),
                cwd=SCRIPTS_DIR,  # `-m` puts the cwd first on sys.path: make it ours
                start_new_session=True,
            )
        except OSError as exc:
            err.close()
            raise DeepmathError(
                f"the authors' scorer cannot start with {self.python}: {exc}; " + HOW_TO_BUILD
            ) from None
        return _Worker(proc, err)

    def _greet(self, w: _Worker) -> None:
        """Wait for a worker's hello; a worker that exits or says something else is an error."""
        deadline = time.monotonic() + self.start_timeout_s
        while True:
            got = _wait_lines([w], deadline - time.monotonic())
            line = got.get(w)
            if line is not None:
                break
            if w in got or time.monotonic() >= deadline:
                self._start_failed(w, "exited" if w in got else "did not say hello in time")
        try:
            hello = json.loads(line)
        except ValueError:
            hello = {}
        if not isinstance(hello, dict) or hello.get("hello") != WORKER_MODULE:
            self._start_failed(w, f"wrote {line[:200]!r} instead of its hello")
        hello.setdefault("hash_seed", HASH_SEED)  # the seed worker_env gave it
        w.hello = hello
        if self._hello is None:
            self._hello = hello

    def _start_failed(self, w: _Worker, what: str) -> None:
        with suppress(subprocess.TimeoutExpired):
            w.proc.wait(timeout=2)  # its own exit code, when it is exiting anyway
        tail = w.stderr_tail() or "(nothing on stderr)"
        w.kill()
        code = w.proc.returncode
        raise DeepmathError(
            f"the authors' scorer worker does not start with {self.python} (it {what}; exit "
            f"code {code}); its stderr ends with:\n{tail}\n" + HOW_TO_BUILD
        )


def _kill_all(workers: set[_Worker]) -> None:
    for w in list(workers):
        w.kill()
    workers.clear()


def _to_verdict(outcome: Outcome) -> Any:
    from deepmath.answers.authors import Verdict

    if outcome.status == OK:
        r = outcome.value
        return Verdict(bool(r["correct"]), str(r.get("via") or ""), r.get("pred"))
    return Verdict(False, outcome.status, None)


def _progress_bar(total: int, enabled: bool) -> Any:
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(total=total, desc="authors' scorer", unit="pair")


# --------------------------------------------------------------------------- the rule's job


def where(flag: str | None = None, env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The interpreter that runs the authors' scorer here, checked by starting a worker with it.

    The running interpreter when it is exact (the rule's conda env); else the one
    :func:`authors_python` finds (a local run without conda: ``.venv-authors``).
    """
    python = flag
    if python is None:
        try:
            from deepmath.answers.authors.env import is_exact

            exact_here = bool(is_exact())
        except ImportError:
            exact_here = False
        python = sys.executable if exact_here else authors_python(None, env)
    with AuthorsPool(python, workers=1) as pool:
        hello = pool.hello()
    if not hello.get("exact"):
        raise DeepmathError(
            f"{python} does not have the authors' scorer versions "
            f"({json.dumps(hello.get('environment'))}); see requirements/authors.txt. "
            + HOW_TO_BUILD
        )
    return {"python": hello.get("python") or python, "environment": hello.get("environment")}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m deepmath.answers.authors.pool")
    sub = parser.add_subparsers(dest="command", required=True)
    w = sub.add_parser("where", help="record the authors' interpreter and its versions")
    w.add_argument("--out", required=True, help="JSON file to write {python, environment}")
    w.add_argument("--authors-python", help=f"the interpreter (default: this one, ${PYTHON_ENV})")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        found = where(args.authors_python)
    except DeepmathError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(found, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, out)
    log.info("authors' scorer: %s %s", found["python"], found["environment"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
