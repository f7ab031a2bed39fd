"""assemble_dataset: the published schema exactly, a loadable dataset, an idempotent build."""

import hashlib
import json

import pandas as pd
import pyarrow.parquet as pq
import yaml

from deepmath.dataset import COLUMNS, SCHEMA, main, merge, to_published

# The features of zwhe99/DeepMath-103K's dataset card (its published schema).
PUBLISHED = [
    ("question", "string"),
    ("final_answer", "string"),
    ("difficulty", "float64"),
    ("topic", "string"),
    ("r1_solution_1", "string"),
    ("r1_solution_2", "string"),
    ("r1_solution_3", "string"),
]


def labelled(n: int, offset: int = 0) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "id": [f"i{i}" for i in range(offset, offset + n)],
            "question": [f"What is {i} + {i}?" for i in range(offset, offset + n)],
            "final_answer": [str(2 * i) for i in range(offset, offset + n)],
            "reference_answer": [str(2 * i) for i in range(offset, offset + n)],
            "difficulty": [float(1 + i % 9) for i in range(n)],
            "topic": ["Mathematics -> Algebra -> Prealgebra -> Arithmetic"] * n,
            "r1_solution_1": ["\\boxed{x}"] * n,
            "r1_solution_2": ["\\boxed{x}"] * n,
            "r1_solution_3": ["\\boxed{x}"] * n,
            "verify_reason": ["agree"] * n,  # extra columns must not leak into the output
        }
    )


def write_stage_stats(tmp_path, contaminated_by_benchmark: dict[str, int]) -> dict[str, list]:
    """One stats file per funnel stage, as the stage rules write them: {stage: [path]}."""
    clean = 18 - sum(contaminated_by_benchmark.values())
    stats = {}
    for stage, payload in {
        "raw": {"rows": 20},
        "pool": {"rows_out": 18},
        "decontam": {"clean": clean, "contaminated_by_benchmark": contaminated_by_benchmark},
        "difficulty": {"kept": 12},
        "rewrite": {"kept": 10},
        "verified": {"verified": 7},
        "topics": {"questions": 7},
    }.items():
        path = tmp_path / f"{stage}.json"
        path.write_text(json.dumps(payload))
        stats[stage] = [str(path)]
    return stats


def build(tmp_path, name: str) -> tuple:
    main_path, supp_path = tmp_path / "main.parquet", tmp_path / "supp.parquet"
    labelled(7).to_parquet(main_path)
    supp = labelled(3, offset=5)  # two questions overlap with the main set
    supp.drop(columns=["final_answer"]).to_parquet(supp_path)
    stats_files = write_stage_stats(tmp_path, {"math500": 3})
    out = tmp_path / name
    main(
        ["--main", str(main_path), "--supplement", str(supp_path), "--stats",
         json.dumps(stats_files), "--config", json.dumps({"run": "t"}),
         "--num-shards", "2", "--out-dir", str(out)]
    )  # fmt: skip
    return out


def test_cost_page_prices_tokens_at_the_configs_prices(tmp_path):
    """The cost page is its own job: it prices the recorded tokens with the prices it is given
    (a price edit reruns only it), a role without prices costs $0."""
    usage = tmp_path / "usage.json"
    usage.write_text(
        json.dumps(
            {"roles": {
                "rater": {"sent": {"requests": 4, "prompt_tokens": 100_000,
                                   "completion_tokens": 10_000},
                          "replayed": {"requests": 1, "prompt_tokens": 100_000,
                                       "completion_tokens": 0},
                          "cost_usd": {"total": 123.0}},
                "solver": {"sent": {"requests": 2, "prompt_tokens": 5, "completion_tokens": 5}}}}
        )
    )  # fmt: skip
    out = tmp_path / "cost.md"
    prices = {"rater": {"prompt": 2.5, "completion": 10.0}, "solver": None}
    main(["cost", "--usage", str(usage), "--prices", json.dumps(prices), "--out", str(out)])
    page = out.read_text()
    # 200K prompt tokens x $2.5/M + 10K completion x $10/M = $0.60, not the recorded $123
    assert "| rater | 5 | 200000 | 10000 | 0.60 |" in page
    assert "| solver | 2 | 5 | 5 | 0.00 |" in page
    assert "Total: $0.60" in page
    prices["rater"]["prompt"] = 5.0
    main(["cost", "--usage", str(usage), "--prices", json.dumps(prices), "--out", str(out)])
    assert "Total: $1.10" in out.read_text()


def test_schema_matches_the_published_card(tmp_path):
    out = build(tmp_path, "ds")
    files = sorted((out / "data").glob("*.parquet"))
    assert [f.name for f in files] == [
        "train-00000-of-00002.parquet",
        "train-00001-of-00002.parquet",
    ]
    for f in files:
        schema = pq.read_schema(f)
        assert [(n, str(t)) for n, t in zip(schema.names, schema.types, strict=True)] == [
            (n, "double" if t == "float64" else t) for n, t in PUBLISHED
        ]
    import datasets

    ds = datasets.load_dataset("parquet", data_files=[str(f) for f in files], split="train")
    assert [(k, v.dtype) for k, v in ds.features.items()] == PUBLISHED
    assert len(ds) == 8  # 7 main + 3 supplement - 2 duplicates
    card = (out / "README.md").read_text()
    header = yaml.safe_load(card.split("---")[1])
    assert [(f["name"], f["dtype"]) for f in header["dataset_info"]["features"]] == PUBLISHED
    assert header["dataset_info"]["splits"][0]["num_examples"] == 8
    assert "| after answer verification | 7 |" in card
    assert "| math500 | 3 |" in card
    assert "](cost.md)" in card and "Total:" not in card  # the cost page is its own job


def test_build_is_idempotent(tmp_path):
    def digest(folder):
        return [hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.glob("*"))]

    first, second = build(tmp_path, "a"), build(tmp_path, "b")
    assert digest(first / "data") == digest(second / "data")


def test_merge_and_published_columns():
    table, dropped = merge(
        to_published(labelled(3)), to_published(labelled(2, 2), "reference_answer")
    )
    assert dropped == 1 and len(table) == 4
    assert list(table.columns) == COLUMNS == SCHEMA.names
    assert str(table["difficulty"].dtype) == "float64"
