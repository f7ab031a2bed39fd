"""Signals to a job that holds a model server, at any moment: every run must end cleanly.

A job (a real Python process) holds a real stand-in server: a small HTTP server with a child
process in its group, which lingers a moment after SIGTERM like vLLM draining its requests. The
job gets SIGINT, SIGTERM or SIGHUP while the server is being launched, while the job polls for
readiness, while it serves, or while the job stops it. Whatever the moment, the job must exit
promptly with the status that signal means (128 + n for SIGTERM/SIGHUP inside the managed block,
death by SIGINT for Ctrl-C) and leave nothing behind: no process of the server, no stray child,
no ``tmp/`` in the state folder, no private socket folder. A shared (detached, registered)
server must be stopped, or registered so that ``stop_all`` stops it: never left unrecorded.

The first tests pin the moments that used to go wrong; the last ones send the signals at seeded
random moments, many times.
"""

from __future__ import annotations

import json
import os
import queue
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from deepmath.procs import (
    STOP_SIGNALS,
    Terminated,
    despite_signals,
    signals_deferred,
)
from deepmath.serve import pid_alive, registry_entries, stop_all
from tests.paths import REPO

SCRIPTS = REPO / "scripts"  # the package the jobs import
SIGNALS = [signal.SIGINT, signal.SIGTERM, signal.SIGHUP]
PHASES = ["launch", "readiness", "serving", "stop"]
EXIT_BOUND_S = 30.0  # from the signal to the job's exit (the stand-in stops in < 1 s)
SERVE_S = 0.5  # how long the job's block uses the server before leaving it
LINGER_S = 0.5  # how long the stand-in takes to exit after SIGTERM
READY_DELAY_S = 0.6  # how long the stand-in takes to listen after it starts
WORKERS = 3  # runs at once: more overlap, more timing noise, less wall time

STANDIN = textwrap.dedent(
    """
    import json, signal, subprocess, sys, time
    from http.server import BaseHTTPRequestHandler, HTTPServer

    port, name = int(sys.argv[1]), sys.argv[2]
    linger, delay = float(sys.argv[3]), float(sys.argv[4])
    # A child in the same process group, like vLLM's engine core; its command line names this
    # script, so the test finds it if it outlives the run.
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)", __file__])

    def bye(*_):
        time.sleep(linger)
        child.terminate()
        sys.exit(0)

    signal.signal(signal.SIGTERM, bye)
    time.sleep(delay)

    class H(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):
            if self.path == "/health":
                body = b""
            elif self.path == "/v1/models":
                body = json.dumps({"data": [{"id": name}]}).encode()
            else:
                self.send_response(404); self.end_headers(); return
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    HTTPServer(("127.0.0.1", port), H).serve_forever()
    """
)

# A job holding a per-job server: marks where it is on stdout, then idles after the block.
# argv: run folder, server command, state folder, seconds to serve[, a signal to send itself
# while the server is being forked].
JOB = textwrap.dedent(
    """
    import json, os, sys, time
    from deepmath.serve import ManagedServer, serve_config

    run, cmd, state = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3]
    cfg = serve_config({"model": "m", "served_name": "fake", "startup_timeout_s": 60})
    server = ManagedServer(cfg, run, state_dir=state, command=cmd, stop_grace_s=10)
    if len(sys.argv) > 5:
        os.register_at_fork(before=lambda: os.kill(os.getpid(), int(sys.argv[5])))
    print("enter", flush=True)
    with server:
        print("ready", flush=True)
        time.sleep(float(sys.argv[4]))
    print("left", flush=True)
    time.sleep(600)
    """
)

# A job acquiring a shared server, which outlives it once registered.
# argv: run folder, server command, registry[, the python that runs the launcher].
SHARED_JOB = textwrap.dedent(
    """
    import json, sys, time
    from deepmath.serve import acquire, serve_config

    run, cmd, registry = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3]
    cfg = serve_config({"model": "m", "served_name": "fake", "share": "workflow",
                        "startup_timeout_s": 60})
    python = sys.argv[4] if len(sys.argv) > 4 else None
    print("enter", flush=True)
    acquire(cfg, run, registry=registry, command=cmd, python=python)
    print("left", flush=True)
    time.sleep(600)
    """
)


