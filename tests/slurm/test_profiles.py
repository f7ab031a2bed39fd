"""The Slurm profiles, inspected without a cluster: dry runs of the paper DAG (no network),
the per-rule mapping they produce, runtime by attempt, and the rule graph.

The dry runs use a copy of profiles/site.yaml with `software: none`: a dry run with
`software-deployment-method: conda` asks `conda info`, and this machine has no conda. Everything
else (partitions, GPU types, account, runtime cap) is the shipped site file. When `unshare --net`
is available (root) the dry runs run in a network namespace with no interfaces: they cannot
touch the network, and pass.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pytest
import yaml

from tests.slurm.helpers import REPO, dry_run_jobs

PROFILES = ["slurm", "slurm-h20", "slurm-a100"]
SITE = yaml.safe_load((REPO / "profiles" / "site.yaml").read_text())
# GPUs per node and nodes of the heavy rules at paper scale, per profile.
EXPECTED = {
    "slurm": {"judge_contamination": (8, 1), "solve": (8, 1), "solve_supplement": (8, 1)},
    "slurm-h20": {"judge_contamination": (8, 1), "solve": (8, 1), "solve_supplement": (8, 1)},
    "slurm-a100": {"judge_contamination": (8, 1), "solve": (8, 2), "solve_supplement": (8, 2)},
}
# the audit's judge is curation's judge role, on one node
for _p in EXPECTED:
    EXPECTED[_p]["judge_audit"] = (8, 1)
for _p in PROFILES:
    EXPECTED[_p].update(
        {
            "embed_benchmarks": (1, 1),
            "embed_pool": (1, 1),
            "generate_eval": (1, 1),
            "embed_compare": (1, 1),
            "analysis_novelty": (1, 1),
            "analysis_contamination": (1, 1),
            "embed_audit": (1, 1),
            "embed_audit_benchmarks": (1, 1),
        }
    )


def _no_network() -> list[str]:
    """A prefix that runs a command without network, where this machine allows it."""
    if shutil.which("unshare") and os.geteuid() == 0:
        probe = subprocess.run(["unshare", "--net", "true"], capture_output=True)
        if probe.returncode == 0:
            return ["unshare", "--net", "--"]
    return []


NO_NET = _no_network()


@pytest.fixture(scope="module")
def site_file(tmp_path_factory) -> Path:
    site = {**SITE, "software": "none"}
    path = tmp_path_factory.mktemp("site") / "site.yaml"
    path.write_text(yaml.safe_dump(site))
    return path


def _env(venv_env, site: Path) -> dict[str, str]:
    return {**venv_env, "DEEPMATH_SITE": str(site)}


def _snakemake(args, env, timeout=300) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [*NO_NET, "timeout", "-k", "10", str(timeout), sys.executable, "-m", "snakemake", *args],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _finish(proc: subprocess.Popen[str], what: str) -> str:
    out, _ = proc.communicate()
    assert proc.returncode == 0, f"{what} failed ({proc.returncode}):\n{out[-6000:]}"
    return out


@pytest.fixture(scope="module")
def dry_runs(venv_env, site_file) -> dict[str, list[dict[str, str]]]:
    """`snakemake -n --profile profiles/<p>` of the paper config, all three at once."""
    procs = {
        p: _snakemake(["-n", "--profile", f"profiles/{p}"], _env(venv_env, site_file))
        for p in PROFILES
    }
    return {
        p: dry_run_jobs(_finish(proc, f"dry run under profiles/{p}")) for p, proc in procs.items()
    }


@pytest.fixture(scope="module")
def plain_jobs(venv_env) -> list[dict[str, str]]:
    """The paper DAG with no profile: every job with the resources its rule declares."""
    out = _finish(
        _snakemake(["-n", "--configfile", "config/config.yaml", "--cores", "8"], venv_env),
        "dry run without profile",
    )
    return dry_run_jobs(out)


@pytest.fixture(scope="module")
def rule_runtimes(plain_jobs) -> dict[str, int]:
    """Each rule's own runtime."""
    return {j["rule"]: int(j["res.runtime"]) for j in plain_jobs if "res.runtime" in j}


