"""Every LLM stage end to end on a few rows, against a real vLLM server (SmolLM2, CPU), and a
stage CLI against a loopback endpoint that misbehaves on purpose, run the way a rule runs it.

One shared server for the module (the same registry mechanism the demo uses). Each stage CLI
runs twice: the second run must send nothing (everything replays from the journal).
"""

import json
import os
import selectors
import shlex
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest

from deepmath.prompts import load_prompt
from tests.llm_server import FakeLLMServer
from tests.workflow.helpers import REPO

MODEL = REPO / "results" / "models" / "smollm2"
SERVE = {
    "model": "smollm2",
    "dtype": "auto",
    "max_model_len": 2048,
    "extra_args": ["--enforce-eager"],
    "env": {"VLLM_CPU_KVCACHE_SPACE": "1"},
    "share": "workflow",
    "gpus": 0,
}


def role(max_tokens: int, **params) -> str:
    spec = {
        "model": "smollm2",
        "serve": SERVE,
        "params": {"temperature": 0.0, "max_tokens": max_tokens, **params},
        "max_concurrency": 8,
    }
    return json.dumps(spec)


@pytest.fixture(scope="module")
def work(tmp_path_factory, venv_env):
    assert (MODEL / "config.json").exists()  # built at session start (tests/conftest.py)
    path = tmp_path_factory.mktemp("llm")
    yield path
    subprocess.run(
        [sys.executable, "-m", "deepmath.serve", "stop-all", "--registry", str(path / "reg")],
        env=venv_env,
        check=False,
    )


def run_stage(work, venv_env, module, args, role_name, role_spec, prompt, name):
    usage = work / f"{name}.usage.json"
    cmd = [
        sys.executable, "-m", f"deepmath.{module}", *args,
        "--role", role_name, "--role-spec", role_spec, "--prompt", str(REPO / prompt),
        "--journal", str(work / f"{name}.jsonl"), "--usage", str(usage),
        "--server-dir", str(work / "servers"), "--server-registry", str(work / "reg"),
        "--model-dir", str(MODEL),
    ]  # fmt: skip
    for attempt in (1, 2):
        proc = subprocess.run(cmd, env=venv_env, capture_output=True, text=True, cwd=REPO)
        assert proc.returncode == 0, proc.stderr[-3000:]
        sent = json.loads(usage.read_text())["roles"][role_name]["sent"]["requests"]
        if attempt == 1:
            assert sent > 0
        else:
            assert sent == 0, "the rerun must replay everything from the journal"
    return proc


QUESTIONS = [
    "What is $2+3$?",
    "Natalia sold 48 clips in April and half as many in May. How many clips did she sell?",
    "Find the remainder when $17$ is divided by $5$.",
]


@pytest.mark.slow
def test_judge_then_decontaminate(work, venv_env):
    neighbors = pd.DataFrame(
        {
            "id": ["a", "b", "c"],
            "question": QUESTIONS,
            "rank": [1, 1, 1],
            "bench": ["gsm8k"] * 3,
            "bench_id": ["g/1", "g/2", "g/3"],
            "bench_problem": ["What is 2 plus 3?", QUESTIONS[1], "How many primes are below 10?"],
            "bench_answer": ["5", "72", "4"],
            "score": [0.9, 1.0, 0.3],
            "indel": [0.6, 1.0, 0.1],
            "precheck": [False, True, False],
        }
    )
    path = work / "neighbors.parquet"
    neighbors.to_parquet(path)
    out = work / "judged.parquet"
    spec = json.dumps({"judge_min_score": None, "unparseable": "contaminated"})
    args = ["judge", "--neighbors", str(path), "--spec", spec, "--out", str(out)]
    run_stage(work, venv_env, "decontaminate", args, "judge", role(4), "config/prompts/judge.txt",
              "judge")  # fmt: skip
    judged = pd.read_parquet(out).set_index("id")
    assert judged["judged"].tolist() == [True, False, True]
    assert judged.loc["b", "contaminated"]  # settled by the string pre-check
    for col in ("verdict_ab", "verdict_ba"):
        assert judged.loc["a", col] in (True, False, None)