def default_sigint() -> None:
    """Between fork and exec: Ctrl-C live in the job, as a terminal starts it.

    A shell without job control starts background commands with SIGINT ignored, and Python
    then never raises KeyboardInterrupt; a test run from such a shell must not pass that on.
    """
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def ignored_sigint() -> None:
    """Between fork and exec: the job starts as a background command of a script would."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def exit_code_for(sig: int) -> int:
    """The job's exit status for a signal that lands inside the managed block."""
    return -signal.SIGINT if sig == signal.SIGINT else 128 + sig


def tagged_processes(tag: str) -> list[int]:
    """Live processes whose command line contains ``tag`` (the run's folder)."""
    found = []
    needle = tag.encode()
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            cmdline = Path(entry.path, "cmdline").read_bytes()
        except OSError:
            continue
        if needle in cmdline and pid_alive(int(entry.name)):
            found.append(int(entry.name))
    return found


def kill_leftovers(run_dir: Path) -> list[int]:
    """SIGKILL what a failed run left running (the test's own processes); their pids."""
    leftovers = tagged_processes(str(run_dir))
    for pid in leftovers:
        os.kill(pid, signal.SIGKILL)
    return leftovers


def standin_cmd(run_dir: Path) -> list[str]:
    script = run_dir / "standin.py"
    script.write_text(STANDIN)
    return [sys.executable, str(script), "{port}", "fake", str(LINGER_S), str(READY_DELAY_S)]


def read_lines(stream, lines: queue.Queue) -> None:
    for line in stream:
        lines.put(line.strip())
    lines.put(None)


def spawn(
    argv: list[str],
    run_dir: Path,
    sys_tmp: Path | None = None,
    preexec: Callable[[], None] = default_sigint,
) -> tuple[subprocess.Popen, queue.Queue]:
    """Start a job (stderr to ``run_dir/job.err``); its stdout lines arrive on the queue."""
    env = {**os.environ, "PYTHONPATH": str(SCRIPTS)}
    if sys_tmp is not None:
        env["TMPDIR"] = str(sys_tmp)  # where a private socket folder goes
    with open(run_dir / "job.err", "wb") as err:
        proc = subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=err, text=True, env=env, preexec_fn=preexec
        )
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=read_lines, args=(proc.stdout, lines), daemon=True).start()
    return proc, lines


def wait_for(lines: queue.Queue, seen: list[str], marker: str, timeout: float) -> bool:
    """Collect the job's stdout lines into ``seen`` until ``marker`` (False: not seen)."""
    deadline = time.monotonic() + timeout
    while marker not in seen:
        try:
            line = lines.get(timeout=max(0.01, deadline - time.monotonic()))
        except queue.Empty:
            return False
        if line is None:
            return False
        seen.append(line)
    return True


def wait_exit(proc: subprocess.Popen, timeout: float = EXIT_BOUND_S) -> int | None:
    """The job's exit status, or None (and the job killed) if it ran past ``timeout``."""
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        return None


# --------------------------------------------------------------------------- the holding block


def test_signals_deferred_holds_stop_signals_until_the_block_ends():
    """Inside, a stop signal is noted; the first one is raised when the outermost block ends,
    and the handlers are the previous ones again afterwards."""
    before = {s: signal.getsignal(s) for s in STOP_SIGNALS}
    reached = []
    with pytest.raises(Terminated) as err, signals_deferred():
        signal.raise_signal(signal.SIGHUP)
        with signals_deferred():
            signal.raise_signal(signal.SIGTERM)
        time.sleep(0.01)
        reached.append("the rest of the block")
    assert reached == ["the rest of the block"] and err.value.signum == signal.SIGHUP
    assert {s: signal.getsignal(s) for s in STOP_SIGNALS} == before

    previous = signal.signal(signal.SIGINT, signal.default_int_handler)  # Ctrl-C live
    try:
        with pytest.raises(KeyboardInterrupt), signals_deferred():
            signal.raise_signal(signal.SIGINT)
            reached.append("after Ctrl-C")
        assert reached[-1] == "after Ctrl-C"
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    finally:
        signal.signal(signal.SIGINT, previous)
    with signals_deferred():
        pass  # nothing held from before


