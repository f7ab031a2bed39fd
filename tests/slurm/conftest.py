"""Fixtures of the Slurm tests: the local cluster, its site file, a Ray venv, Snakemake runs.

- ``slurm_cluster`` (session): installs Debian's Slurm + munge with apt when missing, starts
  munged, slurmctld and two slurmd (127.0.<slot>.2/.3, 8 fake GPUs each) in a temp folder, stops
  them at the end. Tests that use it are skipped, with the reason, only where the machine
  cannot run it (not root, not Linux, no apt to install Slurm).
- ``slurm_env``: the environment Snakemake runs in against that cluster: the workflow's venv
  and scripts/ first on PATH/PYTHONPATH, the cluster's client wrappers, DEEPMATH_SITE pointing at
  a site file with the cluster's partitions and ``software: none`` (no conda here).
- ``llm_server`` / ``llm_overlay`` (session): one vLLM CPU server for SmolLM2 started on this
  machine with ``python -m deepmath.serve start --registry`` (the demo's serve block, detached;
  ``stop-all`` ends it), and a config overlay
  pointing every LLM role of the demo at it (``serve: null`` + ``base_url``). Slurm jobs on the
  local nodes reach it at 127.0.0.1; a per-job server would cost ~50 s of two busy cores per job.
- ``ray_venv`` / ``ray_bin`` (session): a small venv with Ray (CPU wheel from PyPI, pinned), kept
  in ``.venv-ray/`` at the repository root (git-ignored) and reused by later sessions (Ray is not
  part of the workflow's .venv); ``ray_bin`` is a folder with its ``python`` and a ``ray`` whose
  ``stop`` only ends the test job's Ray processes (probe/ray_scoped.py). Skipped, with the
  reason, where PyPI cannot be reached.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from deepmath.config import read_yaml
from tests.paths import REPO, SMOLLM2
from tests.slurm import cluster as slurm

RAY_VERSION = "2.60.0"
RAY_VENV = REPO / ".venv-ray"
# Every Snakemake run against the cluster is killed after this long (timeout -k), so a plugin
# that never sees its jobs finish fails the test instead of hanging CI.
RUN_TIMEOUT_S = int(os.environ.get("DEEPMATH_SLURM_RUN_TIMEOUT", "600"))


@pytest.fixture(scope="session")
def slurm_cluster(tmp_path_factory):
    reason = slurm.unavailable_reason()
    if reason:
        pytest.skip(reason)
    try:
        installed = slurm.ensure_installed()
    except (slurm.ClusterError, subprocess.TimeoutExpired, OSError) as err:
        # apt is there but failed (no network, broken lists): an error, not a reason to skip
        pytest.fail(f"cannot install Slurm with apt: {err}", pytrace=False)
    cluster = slurm.LocalSlurm(tmp_path_factory.mktemp("slurm"))
    took = cluster.start()
    print(f"\nlocal Slurm: {installed}; up in {took:.1f} s under {cluster.root}")
    yield cluster
    cluster.stop()


@pytest.fixture(scope="session")
def slurm_site(slurm_cluster) -> Path:
    """A site.yaml for the local cluster: its partitions and GPU type for every profile."""
    parts = {
        "cpu": slurm_cluster.partitions[0],
        "gpu": slurm_cluster.partitions[1],
        "online": slurm_cluster.partitions[0],
    }
    site = {
        "account": "",
        "qos": "",
        "max_runtime": 600,
        "software": "none",
        "profiles": {
            "slurm": {**parts, "gpu_type": ""},
            "slurm-h20": {**parts, "gpu_type": slurm_cluster.gpu_type},
            "slurm-a100": {**parts, "gpu_type": slurm_cluster.gpu_type},
        },
    }
    path = slurm_cluster.root / "site.yaml"
    path.write_text(yaml.safe_dump(site, sort_keys=False))
    return path


@pytest.fixture(scope="session")
def slurm_env(slurm_cluster, slurm_site) -> dict[str, str]:
    env = slurm_cluster.env(os.environ)
    env["PATH"] = (
        f"{slurm_cluster.bin}{os.pathsep}{Path(sys.executable).parent}{os.pathsep}"
        + (env["PATH"].split(os.pathsep, 1)[1])
    )
    env["PYTHONPATH"] = str(REPO / "scripts")
    env["HF_HUB_OFFLINE"] = "1"
    env["HF_DATASETS_OFFLINE"] = "1"
    env["DEEPMATH_SITE"] = str(slurm_site)
    return env


# The LLM roles of the demo (all SmolLM2, one serve block).
DEMO_ROLES = tuple(read_yaml(REPO / "config" / "demo.yaml")["llm"])


@pytest.fixture(scope="session")
def llm_server(venv_env, tmp_path_factory):
    """base_url of one vLLM CPU server for the demo's SmolLM2 (config/demo.yaml's serve block),
    started detached and stopped the way the workflow does it for a local run:
    ``python -m deepmath.serve start --registry DIR`` and ``stop-all --registry DIR``."""
    registry = tmp_path_factory.mktemp("llm-server") / "registry"
    serve = [sys.executable, "-m", "deepmath.serve"]
    start = time.monotonic()
    proc = subprocess.run(
        [*serve, "start", "--config", "config/demo.yaml", "--role", "judge"]
        + ["--model-dir", str(SMOLLM2), "--registry", str(registry)],
        cwd=REPO,
        env=venv_env,
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        pytest.fail(f"the LLM server did not start:\n{proc.stderr[-4000:]}", pytrace=False)
    url = json.loads(proc.stdout)["base_url"]
    print(f"\nLLM server for the Slurm tests: {url}, up in {time.monotonic() - start:.0f} s")
    yield url
    subprocess.run([*serve, "stop-all", "--registry", str(registry)], env=venv_env, check=True)


@pytest.fixture(scope="session")
def llm_overlay(llm_server, tmp_path_factory) -> Path:
    """A config overlay: every LLM role of the demo talks to `llm_server` (no server per job)."""
    path = tmp_path_factory.mktemp("llm-overlay") / "llm-server.yaml"
    roles = {role: {"serve": None, "base_url": llm_server} for role in DEMO_ROLES}
    path.write_text(yaml.safe_dump({"llm": roles}, sort_keys=False))
    return path


@pytest.fixture(scope="session")
def ray_venv() -> Path:
    """bin/ of a venv with ray==RAY_VERSION (created once in .venv-ray/, then reused)."""
    ray = RAY_VENV / "bin" / "ray"
    if ray.is_file():
        out = subprocess.run([str(ray), "--version"], capture_output=True, text=True, timeout=120)
        if RAY_VERSION in out.stdout:
            return ray.parent
    start = time.monotonic()
    shutil.rmtree(RAY_VENV, ignore_errors=True)
    try:
        subprocess.run(
            [sys.executable, "-m", "venv", str(RAY_VENV)], check=True, capture_output=True
        )
        proc = subprocess.run(
            [str(RAY_VENV / "bin" / "pip"), "install", "--quiet", f"ray=={RAY_VERSION}"],
            capture_output=True,
            text=True,
            timeout=600,
        )
    except (subprocess.SubprocessError, OSError) as err:
        shutil.rmtree(RAY_VENV, ignore_errors=True)
        pytest.skip(f"cannot create a venv for Ray: {err}")
    if proc.returncode != 0:
        shutil.rmtree(RAY_VENV, ignore_errors=True)
        pytest.skip(
            f"cannot install ray=={RAY_VERSION} from PyPI (needed for the 2-node Ray test): "
            f"{proc.stderr.strip()[-500:]}"
        )
    print(f"\nray {RAY_VERSION} installed in {RAY_VENV} in {time.monotonic() - start:.0f} s")
    return ray.parent


@pytest.fixture(scope="session")
def ray_bin(ray_venv, tmp_path_factory) -> Path:
    """A bin/ with `ray` (the real CLI, but a `stop` scoped to the job: probe/ray_scoped.py)
    and `python` (the Ray venv's), for PATH after the workflow's own python."""
    bin_dir = tmp_path_factory.mktemp("ray-bin")
    wrapper = bin_dir / "ray"
    wrapper.write_text(
        f"#!/bin/sh\nDEEPMATH_TEST_RAY_BIN={ray_venv}\nexport DEEPMATH_TEST_RAY_BIN\n"
        f'exec {ray_venv}/python {REPO}/tests/slurm/probe/ray_scoped.py "$@"\n'
    )
    wrapper.chmod(0o755)
    # A script, not a symlink: Python finds its venv from the path it was started as.
    python = bin_dir / "python"
    python.write_text(f'#!/bin/sh\nexec {ray_venv}/python "$@"\n')
    python.chmod(0o755)
    return bin_dir
