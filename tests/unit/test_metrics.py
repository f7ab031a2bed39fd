"""Evaluation metrics against hand-computed cases (deepmath.metrics)."""

from __future__ import annotations

import math
from fractions import Fraction

import pytest

from deepmath.metrics import (
    majority_vote,
    mean_or_none,
    pass_at_1,
    pass_at_k,
    pass_at_ks,
    per_category,
    percent,
    summarize,
)


def product_form(n: int, c: int, k: int) -> float:
    """Chen et al.'s numerically stable form: 1 - prod_{i<k} (n-c-i)/(n-i)."""
    if n - c < k:
        return 1.0
    return 1.0 - math.prod((n - c - i) / (n - i) for i in range(k))


@pytest.mark.parametrize(
    ("n", "c", "k", "expected"),
    [
        (4, 2, 1, Fraction(1, 2)),
        (4, 2, 2, Fraction(5, 6)),  # 1 - C(2,2)/C(4,2) = 1 - 1/6
        (4, 2, 4, Fraction(1)),  # n - c < k: every k-subset has a correct sample
        (4, 0, 4, Fraction(0)),
        (4, 4, 1, Fraction(1)),
        (5, 2, 2, Fraction(7, 10)),  # 1 - C(3,2)/C(5,2) = 1 - 3/10
        (16, 1, 8, Fraction(1, 2)),  # 1 - C(15,8)/C(16,8)
        (16, 3, 1, Fraction(3, 16)),
    ],
)
def test_pass_at_k_hand_computed(n, c, k, expected):
    assert pass_at_k(n, c, k) == pytest.approx(float(expected), abs=1e-12)


def test_pass_at_k_matches_the_product_form_everywhere():
    for n in range(1, 17):
        for c in range(n + 1):
            for k in range(1, n + 1):
                assert pass_at_k(n, c, k) == pytest.approx(product_form(n, c, k), abs=1e-12)


@pytest.mark.parametrize(("n", "c", "k"), [(4, 5, 1), (4, -1, 1), (4, 2, 0), (4, 2, 5)])
def test_pass_at_k_rejects_impossible_counts(n, c, k):
    with pytest.raises(ValueError):
        pass_at_k(n, c, k)


def test_pass_at_1_mean_std_and_columns():
    # problem 1: 2 of 4 right, problem 2: 1 of 4 right
    correct = [[1, 1, 0, 0], [1, 0, 0, 0]]
    got = pass_at_1(correct)
    assert got["mean"] == pytest.approx((0.5 + 0.25) / 2)
    assert got["per_sample"] == [1.0, 0.5, 0.0, 0.0]
    # population std of the column accuracies 1, .5, 0, 0 (mean .375): sqrt(.6875 / 4)
    assert got["std"] == pytest.approx(math.sqrt(0.6875 / 4))
    assert pass_at_1([])["per_sample"] == [] and math.isnan(pass_at_1([])["mean"])


def test_pass_at_ks_only_up_to_n_and_averaged_over_problems():
    correct = [[1, 1, 0, 0], [0, 0, 0, 0]]  # c = 2 and c = 0 of n = 4
    got = pass_at_ks(correct, ks=(1, 2, 4, 8))
    assert set(got) == {1, 2, 4}  # k = 8 > n is not reported
    assert got[1] == pytest.approx(0.25)
    assert got[2] == pytest.approx((5 / 6 + 0) / 2)
    assert got[4] == pytest.approx(0.5)


def test_majority_vote_picks_the_most_common_answer():
    assert majority_vote(["4", "4", "5", None]) == 0
    assert majority_vote(["5", "4", "4"]) == 1
    assert majority_vote([None, None]) is None
    assert majority_vote([]) is None
    assert majority_vote([float("nan"), "7"]) == 1  # pandas' missing string does not vote


def test_majority_vote_ties_go_to_the_answer_seen_first():
    assert majority_vote(["a", "b"]) == 0
    assert majority_vote([None, "b", "a", "a", "b"]) == 1


def test_majority_vote_merges_equivalent_groups():
    keys = ["3", "\\frac{1}{2}", "0.5", "3"]
    # without links "3" wins with 2 votes against 1 + 1
    assert majority_vote(keys) == 0
    # 1/2 and 0.5 are one answer: 2 votes against 2, and it was seen... later than "3"
    assert majority_vote(keys, [("\\frac{1}{2}", "0.5")]) == 0
    keys = ["3", "\\frac{1}{2}", "0.5", "0.5"]
    # merged group has 3 votes; its representative is its most common spelling, 0.5
    assert majority_vote(keys, [("\\frac{1}{2}", "0.5")]) == 2
    # links are transitive and links to absent keys are ignored
    assert majority_vote(["a", "b", "c", "d", "d"], [("a", "b"), ("b", "c"), ("x", "d")]) == 0


def test_summarize_headline_numbers_in_percent():
    correct = [[True, False], [True, True], [False, False]]
    got = summarize(
        correct, ks=(1, 2, 4), maj_correct=[True, True, False], categories=["A", "B", "A"]
    )
    assert got["n"] == 2 and got["problems"] == 3 and got["samples"] == 6
    assert got["correct_samples"] == 3
    assert got["pass@1"] == 50.0
    assert got["pass@1_per_sample"] == [66.7, 33.3]
    assert got["pass@1_std"] == 16.7
    assert got["pass@k"] == {"1": 50.0, "2": 66.7}  # (1 + 1 + 0) / 3
    assert got["maj@n"] == 66.7
    assert got["per_category"] == {
        "A": {"problems": 2, "pass@1": 25.0},
        "B": {"problems": 1, "pass@1": 100.0},
    }


def test_per_category_none_without_categories_and_groups_missing_ones():
    correct = [[True], [False]]
    assert per_category(correct, [None, float("nan")]) is None
    assert per_category(correct, ["A", None]) == {
        "(none)": {"problems": 1, "pass@1": 0.0},
        "A": {"problems": 1, "pass@1": 100.0},
    }
    assert summarize(correct)["per_category"] is None
    assert "maj@n" not in summarize(correct)


def test_percent_and_row_mean():
    assert percent(0.83333) == 83.3 and percent(float("nan")) is None
    assert mean_or_none([80.0, 90.0, 85.5]) == 85.2
    assert mean_or_none([80.0, None]) is None and mean_or_none([]) is None