def test_despite_signals_finishes_the_action_then_raises():
    """A stop interrupted before it began runs again; the signal is raised once it is done."""
    runs = []

    def stop() -> None:
        runs.append(len(runs))
        if len(runs) == 1:
            raise Terminated(signal.SIGTERM)  # as if SIGTERM landed before the block held it

    with pytest.raises(Terminated):
        despite_signals(stop)
    assert runs == [0, 1]
    despite_signals(stop)  # nothing pending: runs once, raises nothing
    assert runs == [0, 1, 2]


def test_a_server_child_unblocks_stop_signals_and_exits_if_its_parent_is_gone():
    """The preexec function: a mask inherited from the job's launcher does not reach the
    server; a parent already dead before the parent-death signal was armed ends the child."""
    code = textwrap.dedent(
        """
        import json, signal, sys
        from deepmath.procs import child_preexec
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGHUP})
        child_preexec(int(sys.argv[1]))()
        print(json.dumps(sorted(int(s) for s in signal.pthread_sigmask(signal.SIG_BLOCK, []))))
        """
    )
    env = {**os.environ, "PYTHONPATH": str(SCRIPTS)}
    run = [sys.executable, "-c", code]
    ours = subprocess.run([*run, str(os.getpid())], capture_output=True, text=True, env=env)
    assert ours.returncode == 0, ours.stderr
    assert not set(json.loads(ours.stdout)) & {signal.SIGTERM, signal.SIGHUP, signal.SIGINT}
    orphan = subprocess.run([*run, "1"], capture_output=True, text=True, env=env)
    assert orphan.returncode == 128 + signal.SIGTERM and orphan.stdout == ""


# --------------------------------------------------------------------------- pinned moments


@pytest.mark.parametrize("sig", SIGNALS, ids=lambda s: s.name)
def test_a_signal_while_the_server_is_forked_is_not_lost(tmp_path, sig):
    """The handler used to run inside logging's fork hook, where Python prints and drops the
    exception: the job served on, deaf to scancel or Ctrl-C. Now it stops, server and all."""
    state = tmp_path / "state"
    cmd = standin_cmd(tmp_path)
    argv = [sys.executable, "-c", JOB, str(tmp_path), json.dumps(cmd), str(state), "600"]
    proc, lines = spawn([*argv, str(int(sig))], tmp_path)
    code = wait_exit(proc)
    seen: list[str] = []
    wait_for(lines, seen, "(end of output)", 5)
    leftovers = kill_leftovers(tmp_path)
    assert code == exit_code_for(sig), (seen, (tmp_path / "job.err").read_text())
    assert seen == ["enter"] and leftovers == []
    assert not (state / "tmp").exists()


@pytest.mark.parametrize("sig", SIGNALS, ids=lambda s: s.name)
def test_a_signal_as_the_launcher_hands_over_leaves_no_unregistered_server(tmp_path, sig):
    """A shared server's launcher starts it and prints its pid; a signal to the job just then
    used to abandon the server unrecorded, running for good. Now the pid is recorded first."""
    registry = tmp_path / "servers"
    launcher = tmp_path / "python-then-signal"
    launcher.write_text(
        f'#!/bin/sh\n"{sys.executable}" "$@"\ncode=$?\nkill -{int(sig)} $PPID\nexit $code\n'
    )
    launcher.chmod(0o755)
    cmd = standin_cmd(tmp_path)
    argv = [sys.executable, "-c", SHARED_JOB, str(tmp_path), json.dumps(cmd), str(registry)]
    proc, _ = spawn([*argv, str(launcher)], tmp_path)
    code = wait_exit(proc)
    registered = registry_entries(registry)
    stop_all(registry, grace_s=10)
    leftovers = kill_leftovers(tmp_path)
    assert code == exit_code_for(sig), (tmp_path / "job.err").read_text()
    assert registered == [] and leftovers == []


