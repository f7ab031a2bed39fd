"""Many checks at once: worker processes with a hard per-pair deadline."""

from __future__ import annotations

import os
import signal
import time
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from contextlib import suppress
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from deepmath.answers.check import (
    DEFAULT_TIMEOUT_S,
    ERROR,
    TIMEOUT,
    Result,
    check_answer,
    scored_text,
)
from deepmath.answers.extract import extract_answer
from deepmath.answers.judges import JUDGES, choice_letter

if TYPE_CHECKING:
    from deepmath.answers.policy import Policy

Pair = tuple[str | None, str | None]
# A pair with options of its own (e.g. a problem's precision): (response, gold, overrides).
PairWithOptions = tuple[str | None, str | None, Mapping[str, Any]]

# check_answer's options that one pair may set for itself (the time bound is the pool's).
PAIR_OPTIONS = frozenset(
    {
        "extract",
        "think",
        "stated",
        "fallback_full_text",
        "rescue",
        "judges",
        "choice",
        "precision",
    }
)


_PRELOAD = ["deepmath.answers", "sympy", "math_verify", "latex2sympy2_extended"]


def default_workers() -> int:
    """Cores this process may use (affinity-aware, so Slurm/cgroup limits are respected)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - non-Linux
        return max(1, os.cpu_count() or 1)


def _worker_main(conn: Any, memory_mb: int | None) -> None:
    """Serve checks one at a time in this process's main thread until told to stop."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C and kills us
    if memory_mb:
        try:
            import resource

            limit = int(memory_mb) * 1024 * 1024
            resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
        except (ImportError, ValueError, OSError):  # pragma: no cover - platform specific
            pass
    try:
        conn.send(("ready", os.getpid()))
    except (BrokenPipeError, OSError):
        return
    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError):
            return
        if msg is None:
            return
        idx, response, gold, opts = msg
        res = check_answer(response, gold, **opts)
        try:
            conn.send((idx, res))
        except (BrokenPipeError, OSError):
            return


@dataclass
class _Slot:
    proc: Any
    conn: Any
    task: int | None = None
    deadline: float = 0.0