@pytest.mark.slow
def test_difficulty_rewrite_solve_topic(work, venv_env):
    table = pd.DataFrame(
        {
            "id": ["a", "b", "c"],
            "source": ["s"] * 3,
            "question": QUESTIONS,
            "reference_solution": [None] * 3,
            "reference_answer": ["5", "72", "2"],
        }
    )
    src = work / "clean.parquet"
    table.to_parquet(src)

    def stage(module, name, spec, prompt, role_spec, inp):
        out = work / f"{name}.parquet"
        args = ["--in", str(inp), "--spec", json.dumps(spec), "--out", str(out),
                "--stats", str(work / f"{name}.stats.json")]  # fmt: skip
        run_stage(work, venv_env, module, args, name, role_spec, prompt, name)
        return pd.read_parquet(out), json.loads((work / f"{name}.stats.json").read_text())

    rated, stats = stage(
        "difficulty", "rater", {"samples": 2, "threshold": 0, "unrated": "keep"},
        "config/prompts/demo/difficulty.txt", role(8, temperature=0.7, seed=0), src,
    )  # fmt: skip
    assert len(rated) == 3 and stats["ratings_requested"] == 6
    assert rated["difficulty"].dtype == "float64"
    assert all(len(r) == 2 for r in rated["ratings"])

    rewritten, stats = stage(
        "rewrite", "rewriter", {"on_unparseable": "keep"}, "config/prompts/rewrite.txt",
        role(48), work / "rater.parquet",
    )  # fmt: skip
    assert set(rewritten.columns) >= {"original_question", "flag_yes_no", "flag_proof_like"}
    assert sum(stats["verdicts"].values()) == 3

    solved, stats = stage(
        "solve", "solver", {"samples": 3}, "config/prompts/solve.txt",
        role(48, temperature=0.6, top_p=0.95, seed=0), work / "rater.parquet",
    )  # fmt: skip
    assert stats["solutions"] == 9
    assert solved[["r1_solution_1", "r1_solution_2", "r1_solution_3"]].notna().all().all()
    # seeds differ per sample, so the three solutions are not all identical
    assert (
        solved.apply(lambda r: len({r.r1_solution_1, r.r1_solution_2, r.r1_solution_3}), 1).max()
        > 1
    )

    tree = ["Mathematics -> Algebra -> Arithmetic", "Mathematics -> Other"]
    topics, stats = stage(
        "topics", "topic", {"tree": tree, "fallback": "Mathematics -> Other"},
        "config/prompts/topic.txt", role(16), work / "solver.parquet",
    )  # fmt: skip
    assert set(topics["topic"]) <= set(tree)
    assert stats["questions"] == 3


# ------------------------------------------------------------------ a misbehaving endpoint


def solve_command(tmp_path, role_spec: dict) -> tuple[str, dict]:
    """The solve rule's shell command (stderr into the job log, stdout left alone) on 6
    questions, for an external role; returns it and the paths it writes."""
    table = tmp_path / "in.parquet"
    pd.DataFrame(
        {"id": list("abcdef"), "question": [f"question {c}" for c in "abcdef"]}
    ).to_parquet(table)
    paths = {name: tmp_path / name for name in ("out.parquet", "stats.json", "usage.json", "log")}
    args = [
        sys.executable, "-m", "deepmath.solve", "--in", str(table),
        "--spec", json.dumps({"samples": 1}), "--out", str(paths["out.parquet"]),
        "--stats", str(paths["stats.json"]), "--role", "solver",
        "--role-spec", json.dumps(role_spec), "--prompt", str(REPO / "config/prompts/solve.txt"),
        "--journal", str(tmp_path / "journal.jsonl"), "--usage", str(paths["usage.json"]),
        "--server-dir", str(tmp_path / "servers"),
    ]  # fmt: skip
    return " ".join(shlex.quote(a) for a in args) + f" 2> {shlex.quote(str(paths['log']))}", paths


