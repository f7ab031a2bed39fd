"""After Snakemake itself is SIGKILLed, one command recovers, and only when that is safe.

A tiny real workflow: a job that sleeps (its shell line names a ``deepmath.`` module, as every
job of ours does), Snakemake killed with SIGKILL while it runs. The
next run stops on the lock; ``deepmath.unlock`` refuses while the orphaned job still runs in
the directory, then (once it is gone) unlocks, and the same command finishes the work.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from deepmath.unlock import holders, is_workflow_process

SNAKEMAKE = str(Path(sys.executable).parent / "snakemake")

SNAKEFILE = textwrap.dedent(
    """
    rule all:
        input: "done.txt"

    rule slow:
        output: "done.txt"
        shell: ": deepmath.stage; sleep $(cat sleep_s) && echo ok > {output:q}"
    """
)


def _snakemake(workdir: Path, *args: str, **kw) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [SNAKEMAKE, "--cores", "1", "--rerun-incomplete", *args],
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=120,
        **kw,
    )


def _jobs(workdir: Path) -> list[int]:
    """The job shells of the run (Snakemake itself excluded)."""
    return [pid for pid, cmd in holders(workdir) if "deepmath.stage" in cmd]


def _in_dir(workdir: Path) -> list[int]:
    here, found = workdir.resolve(), []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            try:
                if Path(os.readlink(entry / "cwd")) == here:
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def _unlock(workdir: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "deepmath.unlock", "--", "--cores", "1"],
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["/venv/bin/python", "/venv/bin/snakemake", "--profile", "profiles/demo"], True),
        (["python", "-m", "snakemake", "-n"], True),
        (["/bin/bash", "-c", "set -euo pipefail;  python -m deepmath.solve --in x"], True),
        (["python", "-m", "deepmath.llmstage"], True),
        (["python", "-m", "pytest", "tests/unit"], False),
        (["vim", "scripts/deepmath/solve.py"], False),
        (["python", "-m", "vllm.entrypoints.openai.api_server", "--model", "m"], False),
    ],
)
def test_what_counts_as_a_process_of_the_run(argv, expected):
    assert is_workflow_process(argv) is expected


def test_a_killed_snakemake_is_recovered_with_one_command(tmp_path):
    (tmp_path / "Snakefile").write_text(SNAKEFILE)
    (tmp_path / "sleep_s").write_text("600")
    run = subprocess.Popen(
        [SNAKEMAKE, "--cores", "1", "--rerun-incomplete"],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not _jobs(tmp_path):
        time.sleep(0.2)
    assert _jobs(tmp_path), "the job did not start"
    os.kill(run.pid, signal.SIGKILL)  # Snakemake only; its job lives on
    run.wait()

    locked = _snakemake(tmp_path)
    assert locked.returncode != 0 and "locked" in (locked.stdout + locked.stderr).lower()

    alive = holders(tmp_path)
    assert alive, "the orphaned job should hold the directory"
    refused = _unlock(tmp_path)
    assert refused.returncode == 1
    assert f"pid {alive[0][0]}" in refused.stderr and "not unlocking" in refused.stderr

    for pid in _in_dir(tmp_path):  # the user stops the orphan (its shell and its sleep)
        os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while holders(tmp_path) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert holders(tmp_path) == []

    (tmp_path / "sleep_s").write_text("0")
    assert _unlock(tmp_path).returncode == 0
    done = _snakemake(tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    assert (tmp_path / "done.txt").read_text() == "ok\n"
    assert _unlock(tmp_path).returncode == 0  # nothing to do: still fine
