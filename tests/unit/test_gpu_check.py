"""scripts/gpu_check.py's CPU side: which scorer's pass@1 it reports, and where the authors'
interpreter comes from on a GPU machine that cannot reach PyPI."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from deepmath.io import DeepmathError

REPO = Path(__file__).resolve().parents[2]


def load_gpu_check():
    spec = importlib.util.spec_from_file_location("gpu_check", REPO / "scripts" / "gpu_check.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


gpu_check = load_gpu_check()


def metrics(authors: float, ours: float) -> dict:
    """A metrics.json as the score step writes it: each scorer's metrics under ``scorers``."""
    return {
        "model_name": "m",
        "bench": "math500",
        "problems": 20,
        "scorers": {
            "authors": {"pass@1": authors, "pass@1_std": 0.0},
            "ours": {"pass@1": ours, "pass@1_std": 0.0},
        },
        "scorer_disagreement": {"authors_only": 1, "ours_only": 3},
        "authors_env": {"is_exact": True},
    }


@pytest.mark.parametrize("scorer, expected", [("authors", 40.0), ("ours", 45.0)])
def test_the_eval_pass_at_1_is_the_configured_scorers_with_both_beside_it(scorer, expected):
    summary = gpu_check.eval_summary(metrics(40.0, 45.0), scorer)
    assert summary["pass@1"] == expected
    assert summary["scorer"] == scorer
    assert summary["pass@1_by_scorer"] == {"authors": 40.0, "ours": 45.0}
    assert (summary["only_authors_accept"], summary["only_ours_accept"]) == (1, 3)
    assert summary["authors_env_exact"] is True


def test_metrics_written_before_the_two_scorers_are_refused_with_how_to_rescore():
    old = {"model_name": "m", "bench": "math500", "problems": 20, "pass@1": 40.0}
    with pytest.raises(DeepmathError, match="score them again"):
        gpu_check.eval_summary(old, "authors")


def test_the_configured_scorer_is_the_one_the_results_table_prints():
    assert gpu_check.configured_scorer() in ("authors", "ours")


def env_with(python: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "DEEPMATH_AUTHORS_PYTHON"}
    if python:
        env["DEEPMATH_AUTHORS_PYTHON"] = python
    return env


def test_a_named_interpreter_wins_even_before_it_is_checked(tmp_path):
    plan = gpu_check.authors_plan(
        "/elsewhere/python", tmp_path / "wheels", tmp_path, env_with(None)
    )
    assert plan == {"source": "given", "python": "/elsewhere/python"}


def test_an_existing_interpreter_from_the_environment_is_used(tmp_path):
    plan = gpu_check.authors_plan(None, tmp_path / "wheels", tmp_path, env_with(sys.executable))
    assert plan == {"source": "given", "python": sys.executable}


def test_a_found_interpreter_missing_here_gives_way_to_the_wheels(tmp_path):
    """A copied .venv-authors (or a stale variable) points at a Python this machine lacks."""
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    (wheels / "sympy-1.13.1-py3-none-any.whl").write_bytes(b"")
    plan = gpu_check.authors_plan(None, wheels, tmp_path / "out", env_with("/gone/bin/python"))
    assert plan["source"] == "wheels"
    assert plan["python"] == str(tmp_path / "out" / "venv-authors" / "bin" / "python")


def test_an_env_built_by_an_earlier_check_is_reused(tmp_path):
    built = tmp_path / "venv-authors" / "bin" / "python"
    built.parent.mkdir(parents=True)
    built.symlink_to(sys.executable)
    plan = gpu_check.authors_plan(None, tmp_path / "none", tmp_path, env_with("/gone/python"))
    assert plan == {"source": "built", "python": str(built)}


@pytest.mark.parametrize("make_dir", [False, True], ids=["no-folder", "empty-folder"])
def test_no_interpreter_and_no_wheels_stops_before_the_gpu_with_what_to_do(tmp_path, make_dir):
    wheels = tmp_path / "wheels"
    if make_dir:
        wheels.mkdir()
    env = env_with("/gone/python")
    assert gpu_check.authors_plan(None, wheels, tmp_path, env)["source"] == "missing"
    with pytest.raises(SystemExit) as stop:
        gpu_check.authors_interpreter(None, wheels, tmp_path, env)
    message = str(stop.value)
    assert str(wheels) in message
    assert "pip download" in message and "requirements/authors.txt" in message
    assert "make venv-authors" in message


def test_plan_mode_names_the_authors_interpreter_without_building_it(tmp_path):
    out = subprocess.run(
        [
            sys.executable,
            str(REPO / "scripts" / "gpu_check.py"),
            "--plan",
            "--out",
            str(tmp_path / "out"),
            "--authors-wheels",
            str(tmp_path / "none"),
        ],
        env=env_with("/gone/python"),
        capture_output=True,
        text=True,
        check=True,
    )
    plan = json.loads(out.stdout)
    assert plan["authors"]["source"] == "missing"
    assert "pip download" in out.stderr
    assert not (tmp_path / "out").exists()


WHEELS = Path(os.environ.get("DEEPMATH_AUTHORS_WHEELS") or REPO / gpu_check.AUTHORS_WHEELS)


@pytest.mark.skipif(
    not gpu_check.wheel_files(WHEELS),
    reason=f"no wheels of requirements/authors.txt in {WHEELS} ($DEEPMATH_AUTHORS_WHEELS)",
)
def test_the_env_built_offline_from_the_wheels_has_the_authors_versions(tmp_path):
    python = gpu_check.build_authors_venv(WHEELS, tmp_path / "venv-authors")
    record = tmp_path / "authors.json"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "deepmath.answers.authors.pool",
            "where",
            "--authors-python",
            python,
            "--out",
            str(record),
        ],
        env={**os.environ, "PYTHONPATH": str(REPO / "scripts")},
        check=True,
        capture_output=True,
    )
    found = json.loads(record.read_text())
    assert found["python"] == python
    assert found["environment"]["sympy"] == "1.13.1"
    assert found["environment"]["antlr4-python3-runtime"] == "4.11.0"