def external(srv: FakeLLMServer, **over) -> dict:
    return {"model": "fake-model", "base_url": srv.url, "max_concurrency": 2,
            "backoff_s": 0.01, "backoff_max_s": 0.05, **over}  # fmt: skip


@pytest.mark.parametrize("fault", ["wrong model", "wrong key", "most prompts too long"])
def test_a_stage_against_a_refusing_endpoint_fails_and_writes_nothing(tmp_path, venv_env, fault):
    """Under the default on_rejected: drop, an endpoint that refuses every request (or most)
    fails the job with a message naming the role and endpoint; no table is written, so a
    rerun after the fix redoes the job."""
    env = dict(venv_env, DM_TEST_KEY="sk-wrong")
    with FakeLLMServer() as srv:
        spec = external(srv)
        if fault == "wrong model":
            srv.served_models = ["smollm2"]
            spec["model"], said = "smollm", "model 'smollm' is not served at"
        elif fault == "wrong key":
            srv.require_key, spec["api_key_env"] = "sk-right", "DM_TEST_KEY"
            said = "refused the API key"
        else:
            prompt = load_prompt(REPO / "config/prompts/solve.txt", ("question",))
            srv.plan = {prompt.render({"question": f"question {c}"}): [400] for c in "abcd"}
            said = "4 of 6 requests"
        command, paths = solve_command(tmp_path, spec)
        proc = subprocess.run(command, shell=True, env=env, cwd=REPO, capture_output=True,
                              text=True, timeout=120)  # fmt: skip
    log = paths["log"].read_text()
    assert proc.returncode != 0, log
    assert "LLM role 'solver'" in log and srv.url in log and said in log
    assert "sk-wrong" not in log
    assert not any(paths[name].exists() for name in ("out.parquet", "stats.json", "usage.json"))


def test_a_hung_endpoint_is_reported_on_the_console(tmp_path, venv_env):
    """The job's stderr goes to its log; the stall warning also goes to stdout, which
    Snakemake passes to the terminal (or the Slurm job's output), within stall_s."""
    stall_s, progress_s = 2.0, 0.25
    with FakeLLMServer(hang_s=120) as srv:
        srv.always = "hang"
        spec = external(srv, timeout_s=100, max_retries=0, stall_s=stall_s, progress_s=progress_s)
        command, paths = solve_command(tmp_path, spec)
        proc = subprocess.Popen(command, shell=True, env=venv_env, cwd=REPO, text=True,
                                stdout=subprocess.PIPE, start_new_session=True)  # fmt: skip
        try:
            seen, deadline = "", time.monotonic() + 90
            with selectors.DefaultSelector() as sel:
                sel.register(proc.stdout, selectors.EVENT_READ)
                while "no request has finished" not in seen and time.monotonic() < deadline:
                    if sel.select(timeout=0.1):
                        line = proc.stdout.readline()
                        if not line:
                            break  # the job ended
                        seen += line
            shown = time.monotonic()
        finally:
            os.killpg(proc.pid, signal.SIGKILL)  # the shell and the stage it started
            proc.wait()
        first_request = min(r["time"] for r in srv.received) if srv.received else None
    assert "no request has finished" in seen, paths["log"].read_text()
    assert first_request is not None
    assert shown - first_request < stall_s + 2 * progress_s + 3.0
    line = next(x for x in seen.splitlines() if "no request has finished" in x)
    assert "WARNING" in line and "role solver" in line and srv.url in line
    assert "no request has finished" in paths["log"].read_text()  # and in the job log
    assert "done," not in seen  # progress lines stay in the log


# ------------------------------------------------------------------ whose answers a journal holds


def perturbed_copy(src, dest):
    """The model under the same name with other weights (one tensor nudged), as a retrained
    checkpoint or another hub revision would be."""
    import shutil

    from safetensors.torch import load_file, save_file

    shutil.copytree(src, dest, ignore=shutil.ignore_patterns("deepmath-model.json"))
    weights = load_file(dest / "model.safetensors")
    name = next(k for k in sorted(weights) if k.endswith("norm.weight"))
    weights[name] = weights[name] * 1.01
    save_file(weights, dest / "model.safetensors", metadata={"format": "pt"})
    return dest


