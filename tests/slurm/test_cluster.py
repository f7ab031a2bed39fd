"""The Slurm profiles on a real Slurm cluster: slurmctld + two slurmd with 8 fake GPUs each,
started on this machine by the `slurm_cluster` fixture (tests/slurm/cluster.py).

Every run goes through the real profiles (profiles/slurm, profiles/slurm-a100) stacked with the
CI overlay profiles/ci-slurm (squeue status, short polls) and a site file naming the cluster's
partitions. Runs are started in the background by the `runs` fixture (each under `timeout -k`,
so a hang fails its test instead of CI) and each test waits for its own:

- demo_slurm / demo_local: the demo DAG up to the published dataset (32 jobs, a smaller
  overlay) on Slurm, and the same target with the local executor (profiles/demo), under two run
  names. Their LLM roles all talk to one vLLM CPU server the `llm_server` fixture started on
  this machine (base_url), which both runs share;
- probe_generic: tests/slurm/probe's GPU rules and a rule that fails once (profiles/slurm);
- probe_sacct: the plugin's default status command (sacct) on a cluster without accounting;
- served_slurm: one LLM job that starts its own vLLM CPU server inside its Slurm job, as
  every LLM job does on a GPU cluster (started last: vLLM's start needs the cores);
- probe_a100: the 2-node rule of profiles/slurm-a100 starting Ray over both nodes (started
  when the others have ended; see `Runs`).
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.slurm.conftest import DEMO_ROLES, RUN_TIMEOUT_S
from tests.slurm.helpers import (
    PROBE_SNAKEFILE,
    REPO,
    TIMED_OUT,
    SnakemakeRun,
    slurm_job_ids,
)

pytestmark = pytest.mark.slurm

DEMO_CONFIGS = ["config/demo.yaml", "tests/slurm/config/demo-subset.yaml"]
SLURM_RUN, LOCAL_RUN, SERVED_RUN = "slurm-ci", "slurm-ci-local", "slurm-ci-served"
DEMO_JOBS = {
    "pull_source": 5,
    "pull_benchmark": 2,
    "prepare_model": 1,  # MiniLM only: the LLM roles use the shared server
    "build_pool": 1,
    "embed_benchmarks": 1,
    "embed_pool": 2,
    "retrieve_neighbors": 2,
    "judge_contamination": 2,
    "decontaminate": 2,
    "rate_difficulty": 2,
    "rate_supplement": 1,
    "rewrite_questions": 2,
    "solve": 2,
    "solve_supplement": 1,
    "verify_answers": 2,
    "classify_topic": 2,
    "topic_supplement": 1,
    "assemble_dataset": 1,
}
SACCT_TIMEOUT_S = 100
# Which background runs each test needs (only those of the selected tests are started).
NEEDS = {
    "test_demo_subset_on_slurm_matches_the_local_run": ("demo_slurm", "demo_local"),
    "test_gpu_rules_get_their_gpus": ("probe_generic",),
    "test_failed_job_is_detected_and_retried_with_more_runtime": ("probe_generic",),
    "test_two_node_rule_starts_ray_over_both_nodes": ("probe_a100",),
    "test_llm_job_starts_and_stops_its_own_server_on_slurm": ("served_slurm",),
    "test_sacct_without_accounting_hangs_and_the_timeout_catches_it": ("probe_sacct",),
}


def _demo_args(
    run: str,
    profiles: list[str],
    *,
    target: str = "dataset/README.md",
    models_dir: str | None = None,
    overlays: list[Path] = (),
    extra: list[str] = (),
) -> list[str]:
    """A run of the Slurm demo config (DEMO_CONFIGS + overlays) under its own run name."""
    # targets first: --configfile takes every argument after it
    args = [f"results/{run}/{target}"]
    for profile in profiles:
        args += ["--profile", profile]
    return [
        *args,
        *extra,
        "--config",
        f"run={run}",
        f"models_dir={models_dir or f'results/{run}/models'}",
        "--configfile",
        *DEMO_CONFIGS,
        *map(str, overlays),
    ]


class Runs:
    """The background runs of this module, started in three phases.

    Phase 1 starts at once: the GPU/retry probe and the sacct probe (the probes' jobs are tiny
    shell commands), then the two demo runs (once the LLM server is up). Phase 2, the 2-node
    Ray job, starts when phase 1 has ended: Ray's start needs a machine that is not saturated,
    and its job needs both nodes whole (--exclusive) anyway. Phase 3, the LLM job that starts
    its own vLLM server, comes last for the same reason. Only the runs of the selected tests
    are started.
    """

    PHASES = {
        "demo_slurm": 1,
        "demo_local": 1,
        "probe_generic": 1,
        "probe_sacct": 1,
        "probe_a100": 2,
        "served_slurm": 3,
    }

    def __init__(self, request, cluster, slurm_env, venv_env, tmp_path_factory, needed):
        self.request, self.cluster, self.tmp = request, cluster, tmp_path_factory
        self.slurm_env, self.venv_env = slurm_env, venv_env
        self.needed = needed
        self.logs = tmp_path_factory.mktemp("runs")
        self.started: dict[str, SnakemakeRun | str] = {}
        self._start_phase(1)

    def get(self, name: str) -> SnakemakeRun:
        phase = self.PHASES[name]
        if name not in self.started:
            for other, run in self.started.items():
                if self.PHASES[other] < phase and isinstance(run, SnakemakeRun):
                    run.wait()
            self._start_phase(phase)
        run = self.started[name]
        if isinstance(run, str):
            pytest.skip(run)
        return run

    def kill(self) -> None:
        for run in self.started.values():
            if isinstance(run, SnakemakeRun):
                run.kill()

    def _start(self, name, args, env, workdir=None, timeout_s=RUN_TIMEOUT_S):
        run = SnakemakeRun(name, args, env=env, log=self.logs / f"{name}.log", timeout_s=timeout_s)
        run.workdir = workdir
        self.started[name] = run

    def _start_phase(self, phase: int) -> None:
        todo = [n for n, p in self.PHASES.items() if p == phase and n in self.needed]
        # the probes first: the demo runs wait for the LLM server to be up (~1 min)
        todo.sort(key=lambda n: n.startswith("demo_"))
        ci = ["--profile", "profiles/ci-slurm"]
        probe = ["-s", str(PROBE_SNAKEFILE)]
        for name in todo:
            if name == "demo_slurm":
                shutil.rmtree(REPO / "results" / SLURM_RUN, ignore_errors=True)
                args = _demo_args(
                    SLURM_RUN,
                    ["profiles/slurm", "profiles/ci-slurm"],
                    overlays=[self.request.getfixturevalue("llm_overlay")],
                    extra=["--slurm-logdir", f"results/{SLURM_RUN}/slurm-logs"],
                )
                self._start(name, args, self.slurm_env)
            elif name == "demo_local":
                shutil.rmtree(REPO / "results" / LOCAL_RUN, ignore_errors=True)
                overlay = self.request.getfixturevalue("llm_overlay")
                args = _demo_args(LOCAL_RUN, ["profiles/demo"], overlays=[overlay])
                self._start(name, args, self.venv_env)
            elif name == "probe_generic":
                wd = self.tmp.mktemp("probe-generic")
                targets = ["probe/gpu8.txt", "probe/gpu1.txt", "probe/retried.txt"]
                args = ["--profile", "profiles/slurm", *ci, *probe, "--directory", str(wd)]
                self._start(name, [*args, *targets], self.slurm_env, wd)
            elif name == "probe_sacct":
                # no CI overlay: the plugin's default status command (sacct)
                wd = self.tmp.mktemp("probe-sacct")
                args = ["--profile", "profiles/slurm", *probe, "--directory", str(wd)]
                args += ["--slurm-init-seconds-before-status-checks", "2", "probe/gpu1.txt"]
                self._start(name, args, self.slurm_env, wd, timeout_s=SACCT_TIMEOUT_S)
            elif name == "served_slurm":
                shutil.rmtree(REPO / "results" / SERVED_RUN, ignore_errors=True)
                args = _demo_args(
                    SERVED_RUN,
                    ["profiles/slurm", "profiles/ci-slurm"],
                    target="supplement/math_level3to5.difficulty.parquet",
                    # the demo's prepared SmolLM2 (tests/conftest.py builds it)
                    models_dir="results/models",
                    extra=["--slurm-logdir", f"results/{SERVED_RUN}/slurm-logs"],
                )
                self._start(name, args, self.slurm_env)
            elif name == "probe_a100":
                try:
                    ray_bin = self.request.getfixturevalue("ray_bin")
                except pytest.skip.Exception as skip:
                    self.started[name] = str(skip)
                    continue
                wd = self.tmp.mktemp("probe-a100")
                args = ["--profile", "profiles/slurm-a100", *ci, *probe, "--directory", str(wd)]
                # one attempt: a Ray start that fails should fail the test, not wait 3 times
                args += ["--retries", "0", "--config", f"ray_bin={ray_bin}", "--"]
                self._start(name, [*args, "probe/ray.json"], self.slurm_env, wd)


@pytest.fixture(scope="module")
def runs(request, slurm_cluster, slurm_env, venv_env, tmp_path_factory):
    selected = {i.originalname for i in request.session.items if i.module is request.module}
    needed = {name for test in selected for name in NEEDS.get(test, ())}
    runs = Runs(request, slurm_cluster, slurm_env, venv_env, tmp_path_factory, needed)
    yield runs
    runs.kill()


def _run(runs: Runs, name: str) -> SnakemakeRun:
    run = runs.get(name)
    run.wait()
    print(f"\n{name}: ended {run.seconds:.0f} s after it started")
    return run


def test_cluster_is_up_with_two_gpu_nodes(slurm_cluster):
    assert slurm_cluster.start_seconds is not None and slurm_cluster.start_seconds < 60
    states = slurm_cluster.node_states()
    assert sorted(states) == [n.name for n in slurm_cluster.nodes]
    gres = slurm_cluster.run("sinfo", "-h", "-N", "-o", "%N %G").stdout
    assert gres.count(f"gpu:{slurm_cluster.gpu_type}:8") == 2 * len(slurm_cluster.partitions)


def test_demo_subset_on_slurm_matches_the_local_run(runs, slurm_cluster):
    """(a) The demo DAG up to the published dataset (32 jobs) through `--profile profiles/slurm`:
    the same artifacts as the local run of the same config.

    Deterministic stages (pulls, pool, embeddings, neighbours, the judge's candidate pairs, the
    string precheck) must match value for value. LLM outputs come from one vLLM CPU server that
    both runs share, and vLLM's CPU kernels give slightly different logits for a request
    depending on what else is in its batch, so a sampled answer may differ between two runs:
    there the test asks for the same tables, columns and dtypes, and the same rows wherever
    the rows do not depend on an LLM answer.
    """
    out = _run(runs, "demo_slurm").check(slurm_cluster.diagnostics())
    _run(runs, "demo_local").check()

    # every job went through Slurm and ran on one of the cluster's nodes
    ids = slurm_job_ids(out)
    assert {rule: len(v) for rule, v in ids.items()} == DEMO_JOBS
    logs = sorted((REPO / "results" / SLURM_RUN / "slurm-logs").rglob("*.log"))
    assert len(logs) == sum(DEMO_JOBS.values())
    hosts = {f"Host: {n.name}" for n in slurm_cluster.nodes}
    for log in logs:
        text = log.read_text(errors="replace")
        assert any(h in text for h in hosts), log

    slurm_root, local_root = REPO / "results" / SLURM_RUN, REPO / "results" / LOCAL_RUN
    tables = sorted(p.relative_to(slurm_root) for p in slurm_root.rglob("*.parquet"))
    assert {p.relative_to(local_root) for p in local_root.rglob("*.parquet")} == set(tables)
    assert Path("dataset/data/train-00000-of-00001.parquet") in tables

    def both(rel: Path | str) -> tuple[pd.DataFrame, pd.DataFrame]:
        return pd.read_parquet(slurm_root / rel), pd.read_parquet(local_root / rel)

    # 1. every table: the same columns (their dtypes only where values cannot differ: a column
    # of answers that are all None in one run reads back as object, as str in the other)
    for rel in tables:
        mine, theirs = both(rel)
        assert list(mine.columns) == list(theirs.columns), rel

    # 2. deterministic stages: same rows and values (float scores close)
    exact = [
        rel
        for rel in tables
        if rel.parts[0] in ("raw", "benchmarks", "pool") or rel.name.endswith(".neighbors.parquet")
    ]
    assert len(exact) >= 5 + 2 + 2 + 2, exact
    for rel in exact:
        pd.testing.assert_frame_equal(*both(rel), check_exact=False, rtol=1e-4, obj=str(rel))
    for rel in sorted(p.relative_to(slurm_root) for p in slurm_root.glob("embeddings/*.npy")):
        a, b = np.load(slurm_root / rel), np.load(local_root / rel)
        assert a.shape == b.shape and np.allclose(a, b, atol=1e-3), rel

    # 3. LLM stages: the rows that do not depend on an answer
    before_llm = ["id", "rank", "bench", "bench_id", "score", "precheck", "judged"]
    judged = caught = 0
    for shard in ("0000", "0001"):
        mine, theirs = both(f"decontam/shard-{shard}.judged.parquet")
        pd.testing.assert_frame_equal(
            mine[before_llm], theirs[before_llm], check_exact=False, rtol=1e-4
        )
        judged += int(mine["judged"].sum())
        mine, theirs = both(f"decontam/shard-{shard}.contaminated.parquet")
        key = ["id", "bench_id"]
        by_string = [d[d["by"] == "string"][key].reset_index(drop=True) for d in (mine, theirs)]
        pd.testing.assert_frame_equal(*by_string)
        caught += len(by_string[0])
    # the overlay seeds MATH-500 items into the pool: both kinds of check had work to do
    assert judged > 0 and caught > 0, (judged, caught)
    for rel in [r for r in tables if r.parts[0] == "supplement"]:
        mine, theirs = both(rel)
        assert list(mine["id"]) == list(theirs["id"]), rel  # every supplement row goes through

    # the published dataset: its fixed schema (the card's features) whatever the rows
    mine, theirs = both("dataset/data/train-00000-of-00001.parquet")
    assert mine.dtypes.to_dict() == theirs.dtypes.to_dict()

    # the LLM jobs of both runs talked to the shared server: every role sent requests (a shard
    # with no rows left sends none), and none failed
    for root in (slurm_root, local_root):
        sent: dict[str, int] = {}
        for usage in sorted(root.rglob("*.usage.json")):
            for role, numbers in json.loads(usage.read_text())["roles"].items():
                assert numbers["sent"]["failed_requests"] == 0, (usage, role)
                sent[role] = sent.get(role, 0) + numbers["sent"]["requests"]
        assert sorted(sent) == sorted(DEMO_ROLES) and min(sent.values()) > 0, (root, sent)

    # how often the two runs' LLM answers agreed (for the log; not a pass/fail criterion)
    agree = {}
    for rel, column in (
        ("decontam/shard-0000.judged.parquet", "verdict_ab"),
        ("difficulty/shard-0000.parquet", "difficulty"),
        ("rewrite/shard-0000.parquet", "question"),
    ):
        mine, theirs = both(rel)
        merged = mine.merge(theirs, on=[c for c in ("id", "bench_id") if c in mine], how="inner")
        merged = merged[merged[f"{column}_x"].notna() & merged[f"{column}_y"].notna()]
        same = (merged[f"{column}_x"].astype(str) == merged[f"{column}_y"].astype(str)).mean()
        agree[f"{rel}:{column}"] = f"{same:.0%} of {len(merged)}"
    print(f"LLM answers equal in both runs: {agree}")
    data = both("dataset/data/train-00000-of-00001.parquet")
    rows = {name: len(data[i]) for i, name in enumerate(("slurm", "local"))}
    print(f"dataset rows: {rows}")


def _kv(text: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in text.splitlines() if re.match(r"^\w+=", line))


def test_gpu_rules_get_their_gpus(runs, slurm_cluster):
    """(b) `gpus=N` rules get `--gres=gpu:N` from the profile: Slurm sets CUDA_VISIBLE_DEVICES."""
    run = _run(runs, "probe_generic")
    run.check(slurm_cluster.diagnostics())
    for name, gpus in (("gpu8.txt", 8), ("gpu1.txt", 1)):
        text = (run.workdir / "probe" / name).read_text()
        seen = _kv(text)
        assert seen["host"] in {n.name for n in slurm_cluster.nodes}
        assert int(seen["gpus"]) == gpus
        devices = seen["CUDA_VISIBLE_DEVICES"].split(",")
        assert len(devices) == gpus and all(d.isdigit() for d in devices), text
        assert f"TresPerNode=gres:gpu:{gpus}" in text and "Partition=gpu" in text, text


def test_failed_job_is_detected_and_retried_with_more_runtime(runs, slurm_cluster):
    """(d) attempt 1 exits non-zero: Slurm marks the job FAILED, Snakemake resubmits it with
    twice the runtime (the profile's runtime by attempt), and attempt 2 succeeds."""
    run = _run(runs, "probe_generic")
    out = run.check(slurm_cluster.diagnostics())
    attempts = [
        dict(re.findall(r"(\w+)=(\S+)", line))
        for line in (run.workdir / "probe" / "retried.txt").read_text().splitlines()
    ]
    assert [a["attempt"] for a in attempts] == ["1", "2"]
    assert attempts[0]["job"] != attempts[1]["job"]  # a new Slurm job
    # profiles/slurm: verify_answers runtime = min(120 x attempt, max_runtime) minutes
    assert [a["TimeLimit"] for a in attempts] == ["02:00:00", "04:00:00"]
    assert slurm_job_ids(out)["verify_answers"] == [a["job"] for a in attempts]
    failed = slurm_cluster.job_info(attempts[0]["job"])
    assert failed["JobState"] == "FAILED" and failed["ExitCode"] != "0:0", failed
    assert re.search(rf"SLURM-job '{attempts[0]['job']}' failed", out), out[-3000:]


def test_two_node_rule_starts_ray_over_both_nodes(runs, slurm_cluster):
    """(c) profiles/slurm-a100's 2-node shape: `python -m deepmath.raycluster run` sees 2 nodes."""
    run = _run(runs, "probe_a100")
    out = run.check(slurm_cluster.diagnostics())
    report = json.loads((run.workdir / "probe" / "ray.json").read_text())
    addrs = sorted(n.addr for n in slurm_cluster.nodes)
    assert report["nodes"] == addrs
    # a Ray task pinned to each Ray node ran on that Slurm node (its own hostname)
    assert report["task_hosts"] == {n.addr: n.name for n in slurm_cluster.nodes}
    assert report["gpus"] == {a: 8 for a in addrs}
    # the allocation: both nodes, whole, one task each, 8 GPUs per node
    (jobid,) = slurm_job_ids(out)["solve"]
    info = slurm_cluster.job_info(jobid)
    assert info["NumNodes"] == "2" and info["NumTasks"] == "2", info
    assert info["OverSubscribe"] == "NO", info  # --exclusive
    assert info["TresPerNode"] == f"gres:gpu:{slurm_cluster.gpu_type}:8", info
    # Ray ran on both nodes and was torn down inside the job: no process of it is left
    ray_logs = run.workdir / "probe" / "ray-logs"
    worker = slurm_cluster.nodes[1].name
    assert {p.name for p in ray_logs.glob("*.log")} == {"ray-head.log", f"ray-{worker}.log"}
    assert not _processes_of_job(jobid), _processes_of_job(jobid)


def test_llm_job_starts_and_stops_its_own_server_on_slurm(runs, slurm_cluster):
    """A served role under Slurm: the job starts vLLM (CPU) itself, rates, and stops it.

    On a GPU cluster every LLM job does this (`share: workflow` needs the local executor's
    registry; under Slurm each job gets its own server). Here: the demo's rater on the two
    supplement rows, in one Slurm job.
    """
    run = _run(runs, "served_slurm")
    out = run.check(slurm_cluster.diagnostics())
    ids = slurm_job_ids(out)
    assert {rule: len(v) for rule, v in ids.items()} == {"pull_source": 1, "rate_supplement": 1}
    (jobid,) = ids["rate_supplement"]
    assert slurm_cluster.job_info(jobid)["JobState"] == "COMPLETED"
    root = REPO / "results" / SERVED_RUN
    log = (root / "logs" / "rate_supplement" / "math_level3to5.log").read_text()
    started = re.search(r"starting vllm server: .* --port (\d+)", log)
    assert started and "--no-enable-chunked-prefill" in log, log[-3000:]
    assert re.search(r"server \d+ stopped", log), log[-3000:]
    table = pd.read_parquet(root / "supplement" / "math_level3to5.difficulty.parquet")
    assert len(table) == 2 and (table["ratings_parsed"] > 0).all(), table
    usage = json.loads((root / "supplement" / "math_level3to5.difficulty.usage.json").read_text())
    assert usage["roles"]["rater"]["sent"]["requests"] > 0
    assert not _processes_of_job(jobid), _processes_of_job(jobid)


def _processes_of_job(jobid: str) -> list[str]:
    """Command lines of live processes started inside Slurm job `jobid`."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
        except OSError:
            continue
        if f"SLURM_JOB_ID={jobid}".encode() in environ:
            found.append(cmdline.decode(errors="replace")[:200])
    return found


def test_sacct_without_accounting_hangs_and_the_timeout_catches_it(runs, slurm_cluster):
    """(e) why the CI overlay uses squeue, and why every run is under `timeout -k`.

    With the plugin's default status command (sacct) and no accounting database, the job
    finishes on the cluster but Snakemake never hears of it: only the timeout ends the run.
    """
    run = _run(runs, "probe_sacct")
    code = run.wait()
    out = run.output
    assert code in TIMED_OUT, f"expected the sacct run to hang (exit {code}):\n{out[-3000:]}"
    (jobid,) = slurm_job_ids(out)["embed_pool"]
    assert slurm_cluster.job_info(jobid)["JobState"] == "COMPLETED"
    assert (run.workdir / "probe" / "gpu1.txt").exists()
    assert "Finished jobid" not in out