def _gres(profile: str, gpus: int) -> str:
    gpu_type = SITE["profiles"][profile]["gpu_type"]
    return f"gpu:{gpu_type}:{gpus}" if gpu_type else f"gpu:{gpus}"


@pytest.mark.parametrize("profile", PROFILES)
def test_heavy_rules_get_their_gpus_nodes_and_runtime(profile, dry_runs, plain_jobs, rule_runtimes):
    jobs = [j for j in dry_runs[profile] if j["rule"] != "all"]
    assert len(dry_runs[profile]) == len(plain_jobs)  # the profile changes no job, only resources
    parts = SITE["profiles"][profile]
    by_rule = defaultdict(list)
    for job in jobs:
        by_rule[job["rule"]].append(job)

    for rule, (gpus, nodes) in EXPECTED[profile].items():
        assert by_rule[rule], rule
        for job in by_rule[rule]:
            assert int(job["res.gpus"]) == gpus, (rule, job)
            assert int(job.get("res.nodes", 1)) == nodes, (rule, job)
            assert job["res.gres"] == _gres(profile, gpus), (rule, job)
            assert job["res.slurm_partition"] == parts["gpu"], (rule, job)
            # attempt 1 runs with the rule's own runtime
            assert int(job["res.runtime"]) == min(rule_runtimes[rule], SITE["max_runtime"])
            if nodes > 1:
                assert job["res.mpi"] == "srun"
                assert int(job["res.tasks"]) == nodes
                assert int(job["res.tasks_per_gpu"]) == 0
                assert job["res.slurm_extra"] == "--exclusive"
            else:
                assert "res.mpi" not in job and "res.tasks" not in job

    # Every job: a partition and a wall time; a GPU request exactly when the rule needs GPUs.
    for job in jobs:
        assert job["res.slurm_partition"] in (parts["cpu"], parts["gpu"], parts["online"])
        assert int(job["res.runtime"]) > 0
        gpus = int(job.get("res.gpus", 0))
        if gpus:
            assert job.get("res.gres") == _gres(profile, gpus), job
        else:
            assert "res.gres" not in job, job
            assert job["res.slurm_partition"] != parts["gpu"] or parts["gpu"] == parts["cpu"]


# nodes per training run (rl.runs.<model>.nodes), 8 GPUs each: the four GRPO runs and the two
# SFT baselines
TRAINING = {
    "deepmath-zero-7b": 8,
    "deepmath-zero-math-7b": 12,
    "deepmath-1.5b": 8,
    "deepmath-omn-1.5b": 12,
    "qwen25-7b-sft": 2,
    "qwen25-7b-sft-x3": 2,
}


@pytest.mark.parametrize("profile", PROFILES)
def test_training_jobs_get_whole_nodes_one_task_each(profile, dry_runs):
    parts = SITE["profiles"][profile]
    jobs = [j for j in dry_runs[profile] if j["rule"] in ("train_grpo", "train_sft")]
    got = {j["wildcards"].split("=", 1)[1]: j for j in jobs}
    assert sorted(got) == sorted(TRAINING)
    for model, nodes in TRAINING.items():
        job = got[model]
        assert (int(job["res.nodes"]), int(job["res.gpus"])) == (nodes, 8), job
        assert int(job["res.tasks"]) == nodes and job["res.mpi"] == "srun", job
        assert int(job["res.tasks_per_gpu"]) == 0 and job["res.slurm_extra"] == "--exclusive"
        assert job["res.gres"] == _gres(profile, 8)
        assert job["res.slurm_partition"] == parts["gpu"]


