"""Dataset analyses on small inputs with known answers."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from deepmath.analysis.contamination import bar_chart, pool_rates, with_final, with_paper
from deepmath.analysis.embedmap import map_table, sample_rows, scatter
from deepmath.analysis.novelty import novelty
from deepmath.analysis.strings import best_matches, string_hits

MATH500 = pd.DataFrame(
    {
        "id": ["m1", "m2", "m3"],
        "problem": [
            "What is the sum of the first 100 positive integers?",
            "Find all real x such that x^2 - 5x + 6 = 0.",
            "How many positive divisors does 36 have?",
        ],
    }
)


def test_string_check_finds_planted_copies_only():
    items = pd.DataFrame(
        {
            "id": ["a", "b", "c", "d"],
            "question": [
                "what is the sum of the first 100  positive integers?",  # a copy (case, space)
                "Find all real x such that x^2 - 5x + 6 = 0!",  # one character more
                "How many positive even divisors does 7200 have?",  # another problem, close
                "Prove that the square root of two is irrational.",
            ],
        }
    )
    hits = string_hits(items, MATH500, 0.9, workers=1)
    assert set(hits["id"]) == {"a", "b"}
    assert dict(zip(hits["id"], hits["bench_id"], strict=True)) == {"a": "m1", "b": "m2"}
    assert (hits["similarity"] > 0.9).all()
    best, where = best_matches(items["question"], MATH500["problem"], workers=1)
    assert where[2] == 2 and 0.8 < best[2] <= 0.9  # close, below the threshold
    assert best[0] == pytest.approx(1.0)


def test_string_check_handles_empty_sides():
    empty = pd.DataFrame({"id": [], "question": []})
    assert string_hits(empty, MATH500, 0.9).empty
    best, where = best_matches(["x"], [])
    assert best.tolist() == [0.0] and where.tolist() == [-1]


def _unit(rows):
    x = np.asarray(rows, dtype=np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_a_planted_duplicate_is_not_novel():
    ours = _unit([[1, 0, 0], [0, 1, 0], [0, 0, 1]])
    other = _unit([[1, 0.01, 0], [0.5, 0.5, 0.7]])  # a near-copy of ours[0] only
    third = _unit([[0, 0.02, 1]])  # a near-copy of ours[2]
    table, matrix = novelty({"ours": ours, "other": other, "third": third}, 0.98, device="cpu")
    row = table.set_index("dataset")
    assert row.loc["ours", "unique"] == 1 and row.loc["ours", "items"] == 3
    assert row.loc["other", "unique"] == 1  # its copy of ours[0] is not novel
    assert row.loc["third", "unique"] == 0
    assert matrix.loc["ours", "other"] == pytest.approx(33.33)
    assert matrix.loc["ours", "third"] == pytest.approx(33.33)
    assert np.isnan(matrix.loc["ours", "ours"])
    strict, _ = novelty({"ours": ours, "other": other}, 0.99999, device="cpu")
    assert strict.set_index("dataset").loc["ours", "unique"] == 3  # the threshold decides


def test_pool_rates_count_benchmark_items_once():
    benchmarks = pd.DataFrame(
        {"bench": ["math500"] * 4 + ["gsm8k"] * 2, "id": ["1", "2", "3", "4", "g1", "g2"]}
    )
    judged = pd.DataFrame(
        {
            "id": ["p1", "p2", "p3", "p4", "p5"],
            "bench": ["math500", "math500", "math500", "gsm8k", "math500"],
            "bench_id": ["1", "1", "2", "g1", "3"],
            "precheck": [True, False, False, False, False],
            "contaminated": [True, True, True, False, False],
        }
    )
    rates = pool_rates(judged, benchmarks).set_index("bench")
    assert rates.loc["math500", "found"] == 2  # item 1 matched twice counts once
    assert rates.loc["math500", "rate"] == 50.0
    assert rates.loc["math500", "found_by_string"] == 1
    assert rates.loc["math500", "found_by_judge_only"] == 1
    assert rates.loc["gsm8k", "found"] == 0 and rates.loc["gsm8k", "rate"] == 0.0
    full = with_paper(with_final(rates.reset_index(), {"math500": 1}), {"math500": 76.6})
    full = full.set_index("bench")
    assert full.loc["math500", "final_rate"] == 25.0 and full.loc["gsm8k", "final_found"] == 0
    assert full.loc["math500", "paper_rate"] == 76.6 and pd.isna(full.loc["gsm8k", "paper_rate"])


def test_charts_are_written(tmp_path):
    rates = pd.DataFrame({"bench": ["a", "b"], "rate": [10.0, 50.0], "paper_rate": [12.0, None]})
    bar_chart(rates, str(tmp_path / "rates.png"), "raw pool")
    assert (tmp_path / "rates.png").read_bytes()[:4] == b"\x89PNG"
    rng = np.random.default_rng(0)
    table = map_table(
        {"ours": _unit(rng.normal(size=(30, 8))), "other": _unit(rng.normal(size=(20, 8)) + 3)},
        per_dataset=25,
        seed=0,
    )
    assert table.groupby("dataset").size().to_dict() == {"ours": 25, "other": 20}
    scatter(table, str(tmp_path / "map.png"), "map")
    assert (tmp_path / "map.png").stat().st_size > 1000


def test_map_separates_clusters_and_is_seeded():
    rng = np.random.default_rng(1)
    a = _unit(rng.normal(size=(40, 16)) + np.eye(16)[0] * 6)
    b = _unit(rng.normal(size=(40, 16)) + np.eye(16)[1] * 6)
    one = map_table({"a": a, "b": b}, per_dataset=40, seed=3)
    two = map_table({"a": a, "b": b}, per_dataset=40, seed=3)
    assert np.allclose(one[["x", "y"]], two[["x", "y"]])
    centre = one.groupby("dataset")[["x", "y"]].mean()
    spread = one.groupby("dataset")[["x", "y"]].std().mean().mean()
    assert np.linalg.norm(centre.loc["a"] - centre.loc["b"]) > 2 * spread


def test_sample_rows_is_bounded_and_seeded():
    rows = sample_rows({"big": 100, "small": 3, "none": 0}, 10, seed=5)
    assert len(rows["big"]) == 10 and len(set(rows["big"])) == 10
    assert rows["small"].tolist() == [0, 1, 2] and rows["none"].size == 0
    assert (sample_rows({"big": 100}, 10, seed=5)["big"] == rows["big"]).all()


def test_pages_escape_text_and_skip_absent_analyses(tmp_path):
    import argparse

    from deepmath.analysis.pages import write_pages

    pd.DataFrame(
        {"dataset": ["ours"], "items": [3], "unique": [2], "unique_share": [66.67]}
    ).to_csv(tmp_path / "novelty.csv", index=False)
    pd.DataFrame({"dataset": ["ours"], "ours": [None]}).to_csv(tmp_path / "m.csv", index=False)
    pd.DataFrame({"dataset": ["ours"], "items": [3], "boolean": [33.3]}).to_csv(
        tmp_path / "t.csv", index=False
    )
    pd.DataFrame({"dataset": ["ours"], "items": [3], "hits": [1]}).to_csv(
        tmp_path / "s.csv", index=False
    )
    pd.DataFrame(
        {"dataset": ["ours"], "question": ["Is $a<b$? <script>"], "bench_problem": ["x"],
         "similarity": [0.95]}
    ).to_parquet(tmp_path / "h.parquet")  # fmt: skip
    args = argparse.Namespace(
        novelty=tmp_path / "novelty.csv", matrix=tmp_path / "m.csv", threshold=0.98,
        types=tmp_path / "t.csv", contamination=None, strings=tmp_path / "s.csv",
        hits=tmp_path / "h.parquet", benchmark="math500", out_dir=tmp_path / "out",
    )  # fmt: skip
    written = {p.name for p in write_pages(args)}
    assert written == {"novelty.html", "answer_types.html", "string_check.html"}
    page = (tmp_path / "out" / "string_check.html").read_text()
    assert "&lt;script&gt;" in page and "<script>" not in page and "math500" in page


def test_difficulty_levels_and_seeded_sample(tmp_path):
    from deepmath.analysis.difficulty import histogram, level_shares, sample

    table = pd.DataFrame({"question": [f"q{i}" for i in range(50)]})
    one, two = sample(table, 10, seed=3), sample(table, 10, seed=3)
    assert len(one) == 10 and one.equals(two) and len(sample(table, 80, 3)) == 50
    shares = level_shares(
        {"ours": pd.Series([5.0, 5.4, 6.6, 9.0]), "other": pd.Series([1.0, 2.0, None, 4.6])}
    ).set_index("dataset")
    assert shares.loc["ours", "rated"] == 4 and shares.loc["ours", "5"] == 50.0
    assert shares.loc["ours", ">=5"] == 100.0 and shares.loc["ours", "mean"] == 6.5
    assert shares.loc["other", "rated"] == 3 and shares.loc["other", "5"] == pytest.approx(33.3)
    assert shares.loc["other", ">=5"] == 0.0  # 4.6 rounds to level 5 but is below 5
    histogram(shares.reset_index(), str(tmp_path / "d.png"))
    assert (tmp_path / "d.png").stat().st_size > 1000


def _summary_inputs():
    novelty_t = pd.DataFrame(
        {"dataset": ["ours", "other"], "items": [10, 20], "unique": [9, 20],
         "unique_share": [90.0, 100.0]}
    )  # fmt: skip
    types = pd.DataFrame(
        {"dataset": ["other", "ours"], "items": [20, 10], "guessable": [25.0, 10.0],
         "proof": [5.0, 0.0], "boolean": [20.0, 10.0]}
    )  # fmt: skip
    strings = pd.DataFrame({"dataset": ["ours", "other"], "items": [10, 20], "hits": [0, 3]})
    diff = pd.DataFrame({"dataset": ["ours", "other"], "rated": [10, 4], "mean": [6.1, 3.5],
                         ">=5": [80.0, 25.0]})  # fmt: skip
    rates = pd.DataFrame(
        {"bench": ["a", "b"], "items": [10, 10], "found": [9, 1], "rate": [90.0, 10.0],
         "paper_rate": [92.6, None], "final_found": [0, 0]}
    )  # fmt: skip
    return novelty_t, types, strings, diff, rates


def test_summary_joins_each_analysis_by_dataset():
    from deepmath.analysis.summary import summary_markdown, summary_table

    novelty_t, types, strings, diff, rates = _summary_inputs()
    table = summary_table(novelty_t, types, strings, diff).set_index("dataset")
    assert table.loc["ours"].to_dict() == {
        "items": 10, "string_hits": 0, "unique_share": 90.0, "guessable": 10.0, "proof": 0.0,
        "boolean": 10.0, "difficulty_mean": 6.1, "difficulty_ge5": 80.0,
    }  # fmt: skip
    assert table.loc["other", "string_hits"] == 3 and table.loc["other", "guessable"] == 25.0
    text = summary_markdown(table.reset_index(), rates, {"other": "Other set"}, "math500", 0.98)
    assert ("This run's dataset (`ours`): 10 items; 0 string-check hits against math500; "
            "90.00% unique at cosine > 0.98") in text  # fmt: skip
    assert "0 benchmark items left in the final set" in text
    assert "| Other set |" in text and "| a | 10 | 9 | 90.0 | 92.6 | 0 |" in text


def test_summary_without_the_optional_analyses_leaves_their_columns_empty():
    from deepmath.analysis.summary import summary_markdown, summary_table

    novelty_t, types, *_ = _summary_inputs()
    table = summary_table(novelty_t, types)
    assert table["string_hits"].isna().all() and table["difficulty_mean"].isna().all()
    text = summary_markdown(table, None, {}, None, 0.98)
    assert "string-check" not in text and "left in the final set" not in text