@pytest.mark.slow
def test_a_served_stage_survives_sigkill_and_asks_again_for_other_weights(work, venv_env, tmp_path):
    """Against the real vLLM server: a solve job SIGKILLed mid-shard resumes and sends only
    what its journal lacks; an unchanged rerun sends nothing; the same model name serving other
    weights asks every question again, and the old journal is kept aside, named in the log."""
    questions = [f"What is {a} + {b}?" for a, b in zip(range(3, 15), range(20, 32), strict=True)]
    table = tmp_path / "in.parquet"
    pd.DataFrame(
        {"id": [f"q{i}" for i in range(len(questions))], "question": questions}
    ).to_parquet(table)
    journal = tmp_path / "solve.jsonl"
    usage = tmp_path / "usage.json"
    spec = json.dumps({"samples": 2})
    role_spec = role(48, temperature=0.6, seed=3)
    total = 2 * len(questions)

    def command(model_dir, registry=True):
        cmd = [
            sys.executable, "-m", "deepmath.solve", "--in", str(table), "--spec", spec,
            "--out", str(tmp_path / "out.parquet"), "--stats", str(tmp_path / "stats.json"),
            "--role", "solver", "--role-spec", role_spec,
            "--prompt", str(REPO / "config/prompts/solve.txt"), "--journal", str(journal),
            "--usage", str(usage), "--server-dir", str(work / "servers"),
            "--model-dir", str(model_dir),
        ]  # fmt: skip
        return cmd + (["--server-registry", str(work / "reg")] if registry else [])

    def sent_and_replayed():
        solver = json.loads(usage.read_text())["roles"]["solver"]
        return solver["sent"]["requests"], solver["replayed"]["requests"]

    # 1. killed mid-shard (the module's shared server keeps running, as in a workflow run)
    proc = subprocess.Popen(
        command(MODEL), env={**venv_env, "DEEPMATH_RUNTIME": json.dumps({"llm": {"solver": {
            "max_concurrency": 2}}})},  # slower, so that the kill lands mid-shard
        stderr=subprocess.DEVNULL, cwd=REPO, start_new_session=True,
    )  # fmt: skip
    deadline = time.monotonic() + 600
    while not journal.exists() or journal.read_bytes().count(b"\n") < 4:
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    from deepmath.llm import read_journal

    journaled = len(read_journal(journal))
    assert 4 <= journaled < total, "the kill must land mid-shard"

    # 2. the rerun sends exactly what is missing
    done = subprocess.run(command(MODEL), env=venv_env, capture_output=True, text=True, cwd=REPO)
    assert done.returncode == 0, done.stderr[-3000:]
    assert sent_and_replayed() == (total - journaled, journaled)
    assert "moved it aside" not in done.stderr
    first = pd.read_parquet(tmp_path / "out.parquet")

    # 3. unchanged: nothing is sent
    again = subprocess.run(command(MODEL), env=venv_env, capture_output=True, text=True, cwd=REPO)
    assert again.returncode == 0, again.stderr[-3000:]
    assert sent_and_replayed() == (0, total)
    pd.testing.assert_frame_equal(first, pd.read_parquet(tmp_path / "out.parquet"))

    # 4. the same name, other weights: every request again, the old journal kept aside
    other = perturbed_copy(MODEL, tmp_path / "smollm2-other")
    swap = subprocess.run(
        command(other, registry=False), env=venv_env, capture_output=True, text=True, cwd=REPO
    )
    assert swap.returncode == 0, swap.stderr[-3000:]
    assert sent_and_replayed() == (total, 0)
    assert "moved it aside to" in swap.stderr and "identity:" in swap.stderr
    assert list(tmp_path.glob("solve.jsonl.stale-*"))