def test_ctrl_c_ignored_by_inheritance_stays_ignored_and_sigterm_still_stops(tmp_path):
    """A background command of a script starts with SIGINT ignored, on purpose (Ctrl-C at the
    terminal is not for it): the job keeps that, and scancel's SIGTERM still stops it all."""
    state = tmp_path / "state"
    argv = [sys.executable, "-c", JOB, str(tmp_path), json.dumps(standin_cmd(tmp_path))]
    proc, lines = spawn([*argv, str(state), "600"], tmp_path, preexec=ignored_sigint)
    try:
        assert wait_for(lines, [], "ready", 60)
        proc.send_signal(signal.SIGINT)
        time.sleep(1.5)
        assert proc.poll() is None and tagged_processes(str(tmp_path))
        proc.send_signal(signal.SIGTERM)
        code = wait_exit(proc)
    finally:
        leftovers = kill_leftovers(tmp_path)
    assert code == 128 + signal.SIGTERM and leftovers == []
    assert not (state / "tmp").exists()


# --------------------------------------------------------------------------- random moments


@dataclass
class Run:
    """One job, one signal (``twice``: a second one while the first is being handled) at one
    moment; ``problems`` lists what did not end cleanly."""

    index: int
    sig: signal.Signals
    phase: str
    delay_s: float
    shared: bool = False
    twice: bool = False
    lines: list[str] = field(default_factory=list)
    code: int | None = None
    exit_s: float | None = None
    problems: list[str] = field(default_factory=list)

    def expected_codes(self) -> set[int]:
        """SIGINT is KeyboardInterrupt anywhere; SIGTERM/SIGHUP raise 128 + n inside the
        managed block and keep their default action (death by the signal) outside it."""
        inside = exit_code_for(self.sig)
        if self.sig == signal.SIGINT:
            return {inside}
        at_the_edges = self.twice or "left" in self.lines or "ready" not in self.lines
        return {inside, -self.sig} if at_the_edges else {inside}

    def describe(self) -> str:
        return (
            f"run {self.index} {self.sig.name}{' twice' if self.twice else ''} during "
            f"{self.phase} (+{self.delay_s:.3f} s): exit {self.code} after {self.exit_s} s, "
            f"saw {self.lines}: {'; '.join(self.problems)}"
        )


def send_at(run: Run, proc: subprocess.Popen, lines: queue.Queue) -> float | None:
    """Wait for the phase's marker, then the run's delay, then signal the job; when sent."""
    if not wait_for(lines, run.lines, "enter", 60):
        run.problems.append("the job never started")
        return None
    if run.phase in ("serving", "stop") and not wait_for(lines, run.lines, "ready", 60):
        run.problems.append("the server never became ready")
        return None
    time.sleep(run.delay_s)
    proc.send_signal(run.sig)
    sent = time.monotonic()
    if run.twice:
        time.sleep(random.Random(run.index).uniform(0.0, LINGER_S))
        proc.send_signal(run.sig)
    return sent


def finish(run: Run, proc: subprocess.Popen, lines: queue.Queue, sent: float) -> None:
    """Wait for the job's exit within the bound and check its status."""
    run.code = wait_exit(proc)
    if run.code is None:
        run.problems.append(f"the job ignored {run.sig.name} for {EXIT_BOUND_S:g} s")
    else:
        run.exit_s = round(time.monotonic() - sent, 2)
    wait_for(lines, run.lines, "(end of output)", 5)
    if run.code is not None and run.code not in run.expected_codes():
        run.problems.append(f"exit status {run.code}, expected one of {run.expected_codes()}")


def check_left_behind(run: Run, run_dir: Path, state: Path, sys_tmp: Path) -> None:
    """Nothing of a per-job server may outlive the job."""
    leftovers = kill_leftovers(run_dir)
    if leftovers:
        run.problems.append(f"processes left running: {leftovers}")
    if (state / "tmp").exists():
        run.problems.append(f"{state / 'tmp'} was not removed")
    if any(sys_tmp.iterdir()):
        run.problems.append(f"private socket folder left: {sorted(os.listdir(sys_tmp))}")


