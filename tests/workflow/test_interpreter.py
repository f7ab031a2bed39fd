"""`.venv/bin/snakemake` runs jobs with its own interpreter, with no venv activated.

Rules call `python -m deepmath.<stage>`; without a conda env that `python` must be the one
Snakemake runs under, not whatever comes first on the user's PATH.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from deepmath.workflow import interpreter_first
from tests.paths import REPO


def test_interpreter_folder_goes_first_once() -> None:
    path = os.pathsep.join(["/decoy/bin", "/venv/bin", "/usr/bin"])
    assert interpreter_first(path, "/venv/bin/python") == os.pathsep.join(
        ["/venv/bin", "/decoy/bin", "/usr/bin"]
    )
    assert interpreter_first("", "/venv/bin/python") == "/venv/bin"


def test_a_real_job_runs_under_snakemakes_interpreter_with_a_bare_path(tmp_path: Path) -> None:
    """A decoy `python` first on PATH, no PYTHONPATH, no activated venv: the job still runs."""
    decoy = tmp_path / "bin"
    decoy.mkdir()
    (decoy / "python").write_text("#!/bin/sh\necho 'decoy python ran' >&2\nexit 3\n")
    (decoy / "python").chmod(0o755)
    snakemake = Path(sys.executable).parent / "snakemake"
    assert snakemake.is_file(), f"{snakemake}: run the test from the venv"
    run = "pytest-bare-path"
    target = f"results/{run}/raw/gsm8k_train.parquet"
    env = {
        "PATH": os.pathsep.join([str(decoy), "/usr/bin", "/bin"]),
        "HOME": os.environ.get("HOME", str(tmp_path)),
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
    }
    try:
        proc = subprocess.run(
            [str(snakemake), target, "--profile", "profiles/demo", "--config", f"run={run}"],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        log_file = REPO / f"results/{run}/logs/pull_source/gsm8k_train.log"
        log = log_file.read_text(errors="replace") if log_file.exists() else ""
        assert proc.returncode == 0, f"{proc.stderr[-4000:]}\n{log[-2000:]}"
        assert "decoy python ran" not in proc.stderr + log
        assert (REPO / target).is_file()
    finally:
        subprocess.run(["rm", "-rf", str(REPO / "results" / run)], check=False)