class CheckerPool:
    """Worker processes that check answers with a hard per-pair deadline.

    Why not ``ProcessPoolExecutor``: it cannot cancel a running task, so one ``10^{10^{10}}``
    would pin a worker forever. Here each worker gets one pair at a time; a worker that is not
    back within ``timeout_s + grace_s`` is killed, its pair reported as ``timeout`` and a fresh
    worker takes its place. Inside the worker the same ``timeout_s`` is enforced with a signal
    first, which usually answers without the cost of a respawn.

    Workers start from a ``forkserver`` that has sympy and math-verify imported already (safe
    with threads in the parent, and a respawn costs milliseconds). ``memory_mb`` caps each
    worker's address space so a runaway expression fails with ``error`` instead of swapping.
    ``soft_timeout=False`` skips the in-worker signal (for callers whose own code owns
    ``SIGALRM``); the hard kill alone then enforces the bound.
    Keep one pool open across many batches (``with CheckerPool() as pool: pool.map(...)``).
    """

    def __init__(
        self,
        workers: int | None = None,
        *,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        grace_s: float = 1.0,
        memory_mb: int | None = 4096,
        soft_timeout: bool = True,
        start_method: str | None = None,
    ) -> None:
        import multiprocessing as mp

        if timeout_s <= 0:
            raise ValueError("timeout_s must be positive")
        self.workers = workers or default_workers()
        self.timeout_s = float(timeout_s)
        self.grace_s = float(grace_s)
        self.memory_mb = memory_mb
        self.soft_timeout = soft_timeout
        method = start_method or _default_start_method()
        self._ctx = mp.get_context(method)
        if method == "forkserver":
            self._ctx.set_forkserver_preload(_PRELOAD)
        self._slots: list[_Slot] = []
        self.respawns = 0

    def __enter__(self) -> CheckerPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _spawn(self) -> _Slot:
        parent, child = self._ctx.Pipe(duplex=True)
        proc = self._ctx.Process(
            target=_worker_main, args=(child, self.memory_mb), daemon=True, name="answer-check"
        )
        proc.start()
        child.close()
        return _Slot(proc, parent)

    def _await_ready(self, slots: Sequence[_Slot], wait_s: float = 120.0) -> None:
        """Wait for each new worker's hello, so a worker that cannot start fails loudly.

        Without this, a worker dying at start-up (say, an unimportable ``__main__``) would be
        replaced forever, each time reporting its pair as an error.
        """
        for slot in slots:
            try:
                ok = slot.conn.poll(wait_s)
                msg = slot.conn.recv() if ok else None
            except (EOFError, OSError):
                msg = None
            if not (isinstance(msg, tuple) and msg and msg[0] == "ready"):
                code = slot.proc.exitcode
                self.close()
                from deepmath.io import DeepmathError

                raise DeepmathError(
                    f"answer-check worker processes do not start (exit code {code}); see the "
                    "traceback above. Run from a module or a script file, not from stdin."
                )

    def _replace(self, slot: _Slot) -> None:
        """Kill a slot's worker and put a fresh, started one in its place."""
        self._kill(slot)
        fresh = self._spawn()
        self._await_ready([fresh])
        slot.proc, slot.conn, slot.task = fresh.proc, fresh.conn, None
        self.respawns += 1

    def _kill(self, slot: _Slot) -> None:
        with suppress(Exception):  # already gone
            slot.proc.kill()
        slot.proc.join(timeout=5)
        slot.conn.close()

    def close(self) -> None:
        """Stop all workers (politely, then by force)."""
        for slot in self._slots:
            with suppress(Exception):
                slot.conn.send(None)
        for slot in self._slots:
            slot.proc.join(timeout=1)
            if slot.proc.is_alive():
                self._kill(slot)
            else:
                slot.conn.close()
        self._slots = []

    def map(
        self,
        pairs: Iterable[Pair | PairWithOptions],
        *,
        policy: Policy | None = None,
        extract: bool = True,
        think: bool | str = False,
        stated: bool = False,
        fallback_full_text: bool = False,
        rescue: bool = False,
        judges: tuple[str, ...] = (),
        choice: bool = False,
        precision: float | None = None,
        progress: bool = False,
    ) -> list[Result]:
        """Check ``(response, gold)`` pairs; results come back in input order.

        ``policy`` (a consumer's, from :mod:`deepmath.answers.policy`) sets the options of
        :func:`check_answer`; without one, the keyword arguments do. A pair may also be
        ``(response, gold, overrides)``: ``overrides`` replaces some of those options for that
        pair alone (a benchmark's per-problem ``precision``); the time bound stays the pool's.
        """
        from multiprocessing.connection import wait

        base: dict[str, Any] = (
            policy.options()
            if policy is not None
            else {
                "extract": extract,
                "think": think,
                "stated": stated,
                "fallback_full_text": fallback_full_text,
                "rescue": rescue,
                "judges": tuple(judges),
                "choice": choice,
                "precision": precision,
            }
        )
        base["timeout_s"] = self.timeout_s if self.soft_timeout else None
        _check_options(base)
        tasks: list[tuple[str | None, str | None, dict[str, Any]]] = []
        for pair in pairs:
            response, gold, *more = pair
            if len(more) > 1:
                raise ValueError(f"a pair is (response, gold[, overrides]), not {len(pair)} items")
            overrides = dict(more[0] or {}) if more else {}
            bad = sorted(set(overrides) - PAIR_OPTIONS)
            if bad:
                raise ValueError(f"per-pair options {bad}; allowed: {sorted(PAIR_OPTIONS)}")
            opts = {**base, **overrides} if overrides else base
            if overrides:
                _check_options(opts)
            tasks.append((response, gold, opts))
        results: list[Result | None] = [None] * len(tasks)
        if not tasks:
            return []
        want = min(self.workers, len(tasks))
        new = [self._spawn() for _ in range(want - len(self._slots))]
        self._slots.extend(new)
        self._await_ready(new)
        pending = deque(range(len(tasks)))
        started: dict[int, float] = {}
        bar = _progress_bar(len(tasks), progress)

        def finish(idx: int, res: Result) -> None:
            results[idx] = res
            if bar is not None:
                bar.update(1)

        def lost(slot: _Slot, reason: str, detail: str) -> None:
            idx = slot.task
            assert idx is not None
            response, _gold, opts = tasks[idx]
            pred = _safe_extract(
                response,
                extract=opts["extract"],
                think=opts["think"],
                stated=opts["stated"],
                choice=opts.get("choice", False),
            )
            elapsed = time.perf_counter() - started[idx]
            finish(idx, Result(False, reason, pred, None, detail, elapsed))
            self._replace(slot)

        try:
            while pending or any(s.task is not None for s in self._slots):
                for slot in self._slots:
                    if slot.task is None and pending:
                        idx = pending.popleft()
                        response, gold, opts = tasks[idx]
                        try:
                            slot.conn.send((idx, response, gold, opts))
                        except (BrokenPipeError, OSError):
                            pending.appendleft(idx)
                            self._replace(slot)
                            continue
                        slot.task = idx
                        started[idx] = time.perf_counter()
                        slot.deadline = started[idx] + self.timeout_s + self.grace_s
                busy = [s for s in self._slots if s.task is not None]
                if not busy:
                    continue
                wait_s = max(0.0, min(s.deadline for s in busy) - time.perf_counter())
                ready = wait([s.conn for s in busy], timeout=wait_s)
                for slot in busy:
                    if slot.conn not in ready:
                        continue
                    try:
                        idx, res = slot.conn.recv()
                    except (EOFError, OSError):
                        code = slot.proc.exitcode if not slot.proc.is_alive() else None
                        lost(slot, ERROR, f"worker died (exit code {code})")
                        continue
                    slot.task = None
                    finish(idx, res)
                now = time.perf_counter()
                for slot in self._slots:
                    if slot.task is not None and now >= slot.deadline and not slot.conn.poll():
                        lost(slot, TIMEOUT, f"over {self.timeout_s} s (worker killed)")
        except BaseException:
            self.close()
            raise
        finally:
            if bar is not None:
                bar.close()
        return [r for r in results if r is not None]


