import pandas as pd
import pytest

from deepmath.io import DeepmathError
from deepmath.pool import build_pool
from deepmath.pull import SOURCE_COLUMNS
from deepmath.text import shard_of


def frame(source: str, questions: list[str]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "id": [""] * len(questions),
            "source": source,
            "question": questions,
            "reference_solution": None,
            "reference_answer": None,
        }
    )[SOURCE_COLUMNS]


def test_exact_and_near_duplicates_removed_first_source_wins():
    a = frame("a", ["Find $x$ if $2x=4$.", "What is 2+3?", "  "])
    b = frame("b", ["Find $x$  if $2x=4$.", "what is 2+3", "What is 2-3?"])
    shards, stats = build_pool([a, b], 3)
    pool = pd.concat(shards)
    assert sorted(pool["question"]) == ["Find $x$ if $2x=4$.", "What is 2+3?", "What is 2-3?"]
    assert pool.set_index("question").loc["What is 2+3?", "source"] == "a"
    assert stats["empty_dropped"] == 1
    assert stats["exact_duplicates"] == 1  # same text once normalised
    assert stats["near_duplicates"] == 1  # case and punctuation differ
    assert stats["rows_out"] == 3
    assert sum(stats["per_shard"]) == 3


def test_sharding_is_stable_and_independent_of_other_rows():
    qs = [f"Problem number {i}: compute {i}^2." for i in range(200)]
    shards_all, _ = build_pool([frame("s", qs)], 4)
    shards_half, _ = build_pool([frame("s", qs[:100])], 4)
    where_all = {r.id: s for s, df in enumerate(shards_all) for r in df.itertuples()}
    where_half = {r.id: s for s, df in enumerate(shards_half) for r in df.itertuples()}
    assert all(where_all[i] == s for i, s in where_half.items())
    assert all(shard_of(i, 4) == s for i, s in where_all.items())
    # same input -> identical shard files (rows sorted by id)
    again, _ = build_pool([frame("s", qs)], 4)
    for x, y in zip(shards_all, again, strict=True):
        pd.testing.assert_frame_equal(x, y)


def test_zero_shards_is_an_error():
    with pytest.raises(DeepmathError, match="shards"):
        build_pool([frame("s", ["q"])], 0)


def test_overlong_questions_and_answers_are_dropped_and_counted():
    rows = frame("s", ["short one", "x" * 50, "another short"])
    rows.loc[2, "reference_answer"] = "y" * 41
    shards, stats = build_pool([rows], 1, max_chars=40)
    assert list(shards[0]["question"].sort_values()) == ["short one"]
    assert stats["too_long_dropped"] == 2 and stats["max_chars"] == 40
    shards, stats = build_pool([rows], 1, max_chars=None)
    assert stats["too_long_dropped"] == 0 and len(shards[0]) == 3
