"""Snakemake runs for the Slurm tests: in the background, always under `timeout -k`."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PROBE_SNAKEFILE = REPO / "tests" / "slurm" / "probe" / "Snakefile"
# `timeout` exit codes: 124 after TERM; when TERM was ignored, -k sends KILL to the whole
# process group, timeout included: 137 in a shell, -9 for Popen.
TIMED_OUT = (124, 137, -9)


class SnakemakeRun:
    """``timeout -k 15 LIMIT python -m snakemake ARGS`` started now, waited for later.

    Output goes to ``log`` (not a pipe, so a chatty run cannot block on a full pipe).
    """

    def __init__(
        self,
        name: str,
        args: Sequence[str],
        *,
        env: Mapping[str, str],
        log: Path,
        timeout_s: int,
        cwd: Path = REPO,
    ):
        self.name, self.args, self.log, self.timeout_s = name, list(args), log, timeout_s
        self.cmd = [
            "timeout",
            "-k",
            "15",
            str(timeout_s),
            sys.executable,
            "-m",
            "snakemake",
            *self.args,
        ]
        log.parent.mkdir(parents=True, exist_ok=True)
        self.started = time.time()
        with open(log, "wb") as out:
            self.proc = subprocess.Popen(
                self.cmd,
                cwd=cwd,
                env=dict(env),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.seconds: float | None = None

    def wait(self) -> int:
        # timeout(1) ends it; the margin only covers a timeout that itself misbehaves.
        try:
            code = self.proc.wait(timeout=self.timeout_s + 60)
        except subprocess.TimeoutExpired:
            self.kill()
            code = self.proc.wait()
        if self.seconds is None:
            # the log's last write is when the run ended (it may be long before this wait)
            self.seconds = self.log.stat().st_mtime - self.started
        return code

    @property
    def output(self) -> str:
        text = self.log.read_text(errors="replace")
        # The job commands carry long base64 arguments; they only hide the useful lines.
        return re.sub(r"base64//\S+", "base64//...", text)

    def check(self, diagnostics: str = "") -> str:
        """Wait; on failure raise with the run's output (and the cluster's logs)."""
        code = self.wait()
        if code == 0:
            return self.output
        what = (
            f"was killed after {self.timeout_s} s (a hang: jobs never reported finished?)"
            if code in TIMED_OUT
            else f"failed with exit code {code}"
        )
        raise AssertionError(
            f"snakemake run '{self.name}' {what}\n$ {' '.join(self.args)}\n"
            f"{self.output[-8000:]}\n{diagnostics}"
        )

    def kill(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, signal.SIGKILL)


def slurm_job_ids(output: str) -> dict[str, list[str]]:
    """Rule name -> Slurm job ids, from the 'submitted with SLURM jobid' lines of a run."""
    ids: dict[str, list[str]] = {}
    for jobid, rule in re.findall(
        r"submitted with SLURM jobid (\d+) \(log: \S*/rule_([A-Za-z0-9_]+)/", output
    ):
        ids.setdefault(rule, []).append(jobid)
    return ids


def parse_resources(line: str) -> dict[str, str]:
    """``resources: a=1, b=x`` (as Snakemake prints it) -> {'a': '1', 'b': 'x'}."""
    body = line.split("resources:", 1)[1]
    out = {}
    for item in body.split(", "):
        key, sep, value = item.strip().partition("=")
        if sep:
            out[key] = value
    return out


def dry_run_jobs(output: str) -> list[dict[str, str]]:
    """Every job block of a (dry) run's output: rule, wildcards, resources, shell."""
    jobs: list[dict[str, str]] = []
    current: dict[str, str] | None = None
    for line in output.splitlines():
        match = re.match(r"^(?:local)?rule (\w+):$", line)
        if match:
            current = {"rule": match.group(1)}
            jobs.append(current)
            continue
        if current is None:
            continue
        stripped = line.strip()
        if stripped.startswith("resources:"):
            current.update({f"res.{k}": v for k, v in parse_resources(stripped).items()})
        elif stripped.startswith("wildcards:"):
            current["wildcards"] = stripped.split(":", 1)[1].strip()
        elif line.startswith("Shell command:") or stripped.startswith("shell:"):
            current["shell"] = line.split(":", 1)[1].strip()
        elif not stripped:
            current = None
    return jobs
