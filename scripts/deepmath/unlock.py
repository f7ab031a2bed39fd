"""Recover a working directory that a killed Snakemake left locked, when that is safe.

Snakemake locks its working directory while it runs. When Snakemake itself is killed (SIGKILL,
an OOM kill, a closed terminal without hangup handling) the lock stays, and the next run stops
on ``LockException`` until someone runs ``snakemake --unlock``. Unlocking is only safe when
nothing of the old run is still alive: a second Snakemake, or a job the dead one started (the
local executor's jobs can outlive it), would write the same outputs.

``python -m deepmath.unlock -- <snakemake args>`` checks for such processes (their working
directory is this one and their command line is Snakemake's or one of our stage modules'),
refuses with their pids if there are any, and otherwise runs ``snakemake --unlock`` with the
same arguments. ``make demo`` calls it first, so after a kill the same command resumes: the
demo profile's ``rerun-incomplete`` redoes the jobs that were in flight, and every LLM job's
journal replays the requests that were already answered.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

from deepmath.io import DeepmathError, run_cli


def _ancestors() -> set[int]:
    """Our pid and our parents' (make, the shell): they run in this directory too."""
    pids, pid = set(), os.getpid()
    while pid > 1 and pid not in pids:
        pids.add(pid)
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            break
        pid = int(stat.rsplit(")", 1)[1].split()[1])
    return pids


def _started_by_snakemake(pid: int) -> bool:
    """A job shell of the local executor: bash sets ``_`` to the program that ran it."""
    try:
        env = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except OSError:
        return False
    return any(v.startswith(b"_=") and v.endswith(b"/snakemake") for v in env)


def _processes() -> Iterator[tuple[int, Path, list[str]]]:
    """(pid, working directory, argv) of every process we may inspect."""
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        pid = int(entry.name)
        try:
            cwd = Path(os.readlink(f"/proc/{pid}/cwd"))
            raw = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:  # gone, or not ours to read
            continue
        argv = [a.decode("utf-8", "replace") for a in raw.split(b"\0") if a]
        if argv:
            yield pid, cwd, argv


def is_workflow_process(argv: Sequence[str]) -> bool:
    """Snakemake itself (``snakemake ...``, ``python -m snakemake``) or one of its jobs here
    (a ``deepmath`` stage module, or the shell line that runs one)."""
    words = [w for arg in argv for w in arg.split()]
    if any(Path(w).name == "snakemake" for w in words):
        return True
    return any(w.startswith("deepmath.") for w in words)


def holders(workdir: str | os.PathLike[str]) -> list[tuple[int, str]]:
    """Live processes of a workflow run in ``workdir``: (pid, command line), ours excluded.

    Snakemake, our stage modules, and any job shell Snakemake started (a killed Snakemake's
    local jobs live on, re-parented).
    """
    if not Path("/proc/self/cwd").exists():
        raise DeepmathError("cannot inspect processes here (no /proc); unlock by hand")
    here = Path(workdir).resolve()
    mine = _ancestors()
    found = []
    for pid, cwd, argv in _processes():
        if pid in mine or cwd != here:
            continue
        if is_workflow_process(argv) or _started_by_snakemake(pid):
            found.append((pid, " ".join(argv)[:200]))
    return sorted(found)


def recover(workdir: Path, snakemake_args: Sequence[str], snakemake: str) -> int:
    """Unlock ``workdir`` when no process of an earlier run is alive; 1 (and why) if one is."""
    alive = holders(workdir)
    if alive:
        lines = "\n".join(f"  pid {pid}: {cmd}" for pid, cmd in alive)
        print(
            f"not unlocking {workdir}: a workflow process still runs there\n{lines}\n"
            "wait for it, or stop it (kill <pid>) and run the same command again",
            file=sys.stderr,
        )
        return 1
    proc = subprocess.run(
        [snakemake, "--unlock", *snakemake_args],
        cwd=workdir,
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout + proc.stderr)
        return proc.returncode
    return 0


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m deepmath.unlock",
        description=(
            "Remove the lock a killed Snakemake left, unless a process of that run is still "
            "alive in the directory. Give the arguments of the run after --."
        ),
    )
    parser.add_argument("--directory", "-d", default=".", help="Snakemake's working directory")
    parser.add_argument("snakemake_args", nargs=argparse.REMAINDER, help="-- snakemake args")
    args = parser.parse_args(argv)
    rest = args.snakemake_args[1:] if args.snakemake_args[:1] == ["--"] else args.snakemake_args
    here = Path(sys.executable).parent / "snakemake"
    snakemake = str(here) if here.exists() else (shutil.which("snakemake") or "snakemake")
    sys.exit(recover(Path(args.directory), rest, snakemake))


if __name__ == "__main__":
    run_cli(main)
