"""The table logic of the LLM stages, on hand-made rows (no server needed)."""

import math

import pandas as pd

from deepmath.decontaminate import apply_decontamination, judge_table, pairs_to_judge
from deepmath.difficulty import select, summarise_ratings
from deepmath.prompts import load_prompt
from deepmath.rewrite import apply_rewrites


def neighbors():
    return pd.DataFrame(
        {
            "id": ["a", "a", "b", "b", "c"],
            "question": ["qa", "qa", "qb", "qb", "qc"],
            "rank": [1, 2, 1, 2, 1],
            "bench": ["m", "g", "m", "g", "m"],
            "bench_id": ["m/1", "g/1", "m/2", "g/2", "m/3"],
            "bench_problem": ["pa", "pa2", "pb", "pb2", "pc"],
            "bench_answer": ["1", "2", "3", "4", "5"],
            "score": [0.99, 0.5, 0.9, 0.8, 0.7],
            "indel": [0.95, 0.2, 0.5, 0.3, 0.2],
            "precheck": [True, False, False, False, False],
        }
    )


def test_pairs_to_judge_skips_settled_questions_and_low_scores():
    mask = pairs_to_judge(neighbors(), min_score=0.75)
    assert mask.tolist() == [False, False, True, True, False]
    assert pairs_to_judge(neighbors(), None).tolist() == [False, False, True, True, True]


def test_judge_table_any_same_in_either_order_and_unparseable_policy():
    n = neighbors()
    mask = pairs_to_judge(n, None)
    # judged rows: b/1, b/2, c/1 ; verdicts in (ab, ba)
    table = judge_table(n, [False, False, None], [True, False, False], mask, "contaminated")
    assert table["contaminated"].tolist() == [True, False, True, False, True]
    lenient = judge_table(n, [False, False, None], [True, False, False], mask, "clean")
    assert lenient["contaminated"].tolist() == [True, False, True, False, False]
    assert table["unparseable"].sum() == 1


def test_apply_decontamination_report_and_counts():
    n = neighbors()
    table = judge_table(
        n, [True, False, False], [False, False, False], pairs_to_judge(n, None), "clean"
    )
    pool = pd.DataFrame({"id": ["a", "b", "c", "d"], "question": ["qa", "qb", "qc", "qd"]})
    clean, report, stats = apply_decontamination(pool, table)
    assert clean["id"].tolist() == ["c", "d"]
    assert report.set_index("id")["by"].to_dict() == {"a": "string", "b": "judge"}
    assert stats["contaminated_by_benchmark"] == {"m": 2}
    assert stats["by_judge"] == 1 and stats["by_string_precheck"] == 1


def test_ratings_mean_and_selection():
    means, counts = summarise_ratings([[5.0, 6.0], [None, 3.0], [None, None]])
    assert means[:2] == [5.5, 3.0] and math.isnan(means[2]) and counts == [2, 1, 0]
    table = pd.DataFrame({"difficulty": means})
    assert select(table, 5, keep_unrated=False).tolist() == [True, False, False]
    assert select(table, 5, keep_unrated=True).tolist() == [True, False, True]


def test_apply_rewrites_keeps_original_and_flags():
    table = pd.DataFrame(
        {
            "question": ["Hi all! Is 7 prime? Thanks", "Prove that 2 is even.", "What is 1+1?"],
            "reference_answer": [None, None, "2"],
        }
    )
    texts = [
        "Verdict: KEEP\nReason: ok\nQuestion: Is 7 prime?\nAnswer: Yes",
        "Verdict: DROP\nReason: proof",
        "gibberish",
    ]
    kept, everything = apply_rewrites(table, texts, on_unparseable="keep")
    assert kept["question"].tolist() == ["Is 7 prime?", "What is 1+1?"]
    assert kept["original_question"].tolist()[0] == "Hi all! Is 7 prime? Thanks"
    assert kept["flag_yes_no"].tolist() == [True, False]
    assert everything["rewrite_status"].tolist() == ["keep", "drop", "unparseable"]
    assert everything["flag_proof_like"].tolist() == [False, True, False]
    strict, _ = apply_rewrites(table, texts, on_unparseable="drop")
    assert len(strict) == 1


def test_shipped_prompts_have_their_slots(repo):
    slots = {
        "judge": ("problem1", "problem2"),
        "difficulty": ("question",),
        "rewrite": ("question", "reference_answer"),
        "solve": ("question",),
        "topic": ("question", "topics"),
    }
    for folder in ("config/prompts", "config/prompts/demo"):
        for name, needed in slots.items():
            path = repo / folder / f"{name}.txt"
            if path.exists():
                prompt = load_prompt(path, needed)
                text = prompt.render({s: "{x}" for s in needed})
                assert "{x}" in text
    solve = load_prompt(repo / "config/prompts/solve.txt", ("question",))
    assert "\\boxed{}" in solve.render({"question": "Find $\\{a\\}$."})


def test_rewrite_columns_are_text_even_when_nothing_parses():
    table = pd.DataFrame({"question": ["a?", "b?"], "reference_answer": ["1", "2"]})
    _, everything = apply_rewrites(table, ["gibberish", None], on_unparseable="keep")
    parsed = "Verdict: KEEP\nReason: ok\nQuestion: a?\nAnswer: 1"
    _, other = apply_rewrites(table, [parsed, parsed], on_unparseable="keep")
    for column in ("rewrite_reason", "rewrite_answer"):
        assert everything[column].dtype == other[column].dtype == "str", column
    assert everything["rewrite_reason"].isna().all() and other["rewrite_answer"].tolist() == [
        "1",
        "1",
    ]
