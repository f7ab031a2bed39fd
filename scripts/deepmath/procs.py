"""Child processes we start and must always stop: process groups, signals, no pid reuse.

The bottom of the package: the vLLM server manager, the Ray launcher and the verl trainer all
run their children in a process group of their own (``start_new_session=True``) and end them
the same way, SIGTERM to the whole group, a grace period, then SIGKILL, so no worker outlives
its job. SIGTERM/SIGHUP to us (``scancel``, a Snakemake cancel) become an exception inside
:func:`signals_raise`, so ``with`` blocks unwind and stop what they started.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

log = logging.getLogger("deepmath.procs")

STOP_GRACE_S = 20.0


class Terminated(SystemExit):
    """Raised in the main thread on SIGTERM/SIGHUP so ``with`` blocks unwind and clean up."""

    def __init__(self, signum: int):
        super().__init__(128 + signum)
        self.signum = signum


def _proc_stat(pid: int) -> tuple[str, int, int] | None:
    """(state, process group, start time in clock ticks) from /proc, None if gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    fields = text.rsplit(")", 1)[1].split()
    return fields[0], int(fields[2]), int(fields[19])


_HAS_PROC = Path("/proc/self/stat").exists()


def pid_start_time(pid: int) -> int | None:
    stat = _proc_stat(pid) if _HAS_PROC else None
    return stat[2] if stat else None


def pid_alive(pid: int, start_time: int | None = None) -> bool:
    """Running (not a zombie) and, when given, started at ``start_time`` (no pid reuse)."""
    if _HAS_PROC:
        stat = _proc_stat(pid)
        if stat is None or stat[0] in ("Z", "X"):
            return False
        return start_time is None or stat[2] == start_time
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def group_members(pgid: int) -> list[int]:
    """Live (non-zombie) processes of a process group."""
    if not _HAS_PROC:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return []
        except PermissionError:
            pass
        return [pgid]
    members = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            stat = _proc_stat(int(entry.name))
            if stat and stat[1] == pgid and stat[0] not in ("Z", "X"):
                members.append(int(entry.name))
    return members


def stop_group(
    pgid: int, *, grace_s: float = STOP_GRACE_S, proc: subprocess.Popen[bytes] | None = None
) -> bool:
    """SIGTERM the whole group, wait up to ``grace_s``, then SIGKILL; True if it had to kill."""
    killed = False
    if group_members(pgid):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        while group_members(pgid) and time.monotonic() < deadline:
            if proc is not None:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=0.2)
            else:
                time.sleep(0.2)
        if group_members(pgid):
            log.warning("process group %d ignored SIGTERM for %.0f s: SIGKILL", pgid, grace_s)
            killed = True
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pgid, signal.SIGKILL)
            deadline = time.monotonic() + 10
            while group_members(pgid) and time.monotonic() < deadline:
                time.sleep(0.1)
    if proc is not None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=5)
    return killed


@contextlib.contextmanager
def signals_raise(signums: Sequence[int] = (signal.SIGTERM, signal.SIGHUP)) -> Iterator[None]:
    """Within the block, SIGTERM/SIGHUP raise :class:`Terminated` (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        raise Terminated(signum)

    previous = {s: signal.signal(s, handler) for s in signums}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


@contextlib.contextmanager
def signals_blocked() -> Iterator[None]:
    """Defer SIGTERM/SIGHUP/SIGINT while cleaning up; they are delivered afterwards."""
    blocked = {signal.SIGTERM, signal.SIGHUP, signal.SIGINT}
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = signal.pthread_sigmask(signal.SIG_BLOCK, blocked)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def parent_death_signal() -> None:  # runs in the child between fork and exec
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def end_group(proc: subprocess.Popen[bytes], grace_s: float = STOP_GRACE_S) -> bool:
    """Stop a child started with ``start_new_session=True`` and everything in its group.

    The leader may exit at SIGTERM while its workers linger (``srun`` forwarding to a remote
    step, Ray or vLLM workers): the whole group is waited for, not only the leader.
    """
    return stop_group(proc.pid, grace_s=grace_s, proc=proc)
