"""Shared fixtures: repo paths and a venv-aware environment for subprocesses."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from tests.paths import REPO, SMOLLM2


@pytest.fixture(scope="session")
def repo() -> Path:
    return REPO


@pytest.fixture(scope="session")
def venv_env() -> dict[str, str]:
    """Environment for subprocesses: this interpreter's bin first, scripts/ importable, offline."""
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONPATH"] = str(REPO / "scripts")
    env["HF_HUB_OFFLINE"] = "1"
    env["HF_DATASETS_OFFLINE"] = "1"
    return env


@pytest.fixture
def no_timeout_scale(monkeypatch: pytest.MonkeyPatch) -> None:
    """For tests that assert exact timeouts: a DEEPMATH_TIMEOUT_SCALE the user exported for a
    slow machine would stretch them (everywhere else it is welcome)."""
    monkeypatch.delenv("DEEPMATH_TIMEOUT_SCALE", raising=False)


# Real inputs several tests share; the workflow's own rules make them (~40 s on a fresh clone).
# (file that shows it is there, Snakemake target that makes it)
SESSION_TARGETS = [
    (SMOLLM2 / "config.json", SMOLLM2),
    (
        REPO / "results/demo/benchmarks/gsm8k.parquet",
        REPO / "results/demo/benchmarks/gsm8k.parquet",
    ),
]


def pytest_sessionstart(session: pytest.Session) -> None:
    """Build the demo's SmolLM2 HF folder (and a benchmark) once, before tests are collected.

    Several tests run the real tiny model (vLLM serving, TRL, evaluation); on a fresh clone the
    folder does not exist yet, and those tests must run, not skip. Built by the workflow's own
    prepare_model rule (~30 s), shared with `make demo` (results/models/).
    """
    missing = [target for probe, target in SESSION_TARGETS if not probe.exists()]
    if not missing or session.config.option.collectonly:
        return
    import subprocess

    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env.update(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1")
    subprocess.run(
        [sys.executable, "-m", "snakemake", "--profile", "profiles/demo",
         *[str(t.relative_to(REPO)) for t in missing]],
        cwd=REPO, env=env, check=True, capture_output=True,
    )  # fmt: skip
