import json
from pathlib import Path

import pytest
import yaml

from deepmath.verdicts import (
    is_proof_like,
    is_yes_no,
    parse_judge,
    parse_rating,
    parse_rewrite,
    parse_topic,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("True", True),
        ("False", False),
        ("  true.", True),
        ("**False**", False),
        ("Yes, they are the same problem.", True),
        ("No. The numbers differ.", False),
        ("They are different problems.", False),
        ("<think>Maybe True? Let me check... no.</think>\nFalse", False),
        ("True. Although they are not the same wording...", True),
        ("I cannot decide.", None),
        ("", None),
        (None, None),
        ("x" * 100_000, None),
    ],
)
def test_parse_judge(text, expected):
    assert parse_judge(text) is expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Summary: a standard AIME trick.\nScore: 5.5\n=== report over ===", 5.5),
        ("Score: 7", 7.0),
        ("**Score:** 6.5", 6.5),
        ("The difficulty is 4 / 10.", 4.0),
        ("Rating: 3.3", 3.5),  # snapped to half points
        ("Score: 11", None),  # off the scale
        ("Score: 0", None),
        ("Score: 5\n=== report over ===\nScore: 9", 5.0),  # text after the end marker ignored
        ("I would say \\boxed{8}", 8.0),
        ("Score: 3 at first, but on reflection Score: 4.5", 4.5),
        ("no number here", None),
        (None, None),
        ("Score: 1e309", None),
    ],
)
def test_parse_rating(text, expected):
    assert parse_rating(text) == expected


def test_parse_rewrite_keep_and_drop():
    keep = parse_rewrite(
        "Verdict: KEEP\nReason: one numeric answer\nQuestion: Find $x$ if\n$2x = 6$.\nAnswer: 3"
    )
    assert keep is not None and keep.keep and keep.answer == "3"
    assert keep.question == "Find $x$ if\n$2x = 6$."
    drop = parse_rewrite("Verdict: DROP\nReason: asks for a proof")
    assert drop is not None and not drop.keep and drop.question is None
    assert parse_rewrite("**Verdict:** keep\n**Question:** What is 2+2?").keep


@pytest.mark.parametrize(
    "text",
    [None, "", "I think we should keep it.", "Verdict: MAYBE", "Verdict: KEEP\nReason: fine"],
)
def test_parse_rewrite_unreadable(text):
    assert parse_rewrite(text) is None


TOPICS = [
    "Mathematics -> Algebra -> Linear Algebra -> Matrices",
    "Mathematics -> Calculus -> Integral Calculus -> Techniques of Integration",
    "Mathematics -> Number Theory -> Prime Numbers",
]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Mathematics -> Number Theory -> Prime Numbers", TOPICS[2]),
        ("mathematics->number theory->prime numbers.", TOPICS[2]),
        ("The topic is: Mathematics -> Algebra -> Linear Algebra -> Matrices", TOPICS[0]),
        ("Mathematics -> Calculus -> Integral Calculus -> Technique of Integration", TOPICS[1]),
        ("Mathematics -> Geometry", None),
        ("", None),
        (None, None),
    ],
)
def test_parse_topic(text, expected):
    assert parse_topic(text, TOPICS) == expected


def test_flags():
    assert is_yes_no("Yes") and is_yes_no("\\text{False}") and is_yes_no(" no. ")
    assert not is_yes_no("7") and not is_yes_no(None)
    assert is_proof_like("Prove that there are infinitely many primes.")
    assert is_proof_like("Show that $f$ is continuous.")
    assert not is_proof_like("Find the number of primes below 100.")


# ----------------------------------------------------------------------------- real outputs

TESTS = Path(__file__).resolve().parents[1]
REAL = json.loads((TESTS / "data" / "smollm2_outputs.json").read_text())
DEMO_TREE = yaml.safe_load((TESTS.parent / "config" / "demo.yaml").read_text())["topics"]["tree"]


@pytest.mark.parametrize("case", REAL["judge"], ids=lambda c: c["text"][:30])
def test_judge_on_real_smollm2_outputs(case):
    assert parse_judge(case["text"]) is case["expected"]


@pytest.mark.parametrize("case", REAL["rating"], ids=lambda c: c["text"][:30])
def test_rating_on_real_smollm2_outputs(case):
    assert parse_rating(case["text"]) == case["expected"]


@pytest.mark.parametrize("case", REAL["rewrite"], ids=lambda c: c["text"][:30])
def test_rewrite_on_real_smollm2_outputs(case):
    assert parse_rewrite(case["text"]) == case["expected"]


@pytest.mark.parametrize("case", REAL["topic"], ids=lambda c: c["text"][:30])
def test_topic_on_real_smollm2_outputs(case):
    assert parse_topic(case["text"], DEMO_TREE) == case["expected"]
