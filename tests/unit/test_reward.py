import threading
import time

import pytest

from deepmath.reward import compute_score, score, score_many, trl_reward

R1_RIGHT = "<think>2+2 is 4, so \\boxed{5}? no.</think>\nThe answer is $\\boxed{4}$."
R1_WRONG = "<think>hmm</think>\nSo $\\boxed{5}$."


@pytest.mark.parametrize(
    ("response", "truth", "gate", "expected"),
    [
        (R1_RIGHT, "4", "think", 1.0),  # only text after </think> is scored
        (R1_WRONG, "4", "think", -1.0),
        ("The answer is \\boxed{4}", "4", "think", -1.0),  # no </think>: format fails
        ("<think>\\boxed{4}</think> I am not sure.", "4", "think", -1.0),
        ("<think>x</think> it is \\frac{1}{2}", "0.5", "think", 1.0),  # math-verify on the text
        ("So \\boxed{\\dfrac{1}{2}}.", "0.5", "one_box", 1.0),
        ("\\boxed{1} or \\boxed{0.5}", "0.5", "one_box", -1.0),  # Zero-Math: exactly one box
        ("", "1", "think", -1.0),
    ],
)
def test_score_table(response, truth, gate, expected):
    assert score(response, truth, gate)["score"] == expected


def test_compute_score_reads_gate_from_extra_info():
    assert compute_score("deepmath", "\\boxed{3}", "3", {"reward_gate": "one_box"})["score"] == 1
    assert compute_score("deepmath", "\\boxed{3}", "3", {})["score"] == -1  # think gate default


def test_trl_reward_batch_and_chat_completions():
    completions = [[{"role": "assistant", "content": R1_RIGHT}], [{"content": R1_WRONG}]]
    assert trl_reward(["p", "p"], completions, ground_truth=["4", "4"]) == [1.0, -1.0]


def test_hostile_answer_is_bounded_in_worker_threads():
    # off the main thread the checks go to the worker pool, which kills overrunning checks
    out = {}

    def run():
        start = time.perf_counter()
        out["r"] = score_many(["<think>x</think>\\boxed{10^{10^{10^{10}}}}"], ["1"])[0]
        out["s"] = time.perf_counter() - start

    t = threading.Thread(target=run)
    t.start()
    t.join(120)
    assert out["r"]["score"] == -1.0
    assert out["s"] < 60


def test_unknown_gate():
    with pytest.raises(ValueError, match="allowed"):
        score_many(["x"], ["1"], "nope")
