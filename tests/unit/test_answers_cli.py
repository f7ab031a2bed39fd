"""python -m deepmath.answers score: real subprocesses on JSON-lines and parquet files."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd

from deepmath.answers.cli import pair_of, score_rows
from deepmath.answers.policy import EVAL, VERIFY

ROWS = [
    {"id": 1, "response": "So the total is \\boxed{18}.", "gold": "18"},
    {"id": 2, "response": "<think>maybe 3</think> The answer is \\boxed{4}", "gold": "3"},
    {"id": 3, "response": "Answer: $\\frac12$", "gold": 0.5},
    # cut off before any answer (a bare short reply like "no idea" is read as its answer)
    {"id": 4, "response": "Let me think about the problem step by step.", "gold": "7"},
    {"id": 5, "response": "\\boxed{1}"},
    {"id": 6, "response": ["a", "list"], "gold": "1"},
]


def run(args: list[str], env: dict[str, str], **kw) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "deepmath.answers", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        **kw,
    )


def test_score_jsonl_keeps_rows_adds_verdicts_and_reports_bad_rows(tmp_path: Path, venv_env):
    pairs = tmp_path / "pairs.jsonl"
    lines = [json.dumps(r) for r in ROWS] + ["{not json", "[1, 2]"]
    pairs.write_text("\n".join(lines) + "\n")
    out = tmp_path / "verdicts.jsonl"
    proc = run(["score", "--in", str(pairs), "--out", str(out)], venv_env)
    assert proc.returncode == 0, proc.stderr
    got = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(got) == len(ROWS) + 2
    assert [g["equivalent"] for g in got[:4]] == [True, False, True, False]
    assert got[0]["id"] == 1 and got[0]["pred"] == "18" and got[0]["method"] == "string"
    assert [g["reason"] for g in got] == [
        "match",
        "mismatch",
        "match",
        "no_answer",
        "error",
        "error",
        "error",
        "error",
    ]
    assert "missing field(s): gold" in got[4]["detail"]
    assert "not a string: response is list" in got[5]["detail"]
    assert got[6]["line"] == 7 and "not JSON" in got[6]["detail"]
    assert "not a JSON object" in got[7]["detail"]
    assert "bad rows: 4" in proc.stderr and "pairs/s" in proc.stderr
    assert "reasons: error 4, match 2, mismatch 1, no_answer 1" in proc.stderr


def test_score_parquet_with_a_policy_and_flags(tmp_path: Path, venv_env):
    frame = pd.DataFrame(
        {
            "response": ["<think>\\boxed{5}</think>", "\\boxed{5}", "5"],
            "gold": ["5", "5", "5"],
        }
    )
    pairs = tmp_path / "pairs.parquet"
    frame.to_parquet(pairs)
    out = tmp_path / "out.parquet"
    proc = run(["score", "--in", str(pairs), "--out", str(out), "--policy", "reward"], venv_env)
    assert proc.returncode == 0, proc.stderr
    got = pd.read_parquet(out)
    # the reward needs </think> and scores what follows it: nothing here
    assert got["equivalent"].tolist() == [False, False, False]
    assert "reward policy" in proc.stderr
    proc = run(["score", "--in", str(pairs), "--out", str(out), "--no-extract"], venv_env)
    got = pd.read_parquet(out)
    assert got["equivalent"].tolist() == [False, True, True]  # bare answers (a lone box is one)
    proc = run(["score", "--in", str(pairs), "--out", "-", "--after-think"], venv_env)
    got = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [g["equivalent"] for g in got] == [False, False, False]


def test_score_usage_errors(tmp_path: Path, venv_env):
    proc = run(["score", "--in", str(tmp_path / "nope.jsonl"), "--out", "-"], venv_env)
    assert proc.returncode == 2 and "no such file" in proc.stderr
    proc = run(["score", "--in", "x", "--out", "-", "--policy", "judge"], venv_env)
    assert proc.returncode == 2 and "invalid choice" in proc.stderr
    proc = run(["score", "--help"], venv_env)
    assert proc.returncode == 0 and "--policy" in proc.stdout and "bad rows" in proc.stdout.lower()


def test_stdin_and_stdout(venv_env):
    proc = run(
        ["score", "--in", "-", "--out", "-", "--no-progress"],
        venv_env,
        input=json.dumps({"response": "\\boxed{2,75}", "gold": "2.75"}) + "\n",
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["equivalent"] is True


def test_pair_of_and_score_rows_in_process():
    assert pair_of({"response": "x", "gold": 3}) == (("x", "3"), None)
    assert pair_of({"response": "x", "gold": True})[1] == "not a string: gold is bool"
    rows = score_rows([{"response": "4", "gold": "4"}], VERIFY.but(extract=False), workers=1)
    assert rows[0]["equivalent"] and rows[0]["pred"] == "4"
    rows = score_rows([{"response": None, "gold": "4"}], EVAL, workers=1)
    assert rows[0]["reason"] == "error"


# --------------------------------------------------------------------------- --policy authors

AUTHORS_ROWS = [
    # the authors' math_equal takes the gold times 100; ours does not
    {"id": "pct", "response": "The rate is \\boxed{50}", "gold": "0.5"},
    # a stated letter: ours reads it, the authors need a box or "The answer is: "
    {"id": "stated", "response": "So the answer is (A).", "gold": "A"},
    {"id": "answer-is", "response": "We add.\nThe answer is: 12", "gold": "12"},
    {"id": "wrong", "response": "\\boxed{7}", "gold": "8"},
    {"id": "none", "response": "no idea", "gold": "8"},
    # PolyMath's judge takes the first box: only the polymath rule accepts this
    {"id": "first-box", "response": "\\boxed{42} Check: \\boxed{41}", "gold": "42"},
    {"id": "bad", "response": "\\boxed{1}"},
]


def test_policy_authors_is_the_authors_scorer_with_a_rule_per_benchmark(tmp_path, venv_env):
    from deepmath.answers.authors.pool import AuthorsPool

    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text("".join(json.dumps(r) + "\n" for r in AUTHORS_ROWS))
    got = {}
    for rule in ("general", "polymath"):
        out = tmp_path / f"{rule}.jsonl"
        args = ["score", "--in", str(pairs), "--out", str(out), "--policy", "authors"]
        proc = run([*args, "--rule", rule, "--workers", "2"], venv_env)
        assert proc.returncode == 0, proc.stderr
        got[rule] = [json.loads(line) for line in out.read_text().splitlines()]
        assert f"the authors' scorer, rule {rule}: " in proc.stderr and "math-verify" in proc.stderr
    general = got["general"]
    assert [g["equivalent"] for g in general] == [True, False, True, False, False, False, False]
    assert [g["reason"] for g in general] == [
        "match", "no_answer", "match", "mismatch", "no_answer", "mismatch", "error",
    ]  # fmt: skip
    assert [g["method"] for g in general[:3]] == ["boxed", None, "answer_is"]
    assert general[0]["pred"] == "50" and general[0]["id"] == "pct"
    assert "missing field(s): gold" in general[-1]["detail"]
    assert [g["equivalent"] for g in got["polymath"]][5] is True
    assert got["polymath"][5]["method"] == "polymath"
    # the same verdicts as the pool run directly, and our checker differs on the first two
    good = AUTHORS_ROWS[:-1]
    with AuthorsPool(workers=1) as pool:
        direct = pool.eval_verdicts([(r["response"], r["gold"], "general", None) for r in good])
    assert [g["equivalent"] for g in general[:-1]] == [v.correct for v in direct]
    ours = score_rows(good, EVAL, workers=1)
    assert [r["equivalent"] for r in ours[:2]] == [False, True]


def test_policy_authors_usage_errors(tmp_path, venv_env):
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text(json.dumps(AUTHORS_ROWS[0]) + "\n")
    base = ["score", "--in", str(pairs), "--out", "-"]
    proc = run([*base, "--rule", "olympiad"], venv_env)
    assert proc.returncode == 2 and "need --policy authors" in proc.stderr
    proc = run([*base, "--policy", "authors", "--rule", "olympic"], venv_env)
    assert proc.returncode == 2 and "invalid choice: 'olympic'" in proc.stderr
    proc = run([*base, "--policy", "authors", "--after-think"], venv_env)
    assert proc.returncode == 2 and "--after-think: options of our checker" in proc.stderr
    proc = run([*base, "--policy", "authors", "--precision", "0.01"], venv_env)
    assert proc.returncode == 2 and "with --rule olympiad" in proc.stderr
    missing = tmp_path / "no-python"
    proc = run([*base, "--policy", "authors", "--authors-python", str(missing)], venv_env)
    assert proc.returncode != 0 and str(missing) in proc.stderr
