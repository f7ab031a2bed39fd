"""Child processes we start and must always stop: process groups, signals, no pid reuse.

The bottom of the package: the vLLM server manager, the Ray launcher and the verl trainer all
run their children in a process group of their own (``start_new_session=True``) and end them
the same way, SIGTERM to the whole group, a grace period, then SIGKILL, so no worker outlives
its job. SIGTERM/SIGHUP to us (``scancel``, a Snakemake cancel) become an exception inside
:func:`signals_raise`, so ``with`` blocks unwind and stop what they started; Ctrl-C stays
Python's KeyboardInterrupt.

Python runs a signal's handler in the main thread at its next bytecode, wherever that is (the
kernel may hand the signal to any thread: numpy's, torch's). Two places make an exception
raised there harmful: between a child's fork and the line that records its pid (the child runs
on, unknown to anyone), and inside code whose exceptions Python prints and drops, such as the
fork hooks logging registers, or finalizers (the signal is lost, and the job runs on as if never
told to stop). So children are started and stopped inside :func:`signals_deferred`: a stop
signal arriving there is noted and raised when the block ends.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

log = logging.getLogger("deepmath.procs")

STOP_GRACE_S = 20.0

# What a job is asked to stop with: scancel and Snakemake (SIGTERM), a closed terminal
# (SIGHUP), Ctrl-C (SIGINT).
STOP_SIGNALS = (signal.SIGTERM, signal.SIGHUP, signal.SIGINT)


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


def kill_group(pgid: int) -> None:
    """SIGKILL a whole process group at once, no grace (a worker past a hard deadline, whose
    half-done work is worthless); a group that is already gone is not an error."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


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


_holders: list[object] = []  # one token per open signals_deferred block (main thread)
_held: list[int] = []  # stop signals that came while a block held them, first first


def _signal_exception(signum: int) -> BaseException:
    return KeyboardInterrupt() if signum == signal.SIGINT else Terminated(signum)


def _handler(signum: int, frame: Any) -> None:
    """Raise the signal's exception now, or note it while a signals_deferred block is open."""
    if _holders:
        if signum not in _held:
            _held.append(signum)
        return
    _held.clear()  # raising now answers any noted before
    raise _signal_exception(signum)


@contextlib.contextmanager
def _holding() -> Iterator[None]:
    """While open, :func:`_handler` notes signals; the first noted is raised when the last
    such block closes. The token is added inside ``try`` so no exception between the two
    can leave signals held forever."""
    token = object()
    try:
        _holders.append(token)
        yield
    finally:
        if token in _holders:
            _holders.remove(token)
        if not _holders and _held:
            signum = _held[0]
            _held.clear()
            raise _signal_exception(signum)


@contextlib.contextmanager
def signals_raise(signums: Sequence[int] = (signal.SIGTERM, signal.SIGHUP)) -> Iterator[None]:
    """Within the block, SIGTERM/SIGHUP raise :class:`Terminated` (main thread only).

    Ctrl-C raises KeyboardInterrupt as usual, through the same handler so that
    :func:`signals_deferred` can hold it back too; a SIGINT the process inherited as ignored
    (a background command of a non-interactive shell) stays ignored. The previous handlers come
    back afterwards even when a signal lands while they are being swapped: that one is held and
    raised once they are all back (Ctrl-C's last, as its own handler raises at once).
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    wanted = list(signums)
    ctrl_c = signal.getsignal(signal.SIGINT) is signal.default_int_handler
    if ctrl_c and signal.SIGINT not in wanted:
        wanted.append(signal.SIGINT)
    previous: dict[int, Any] = {}
    try:
        for s in wanted:
            previous[s] = signal.getsignal(s)
            signal.signal(s, _handler)
        yield
    finally:
        with _holding():
            for s in sorted(previous, key=lambda s: s == signal.SIGINT):
                signal.signal(s, previous[s])


@contextlib.contextmanager
def signals_deferred() -> Iterator[None]:
    """Hold SIGTERM/SIGHUP/SIGINT back while the block runs; the first one that came is raised
    (:class:`Terminated`, KeyboardInterrupt) when it ends.

    For the moments an exception must not land: a child forked but its pid not yet recorded,
    Python's fork hooks (which would drop it, losing the signal), a stop half done. Nested
    blocks raise at the end of the outermost. A flag, not the kernel's signal mask: the mask is
    per thread, and the kernel delivers a signal to any thread that does not block it.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    with signals_raise(), _holding():
        yield


def despite_signals(action: Callable[[], None]) -> None:
    """Run the idempotent ``action`` to its end inside :func:`signals_deferred`; a signal's
    exception that cut into it is raised once it is done.

    A signal delivered just before the block still has its handler run at the next bytecode,
    possibly before ``action`` began: ``action`` then runs again, until one run got through, so
    a stop cannot be skipped by a second Ctrl-C or a SIGTERM on top of one.
    """
    interrupted: BaseException | None = None
    while True:
        try:
            with signals_deferred():
                action()
        except (Terminated, KeyboardInterrupt) as err:
            if interrupted is None:
                interrupted = err
            continue
        break
    if interrupted is not None:
        raise interrupted


def child_preexec(parent_pid: int) -> Callable[[], None]:
    """The ``preexec_fn`` of a server child: runs in it between fork and exec.

    It asks for SIGTERM when the parent dies (Linux), so the server never outlives a SIGKILLed
    job; if the parent ``parent_pid`` is already gone (it died before that request took effect,
    so no signal would ever come) the child exits at once. It also unblocks the stop signals: a
    signal mask survives exec, and a server that inherited a blocked SIGTERM from its job's own
    launcher would ignore every stop until SIGKILL.
    """

    def preexec() -> None:
        with contextlib.suppress(OSError, AttributeError):
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
        if os.getppid() != parent_pid:
            os._exit(128 + signal.SIGTERM)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)

    return preexec


def end_group(proc: subprocess.Popen[bytes], grace_s: float = STOP_GRACE_S) -> bool:
    """Stop a child started with ``start_new_session=True`` and everything in its group.

    The leader may exit at SIGTERM while its workers linger (``srun`` forwarding to a remote
    step, Ray or vLLM workers): the whole group is waited for, not only the leader.
    """
    return stop_group(proc.pid, grace_s=grace_s, proc=proc)