def _check_options(opts: dict[str, Any]) -> None:
    """Refuse bad options here: in a worker they would fail every pair, one respawn each."""
    opts["judges"] = tuple(opts.get("judges") or ())
    unknown = [j for j in opts["judges"] if j not in JUDGES]
    if unknown:
        raise ValueError(f"judges={unknown!r}; allowed: {', '.join(JUDGES)}")
    if opts.get("precision") is not None:
        precision = float(opts["precision"])
        if not precision > 0:
            raise ValueError(f"precision={opts['precision']!r} must be positive")
        opts["precision"] = precision


def _default_start_method() -> str:
    """``forkserver`` where it works, else ``fork``/``spawn``.

    forkserver: workers fork from a clean server that has sympy imported (fast respawns, no
    threads inherited from the caller). Like ``spawn`` it re-imports ``__main__`` by path, which
    is impossible when the program came from stdin; that case falls back to ``fork``.
    """
    import multiprocessing as mp
    import sys

    methods = mp.get_all_start_methods()
    main_file = getattr(sys.modules.get("__main__"), "__file__", None)
    main_spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    unimportable = main_spec is None and main_file is not None and not os.path.exists(main_file)
    if unimportable and "fork" in methods:
        return "fork"
    return "forkserver" if "forkserver" in methods else "spawn"


def _safe_extract(
    response: str | None, *, extract: bool, think: bool | str, stated: bool, choice: bool = False
) -> str | None:
    try:
        if extract:
            text = scored_text(response, think)
            letter = choice_letter(text) if choice else None
            return letter or extract_answer(text, stated=stated)
        return response.strip() if response else None
    except Exception:  # pragma: no cover - extraction is plain string code
        return None


def _progress_bar(total: int, enabled: bool) -> Any:
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(total=total, desc="checking answers", unit="pair")


def check_pairs(
    pairs: Iterable[Pair],
    *,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    workers: int | None = None,
    memory_mb: int | None = 4096,
    **options: Any,
) -> list[Result]:
    """Check many ``(response, gold)`` pairs on all cores, each bounded by ``timeout_s``.

    Results are in input order. ``options`` are those of :meth:`CheckerPool.map` (a consumer's
    ``policy``, or ``extract``/``think``/... as in :func:`check_answer`, and ``progress``); see
    :class:`CheckerPool` for how the bound is enforced.
    """
    with CheckerPool(workers, timeout_s=timeout_s, memory_mb=memory_mb) as pool:
        return pool.map(pairs, **options)
