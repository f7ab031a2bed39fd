"""Every LLM stage end to end on a few rows, against a real vLLM server (SmolLM2, CPU).

One shared server for the module (the same registry mechanism the demo uses). Each stage CLI
runs twice: the second run must send nothing (everything replays from the journal).
"""

import json
import subprocess
import sys

import pandas as pd
import pytest

from tests.workflow.helpers import REPO

pytestmark = pytest.mark.slow

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