def test_a_one_node_training_run_is_not_an_mpi_job(venv_env, site_file, tmp_path):
    """The Slurm plugin refuses an MPI job of one task: a 1-node run gets no `mpi`."""
    overlay = tmp_path / "one-node.yaml"
    overlay.write_text("rl:\n  runs:\n    deepmath-1.5b: {nodes: 1}\n")
    target = "results/deepmath-103k/checkpoints/deepmath-1.5b/verl.done.json"
    args = ["-n", "--profile", "profiles/slurm", "--configfile", "config/config.yaml"]
    out = _finish(
        _snakemake([*args, str(overlay), "--", target], _env(venv_env, site_file)),
        "one-node dry run",
    )
    job = next(j for j in dry_run_jobs(out) if j["rule"] == "train_grpo")
    assert int(job["res.nodes"]) == 1 and int(job["res.gpus"]) == 8
    assert not job.get("res.mpi"), job


def test_a100_serves_deepseek_r1_over_two_nodes(dry_runs):
    solve = [j for j in dry_runs["slurm-a100"] if j["rule"] == "solve"]
    assert len(solve) == 64
    for job in solve:
        assert job["res.nodes"] == "2", job
        spec = re.search(r"--role-spec '([^']*)'", job["shell"]).group(1)
        # placement is a run-only key: it reaches the job through DEEPMATH_RUNTIME, so moving
        # the solver to two nodes reruns no solve job
        assert '"nodes"' not in spec and '"model": "deepseek_r1"' in spec, spec
    from deepmath.config import load_config, validate_config
    from deepmath.workflow import runtime_settings

    a100 = load_config([REPO / "config/config.yaml", REPO / "profiles/slurm-a100/overrides.yaml"])
    validate_config(a100)
    serve = runtime_settings(a100)["llm"]["solver"]["serve"]
    assert (serve["nodes"], serve["pipeline_parallel"], serve["tensor_parallel"]) == (2, 2, 8)
    # the overlay changes the solver only: the judge still serves on one node
    judge = next(j for j in dry_runs["slurm-a100"] if j["rule"] == "judge_contamination")
    assert judge.get("res.nodes", "1") == "1"
    assert runtime_settings(a100)["llm"]["judge"].get("serve", {}).get("nodes", 1) == 1
    h20 = next(j for j in dry_runs["slurm-h20"] if j["rule"] == "solve")
    assert h20.get("res.nodes", "1") == "1"


def _load_profile(profile: str, site: Path, monkeypatch) -> dict:
    """A profile as Snakemake reads it (YTE evaluated, key=value lists)."""
    from snakemake.profiles import ProfileConfigFileParser

    monkeypatch.setenv("DEEPMATH_SITE", str(site))
    with open(REPO / "profiles" / profile / "config.yaml") as fh:
        return dict(ProfileConfigFileParser().parse(fh))


def _set_resources(parsed: dict) -> dict[str, dict[str, str]]:
    out: dict[str, dict[str, str]] = defaultdict(dict)
    for item in parsed["set-resources"]:
        rule, assign = item.split(":", 1)
        key, value = assign.split("=", 1)
        out[rule][key] = value
    return dict(out)


def test_runtime_grows_with_the_attempt_up_to_the_site_cap(monkeypatch, rule_runtimes):
    parsed = _load_profile("slurm", REPO / "profiles" / "site.yaml", monkeypatch)
    assert int(parsed["retries"]) >= 1
    cap = SITE["max_runtime"]
    resources = _set_resources(parsed)
    # every rule that runs as a job has a runtime by attempt, based on its own runtime
    assert set(rule_runtimes) <= set(resources)
    for rule, base in rule_runtimes.items():
        expr = resources[rule]["runtime"]
        for attempt in (1, 2, 3):
            assert eval(expr, {"attempt": attempt}) == min(base * attempt, cap), (rule, expr)


