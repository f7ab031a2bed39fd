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


def _python_in(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "python").write_text("#!/bin/sh\n")
    (folder / "python").chmod(0o755)
    return folder / "python"


def test_interpreter_folder_goes_first_once(tmp_path: Path) -> None:
    decoy, venv, system = (tmp_path / d for d in ("decoy/bin", "venv/bin", "usr/bin"))
    for other in (decoy, system):
        _python_in(other)
    python = _python_in(venv)
    path = os.pathsep.join(map(str, [decoy, venv, system]))
    assert interpreter_first(path, str(python)) == os.pathsep.join(map(str, [venv, decoy, system]))
    assert interpreter_first("", str(python)) == str(venv)


def test_path_is_left_alone_when_its_python_is_already_the_interpreter(tmp_path: Path) -> None:
    """An activated venv: nothing moves (e.g. no system folder jumps ahead of module paths)."""
    venv, system = tmp_path / "venv/bin", tmp_path / "usr/bin"
    python = _python_in(venv)
    _python_in(system)
    (venv / "python3").symlink_to(python)
    path = os.pathsep.join(map(str, [venv, system]))
    assert interpreter_first(path, str(venv / "python3")) == path
    # a python elsewhere that links to the same base interpreter is still not this one
    other = tmp_path / "base/bin"
    other.mkdir(parents=True)
    (other / "python").symlink_to(python)
    assert interpreter_first(str(other), str(python)).split(os.pathsep)[0] == str(venv)


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
