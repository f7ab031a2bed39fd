"""Style gates the project promises: ruff, snakefmt and snakemake --lint all clean."""

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def run(*cmd: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)


def test_ruff_clean(venv_env):
    proc = run(str(BIN / "ruff"), "check", "scripts", "tests", env=venv_env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    proc = run(str(BIN / "ruff"), "format", "--check", "scripts", "tests", env=venv_env)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_snakefmt_clean(venv_env):
    proc = run(str(BIN / "snakefmt"), "--check", "Snakefile", "rules", env=venv_env)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_snakemake_lint_clean(venv_env):
    for configfile in ("config/demo.yaml", "config/config.yaml"):
        proc = run(
            sys.executable, "-m", "snakemake", "--lint", "--configfile", configfile, env=venv_env
        )
        assert proc.returncode == 0, proc.stdout + proc.stderr