def test_profiles_agree_except_gpu_type_partitions_and_topology(monkeypatch):
    site = REPO / "profiles" / "site.yaml"
    loaded = {p: _load_profile(p, site, monkeypatch) for p in PROFILES}
    generic = _set_resources(loaded["slurm"])
    multi_node = {"mpi", "tasks", "tasks_per_gpu", "slurm_extra"}
    for profile in ("slurm-h20", "slurm-a100"):
        res = _set_resources(loaded[profile])
        assert set(res) == set(generic), profile
        for rule, values in res.items():
            extra = set(values) - set(generic[rule])
            if profile == "slurm-a100" and rule in ("solve", "solve_supplement"):
                assert extra == multi_node, (profile, rule)
            else:
                assert not extra, (profile, rule, extra)
            for key, value in generic[rule].items():
                if key in ("slurm_partition", "gres"):
                    continue  # site-specific per profile
                assert values[key] == value, (profile, rule, key)
        # the top-level options are the same too (configfile aside)
        top = {
            k: v
            for k, v in loaded[profile].items()
            if k not in ("set-resources", "default-resources", "configfile")
        }
        base = {
            k: v
            for k, v in loaded["slurm"].items()
            if k not in ("set-resources", "default-resources")
        }
        assert top == base, profile
    assert loaded["slurm-a100"]["configfile"] == [
        "config/config.yaml",
        "profiles/slurm-a100/overrides.yaml",
    ]
    # the shipped site file asks for conda envs
    assert loaded["slurm"]["software-deployment-method"] == "conda"


def test_site_account_and_qos_reach_the_jobs(venv_env, site_file, tmp_path, monkeypatch):
    site = yaml.safe_load(site_file.read_text())
    site.update(account="proj123", qos="normal")
    path = tmp_path / "site.yaml"
    path.write_text(yaml.safe_dump(site))
    out = _finish(
        _snakemake(
            ["-n", "--profile", "profiles/slurm-h20", "results/deepmath-103k/pool/stats.json"],
            _env(venv_env, path),
        ),
        "dry run with an account",
    )
    jobs = dry_run_jobs(out)
    assert jobs and all(j["res.slurm_account"] == "proj123" for j in jobs if j["rule"] != "all")
    # the QoS is an executor setting (sbatch --qos), not a job resource
    assert _load_profile("slurm-h20", path, monkeypatch)["slurm-qos"] == "normal"
    assert "slurm-qos" not in _load_profile("slurm-h20", site_file, monkeypatch)


def test_missing_site_file_says_what_to_do(venv_env, tmp_path):
    env = _env(venv_env, tmp_path / "nowhere.yaml")
    proc = _snakemake(["-n", "--profile", "profiles/slurm"], env)
    out, _ = proc.communicate()
    assert proc.returncode != 0
    assert "nowhere.yaml" in out and "DEEPMATH_SITE" in out


def test_one_shard_under_a_slurm_profile_runs_only_its_upstream(venv_env, site_file):
    out = _finish(
        _snakemake(
            [
                "-n",
                "--profile",
                "profiles/slurm-a100",
                "results/deepmath-103k/decontam/shard-0007.judged.parquet",
            ],
            _env(venv_env, site_file),
        ),
        "partial dry run",
    )
    counts = defaultdict(int)
    for job in dry_run_jobs(out):
        counts[job["rule"]] += 1
    assert counts == {
        "pull_source": 3,  # the pool sources (not the supplement)
        "build_pool": 1,
        "pull_benchmark": 17,
        "prepare_model": 2,  # embedder + judge
        "embed_benchmarks": 1,
        "embed_pool": 1,
        "retrieve_neighbors": 1,
        "judge_contamination": 1,
    }
    judge = next(j for j in dry_run_jobs(out) if j["rule"] == "judge_contamination")
    assert judge["wildcards"] == "shard=0007" and judge["res.gres"] == _gres("slurm-a100", 8)


def test_rulegraph_renders_under_a_slurm_profile(venv_env, site_file):
    proc = subprocess.run(
        [
            *NO_NET,
            sys.executable,
            "-m",
            "snakemake",
            "--rulegraph",
            "--profile",
            "profiles/slurm-a100",
        ],
        cwd=REPO,
        env=_env(venv_env, site_file),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    dot = proc.stdout
    assert dot.lstrip().startswith("digraph"), dot[:500]
    for rule in ("pull_source", "judge_contamination", "solve", "assemble_dataset"):
        assert rule in dot
    if shutil.which("dot"):
        svg = subprocess.run(["dot", "-Tsvg"], input=dot, capture_output=True, text=True)
        assert svg.returncode == 0 and "<svg" in svg.stdout, svg.stderr
