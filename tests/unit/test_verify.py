import pandas as pd
import pytest

from deepmath.verify import decide, final_of, verify_table


def table(rows):
    return pd.DataFrame(
        rows,
        columns=["question", "reference_answer", "r1_solution_1", "r1_solution_2", "r1_solution_3"],
    )


def sol(ans):
    return (
        None
        if ans is None
        else f"<think>maybe \\boxed{{wrong}}</think>\nSo the answer is $\\boxed{{{ans}}}$."
    )


def test_final_of_scores_after_think():
    assert final_of(sol("\\frac12")) == "\\frac12"
    assert final_of("no think block, \\boxed{7}") == "7"
    assert final_of("<think>\\boxed{3}</think> I give up") is None
    assert final_of(None) is None


def test_paper_policy_all_solutions_and_reference():
    t = table(
        [
            ["agree", "0.5", sol("\\frac{1}{2}"), sol("1/2"), sol("0.5")],
            ["one differs", "2", sol("2"), sol("2"), sol("3")],
            ["reference differs", "5", sol("4"), sol("4"), sol("4")],
            ["no reference", None, sol("x=3"), sol("3"), sol("3")],
            ["no reference, disagree", None, sol("1"), sol("2"), sol("3")],
            ["missing box", "1", sol("1"), "no answer here", sol("1")],
        ]
    )
    out = verify_table(t, "all", "if_present", timeout_s=5, workers=1).set_index("question")
    assert out["verified"].to_dict() == {
        "agree": True,
        "one differs": False,
        "reference differs": False,
        "no reference": True,
        "no reference, disagree": False,
        "missing box": False,
    }
    assert out.loc["agree", "final_answer"] == "0.5"  # the reference's form
    assert out.loc["one differs", "verify_reason"] == "disagree_reference"
    assert out.loc["no reference, disagree", "verify_reason"] == "disagree_solutions"
    assert out.loc["missing box", "verify_reason"] == "no_answer"
    assert out.loc["no reference", "answer_1"] == "x=3"


def test_demo_policy_any_solution_matching_a_required_reference():
    t = table(
        [
            ["one right", "12", sol("11"), sol("12"), None],
            ["none right", "12", sol("11"), sol("13"), sol("14")],
            ["no reference", None, sol("1"), sol("1"), sol("1")],
        ]
    )
    out = verify_table(t, "any", "required", timeout_s=5, workers=1).set_index("question")
    assert out["verified"].to_dict() == {
        "one right": True,
        "none right": False,
        "no reference": False,
    }
    assert out.loc["one right", "agreeing_solutions"] == 1
    assert out.loc["no reference", "verify_reason"] == "no_reference"


@pytest.mark.parametrize(
    ("agreement", "expected"), [("all", False), ("majority", True), ("any", True)]
)
def test_agreement_levels_without_reference(agreement, expected):
    verdicts = {(0, 1): (True, "match"), (0, 2): (False, "mismatch"), (1, 2): (False, "mismatch")}
    d = decide(["a", "a", "b"], None, verdicts, agreement, "if_present")
    assert d.keep is expected
    if expected:
        assert d.final_answer == "a" and d.agreeing == 2


def test_timeout_is_reported_as_the_reason():
    verdicts = {(0, -1): (False, "timeout"), (1, -1): (True, "match"), (2, -1): (True, "match")}
    d = decide(["x", "y", "y"], "y", verdicts, "all", "if_present")
    assert not d.keep and d.reason == "timeout"


def test_answer_columns_are_text_even_when_no_answer_is_found(tmp_path):
    """A shard where nothing verifies (or nothing is left) has the same schema as any other."""
    from deepmath.io import read_parquet, write_parquet

    nothing = verify_table(
        table([["q", "5", "no box", None, "still none"]]),
        agreement="all",
        reference_policy="required",
    )
    empty = verify_table(table([]), agreement="all", reference_policy="required")
    some = verify_table(table([["q", "5", sol("5"), sol("5"), sol("5")]]), "all", "required")
    for out in (nothing, empty, some):
        write_parquet(out, tmp_path / "t.parquet")
        back = read_parquet(tmp_path / "t.parquet")
        for column in ("answer_1", "answer_3", "final_answer"):
            assert back[column].dtype == some[column].dtype == "str", (column, back.dtypes)
    assert nothing["final_answer"].isna().all() and some["final_answer"].tolist() == ["5"]
