"""The Ray-over-Slurm launcher (deepmath.raycluster): node lists and command lines.

The lifecycle itself needs Ray and a multi-node Slurm allocation; the Slurm tests (issue 6) run
it on the local cluster. Here: the pure parts, and the errors a user meets without Ray or Slurm.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

from deepmath.io import DeepmathError
from deepmath.raycluster import (
    RayCluster,
    expand_hostlist,
    head_command,
    job_nodes,
    plan,
    probe_command,
    stop_command,
    worker_command,
)


@pytest.mark.parametrize(
    ("text", "hosts"),
    [
        ("node1", ["node1"]),
        ("a,b", ["a", "b"]),
        ("gpu[01-03,7]", ["gpu01", "gpu02", "gpu03", "gpu7"]),
        ("gpu[08-10],login1", ["gpu08", "gpu09", "gpu10", "login1"]),
        ("n[1-2]-ib,x", ["n1-ib", "n2-ib", "x"]),
    ],
)
def test_expand_hostlist(text, hosts):
    assert expand_hostlist(text) == hosts


def test_job_nodes_explicit_env_and_missing():
    assert job_nodes(["h1", "h2"]) == ["h1", "h2"]
    assert job_nodes("h[1-2] h3") == ["h1", "h2", "h3"]
    env = {"SLURM_JOB_NODELIST": "gpu[1-2]"}
    assert job_nodes(env=env, scontrol="/nonexistent/scontrol") == ["gpu1", "gpu2"]
    with pytest.raises(DeepmathError, match="not inside a Slurm job.*--nodes"):
        job_nodes(env={}, scontrol="/nonexistent/scontrol")
    with pytest.raises(DeepmathError, match="cannot expand"):
        expand_hostlist("n[5-2]")


def test_head_and_worker_commands():
    assert head_command("10.0.0.1", port=6380, num_gpus=8) == [
        "ray",
        "start",
        "--head",
        "--node-ip-address=10.0.0.1",
        "--port=6380",
        "--num-gpus=8",
        "--include-dashboard=false",
        "--disable-usage-stats",
        "--block",
    ]
    # --nodes/--ntasks explicit: the Snakemake jobstep strips SLURM_* from the rule's shell.
    assert worker_command("gpu2", "10.0.0.1:6380", node_ip="10.0.0.2", num_gpus=8) == [
        "srun",
        "--nodes=1",
        "--ntasks=1",
        "--ntasks-per-node=1",
        "--overlap",
        "--kill-on-bad-exit=0",
        "-w",
        "gpu2",
        "--gres=gpu:8",
        "ray",
        "start",
        "--address=10.0.0.1:6380",
        "--node-ip-address=10.0.0.2",
        "--num-gpus=8",
        "--disable-usage-stats",
        "--block",
    ]
    cpu_worker = worker_command("n2", "h:1", num_cpus=4, ray="/env/bin/ray", srun="/usr/bin/srun")
    assert cpu_worker[0] == "/usr/bin/srun" and "--gres" not in " ".join(cpu_worker)
    assert cpu_worker[-5:] == [
        "start",
        "--address=h:1",
        "--num-cpus=4",
        "--disable-usage-stats",
        "--block",
    ]
    assert stop_command() == ["ray", "stop", "--force"]
    assert stop_command("n2")[-4:] == ["n2", "ray", "stop", "--force"]
    assert (
        probe_command("h:1", python="/py")[:2] == ["/py", "-c"]
        and probe_command("h:1")[-1] == "h:1"
    )


def test_plan_covers_every_node():
    steps = plan(
        ["gpu1", "gpu2", "gpu3"],
        ips={"gpu1": "10.0.0.1", "gpu2": "10.0.0.2", "gpu3": "10.0.0.3"},
        num_gpus=8,
    )
    assert steps["address"] == "10.0.0.1:6379"
    assert "--node-ip-address=10.0.0.1" in steps["head"]
    assert sorted(steps["workers"]) == ["gpu2", "gpu3"]
    assert "--node-ip-address=10.0.0.3" in steps["workers"]["gpu3"]
    # ray stop on each worker through srun, then on the head itself.
    assert [c[7] for c in steps["stop"][:2]] == ["gpu2", "gpu3"]
    assert steps["stop"][-1] == ["ray", "stop", "--force"]


def test_without_ray_or_srun_the_errors_say_what_is_missing(tmp_path):
    cluster = RayCluster(["localhost"], ray="/nonexistent/ray", log_dir=tmp_path)
    with pytest.raises(DeepmathError, match="ray CLI .* is not installed"):
        cluster.start()
    fake_ray = shutil.which("true")  # a real executable standing in for the ray CLI
    cluster = RayCluster(
        ["localhost", "n2"],
        ray=fake_ray,
        srun="/nonexistent/srun",
        ips={"localhost": "127.0.0.1", "n2": "x"},
    )
    with pytest.raises(DeepmathError, match="srun.* not found"):
        cluster.start()
    with pytest.raises(DeepmathError, match="at least one node"):
        RayCluster([])


def test_cli_dry_run_prints_the_plan(venv_env):
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "deepmath.raycluster",
            "run",
            "--nodes",
            "localhost,gpu[2-3]",
            "--num-gpus",
            "4",
            "--dry-run",
            "--",
            "python",
            "train.py",
        ],
        capture_output=True,
        text=True,
        env=venv_env,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    steps = json.loads(out.stdout)
    assert steps["nodes"] == ["localhost", "gpu2", "gpu3"]
    assert steps["address"] == "127.0.0.1:6379"
    assert sorted(steps["workers"]) == ["gpu2", "gpu3"]
    assert steps["command"] == ["python", "train.py"]
    help_out = subprocess.run(
        [sys.executable, "-m", "deepmath.raycluster", "run", "--help"],
        capture_output=True,
        text=True,
        env=venv_env,
        timeout=60,
    )
    assert help_out.returncode == 0 and "--dry-run" in help_out.stdout