def check_shared_left_behind(run: Run, run_dir: Path, registry: Path) -> None:
    """A shared server may outlive the job only registered: stop_all must leave nothing."""
    stop_all(registry, grace_s=10)
    if registry_entries(registry):
        run.problems.append("stop_all left registry entries")
    leftovers = kill_leftovers(run_dir)
    if leftovers:
        run.problems.append(f"unregistered server processes left running: {leftovers}")


def one_run(run: Run, base: Path) -> Run:
    """Start the job, signal it at the run's moment, check how it ended."""
    run_dir = base / f"run{run.index:02d}"
    run_dir.mkdir()
    cmd = json.dumps(standin_cmd(run_dir))
    sys_tmp = Path(tempfile.mkdtemp(prefix="ds-", dir="/tmp"))  # short: a socket folder fits
    state = run_dir / ("state-folder-" * 6) / "state"  # too deep for unix socket paths
    registry = run_dir / "servers"
    if run.shared:
        argv = [sys.executable, "-c", SHARED_JOB, str(run_dir), cmd, str(registry)]
    else:
        argv = [sys.executable, "-c", JOB, str(run_dir), cmd, str(state), str(SERVE_S)]
    proc, lines = spawn(argv, run_dir, sys_tmp)
    try:
        sent = send_at(run, proc, lines)
        if sent is not None:
            finish(run, proc, lines, sent)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    if run.shared:
        check_shared_left_behind(run, run_dir, registry)
    else:
        check_left_behind(run, run_dir, state, sys_tmp)
    if run.problems:
        tail = (run_dir / "job.err").read_text(errors="replace")[-1500:]
        run.problems.append(f"job stderr:\n{tail}")
    shutil.rmtree(sys_tmp, ignore_errors=True)
    return run


def delay_for(phase: str, rng: random.Random, shared: bool = False) -> float:
    """Seconds after the phase's marker ('enter'; 'ready' for serving and stop)."""
    if phase == "launch":  # a shared server is launched through a launcher process
        return rng.uniform(0.0, 0.4 if shared else 0.05)
    if phase == "readiness":
        return rng.uniform(0.05, 1.2)
    if phase == "serving":
        return rng.uniform(0.0, SERVE_S * 0.9)
    return SERVE_S + rng.uniform(0.0, LINGER_S)


def run_all(runs: list[Run], base: Path) -> list[Run]:
    with ThreadPoolExecutor(WORKERS) as pool:
        return list(pool.map(lambda r: one_run(r, base), runs))


def report(done: list[Run]) -> str:
    failed = [r for r in done if r.problems]
    lines = [f"{len(failed)} of {len(done)} runs did not end cleanly"]
    return "\n".join(lines + [r.describe() for r in failed])


@pytest.mark.parametrize("sig", SIGNALS, ids=lambda s: s.name)
def test_a_signal_at_any_moment_stops_the_job_and_its_server(tmp_path, sig):
    """15 runs per signal: 3 in each phase, and 3 with a second signal during the stop."""
    rng = random.Random(f"per-job {sig.name}")
    runs = [Run(i, sig, phase, delay_for(phase, rng)) for i, phase in enumerate(PHASES * 3)]
    runs += [
        Run(len(runs) + i, sig, "readiness", delay_for("readiness", rng), twice=True)
        for i in range(3)
    ]
    done = run_all(runs, tmp_path)
    assert not any(r.problems for r in done), report(done)


@pytest.mark.parametrize("sig", SIGNALS, ids=lambda s: s.name)
def test_a_signal_while_acquiring_a_shared_server_leaves_none_unregistered(tmp_path, sig):
    """6 runs per signal, while the shared server is launched or awaited."""
    rng = random.Random(f"shared {sig.name}")
    runs = [
        Run(i, sig, phase, delay_for(phase, rng, shared=True), shared=True)
        for i, phase in enumerate(["launch", "readiness"] * 3)
    ]
    done = run_all(runs, tmp_path)
    assert not any(r.problems for r in done), report(done)
