"""The audit's pure parts on small tables with known answers: each final answer against its own
solutions (equivalent forms agree, planted wrong answers are listed with both answers), the
row statuses, the flags, what the cleaned copy drops, and the card."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import yaml

from deepmath.analysis import audit
from deepmath.io import DeepmathError

REPO = Path(__file__).resolve().parents[2]


def _row(question, final, *solutions):
    sols = [f"... so the answer is \\boxed{{{s}}}." if s is not None else None for s in solutions]
    sols += [None] * (3 - len(sols))
    return {"question": question, "final_answer": final, "difficulty": 5.0, "topic": "t",
            **{f"r1_solution_{i + 1}": s for i, s in enumerate(sols)}}  # fmt: skip


# (final_answer, the solutions' boxed answers) that the checker must find equivalent
SAME = [
    ("\\frac{1}{2}", "0.5"),
    ("2", "2.0"),
    ("\\frac{\\sqrt{2}}{2}", "\\sqrt{2}/2"),
    ("(0,1]", "(0, 1]"),
    ("Yes", "yes"),
    ("3\\pi", "3 \\pi"),
    ("x^2+2x+1", "(x+1)^2"),
    ("\\{1, 2\\}", "\\{2, 1\\}"),
]
# ... and not equivalent: a planted wrong final answer in each answer form
DIFFERENT = [
    ("2", "3"),
    ("\\frac{1}{2}", "0.6"),
    ("Yes", "No"),
    ("(0,1]", "[0,1]"),
    ("x^2+1", "(x+1)^2"),
    ("\\sqrt{3}", "\\sqrt{2}"),
    ("\\{1, 2\\}", "\\{1, 3\\}"),
]


@pytest.fixture(scope="module")
def checked():
    rows = [_row(f"same {i}: compute it", f, s, s) for i, (f, s) in enumerate(SAME)]
    rows += [_row(f"different {i}: compute it", f, s, s) for i, (f, s) in enumerate(DIFFERENT)]
    rows += [
        _row("mixed: compute it", "7", "7", "8", "7"),
        _row("no boxes: compute it", "7"),
        _row("no final answer: compute it", "", "7"),
        _row("duplicate: compute it", "7", "7"),
        _row("duplicate: compute it", "7", "7"),
        _row("a number as the answer: compute it", 42, "42"),
        _row("a null answer: compute it", None, "42"),
    ]
    table = audit.with_ids(pd.DataFrame(rows))
    checks, disagreements = audit.answer_checks(table, timeout_s=5, workers=1)
    return table, checks, disagreements


def test_equivalent_forms_agree_and_wrong_answers_are_listed(checked):
    table, checks, disagreements = checked
    n_same = len(SAME)
    same = checks.iloc[:n_same]
    assert (same["status"] == "all_agree").all(), same[["final_answer", "answer_1", "status"]]
    different = checks.iloc[n_same : n_same + len(DIFFERENT)]
    assert (different["status"] == "none_agree").all(), different[["final_answer", "answer_1"]]
    # every wrong (row, solution) pair is listed, with both answers
    listed = disagreements[disagreements["id"].isin(different["id"])]
    assert len(listed) == 2 * len(DIFFERENT)
    for (final, sol), (_, row) in zip(DIFFERENT, different.iterrows(), strict=True):
        got = listed[listed["id"] == row["id"]]
        assert set(got["final_answer"]) == {final}
        assert set(got["solution_answer"]) == {sol}
        assert set(got["solution"]) == {"r1_solution_1", "r1_solution_2"}
        assert set(got["reason"]) == {"mismatch"}
    # no pair of the equivalent rows is listed
    assert not disagreements["id"].isin(same["id"]).any()


def test_row_statuses(checked):
    _, checks, disagreements = checked
    by_q = checks.set_index("question")
    mixed = by_q.loc["mixed: compute it"]
    assert (mixed["status"], mixed["checked"], mixed["agreeing"]) == ("some_disagree", 3, 2)
    assert by_q.loc["no boxes: compute it", "status"] == "no_solution_answer"
    assert by_q.loc["no final answer: compute it", "status"] == "no_final_answer"
    assert by_q.loc["a null answer: compute it", "status"] == "no_final_answer"
    assert by_q.loc["a number as the answer: compute it", "status"] == "all_agree"
    assert disagreements[disagreements["question"] == "mixed: compute it"]["solution"].tolist() == [
        "r1_solution_2"
    ]
    # duplicate questions stay two rows with two ids
    dup = checks[checks["question"] == "duplicate: compute it"]
    assert len(dup) == 2 and dup["id"].nunique() == 2


def test_answer_stats_count_solutions_and_statuses(checked):
    _, checks, disagreements = checked
    stats = audit.answer_stats(checks, disagreements)
    assert stats["rows"] == len(checks)
    assert sum(stats["status"].values()) == len(checks)
    assert stats["solutions_checked"] == int(checks["checked"].sum())
    assert stats["disagreeing_pairs"] == len(disagreements) == 2 * len(DIFFERENT) + 1
    assert 0 < stats["agreement_share"] < 1


@pytest.mark.parametrize(
    ("final", "present", "agreeing", "status"),
    [
        (True, 3, 3, "no_final_answer"),
        (False, 0, 0, "no_solution_answer"),
        (False, 3, 3, "all_agree"),
        (False, 1, 1, "all_agree"),
        (False, 3, 1, "some_disagree"),
        (False, 3, 0, "none_agree"),
    ],
)
def test_status_of(final, present, agreeing, status):
    assert audit.status_of(final, present, agreeing) == status


def test_a_table_without_solutions_is_an_error():
    table = audit.with_ids(pd.DataFrame({"question": ["q"], "final_answer": ["1"]}))
    with pytest.raises(DeepmathError, match="r1_solution_"):
        audit.answer_checks(table, workers=1)


FLAG_CASES = [
    ("Is 91 a prime number?", "No", "boolean"),
    ("Is the statement true?", "\\text{True}", "boolean"),
    ("Which is right? (A) 1 (B) 2", "B", "choice"),
    ("Which is right? (A) 1 (B) 2", "(C)", "choice"),
    ("Prove that there are infinitely many primes.", "There are infinitely many", "proof"),
    ("Show that the sum is even.", "\\text{even}", "proof"),
    ("Compute 2+2.", "4", None),
    ("Find all x with x^2 = 1.", "\\{-1, 1\\}", None),
    ("How many boxes?", "12", None),
    ("Evaluate the limit.", "e", None),
]


def test_flags_mark_boolean_choice_and_proof_items():
    table = audit.with_ids(pd.DataFrame(FLAG_CASES, columns=["question", "final_answer", "k"]))
    flagged = audit.flags(table)
    for (_, row), (_, _, kind) in zip(flagged.iterrows(), FLAG_CASES, strict=True):
        for k in audit.FLAGS:
            assert row[k] == (k == kind), (row["id"], k, kind)


def _drops(drop):
    checks = pd.DataFrame(
        {"id": ["a", "b", "c", "d"],
         "status": ["all_agree", "none_agree", "some_disagree", "all_agree"]}
    )  # fmt: skip
    flagged = pd.DataFrame(
        {"id": ["a", "b", "c", "d"], "answer_type": ["integer", "integer", "boolean", "proof"],
         "boolean": [False, False, True, False], "choice": [False] * 4,
         "proof": [False, False, False, True]}
    )  # fmt: skip
    return audit.dropped(checks, flagged, {"a"}, drop)


@pytest.mark.parametrize(
    ("drop", "dropped"),
    [
        ([], set()),
        (["contaminated"], {"a"}),
        (["none_agree"], {"b"}),
        (["contaminated", "none_agree"], {"a", "b"}),
        (["some_disagree", "proof"], {"c", "d"}),
        (["boolean", "choice"], {"c"}),
    ],
)
def test_the_cleaned_copy_drops_what_the_config_names(drop, dropped):
    out = _drops(drop)
    assert set(out.loc[out["drop"], "id"]) == dropped
    assert list(out.columns) == ["id", *drop, "drop"]


def test_an_unknown_drop_reason_is_refused():
    with pytest.raises(DeepmathError, match="'wrong'.*allowed values: contaminated"):
        _drops(["wrong"])


def test_drop_reasons_match_the_schema():
    schema = yaml.safe_load((REPO / "config" / "schema.yaml").read_text())
    enum = schema["properties"]["audit"]["properties"]["drop"]["items"]["enum"]
    assert sorted(enum) == sorted(audit.DROPPABLE)


def test_the_card_holds_counts_examples_config_and_versions(checked):
    table, checks, disagreements = checked
    flagged = audit.flags(table)
    contaminated = pd.DataFrame(
        [{"id": table["id"].iat[0], "question": table["question"].iat[0], "bench": "aime25",
          "bench_problem": "a | b", "score": 0.99, "by": "string"}]
    )  # fmt: skip
    decontam = {"contaminated": 1, "by_string_precheck": 1, "by_judge": 0,
                "contaminated_by_benchmark": {"aime25": 1}}  # fmt: skip
    drop = ["contaminated", "none_agree"]
    drops = audit.dropped(checks, flagged, set(contaminated["id"]), drop)
    stats = audit.summary("x", "X set", audit.answer_stats(checks, disagreements), flagged,
                          decontam, drops, drop)  # fmt: skip
    assert stats["dropped_by"] == {"contaminated": 1, "none_agree": len(DIFFERENT)}
    assert stats["kept"] == len(table) - 1 - len(DIFFERENT)
    spec = {"name": "x", "benchmarks": ["math500", "aime25"], "drop": drop,
            "load": {"path": "zwhe99/DeepMath-103K", "revision": "abc123"}}  # fmt: skip
    card = audit.audit_card(stats, disagreements, contaminated,
                            audit.flagged_examples(table, flagged), spec,
                            {"math-verify": "0.9"}, examples=3)  # fmt: skip
    assert card.startswith("# Audit: X set")
    assert f"keeps {stats['kept']}" in card
    assert f"First 3 of {len(disagreements)} disagreeing" in card
    assert "aime25" in card and '"revision": "abc123"' in card
    assert "| math-verify | 0.9 |" in card
    assert "a \\| b" in card  # a pipe in a text cannot break the table
