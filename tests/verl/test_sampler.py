"""Dynamic sampling in the authors' rounds, through verl 0.9's own replay-buffer code.

The authors' trainer fills a step in rounds of ``gen_batch`` prompts: a round is generated
and scored whole, the groups whose ``acc`` varies are kept, another round follows only when
fewer than ``prompts_per_step`` are kept, the first ``prompts_per_step`` kept groups train and
the rest are thrown away, and the run fails after ``max_gen_rounds`` rounds without a full
batch. runtime_probe.py runs deepmath.verl_sampler inside .venv-verl on a scripted queue
whose kept groups the test chooses, and records every dispatch.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

HELPER = Path(__file__).with_name("runtime_probe.py")
ALL = list(range(1000))
SHAPE = {"prompts_per_step": 4, "gen_batch": 12, "max_gen_rounds": 3, "n": 4}
CASES = {
    # every group varies: one round per step, the other 8 kept groups are discarded
    "all-kept": {**SHAPE, "kept": ALL, "steps": 2},
    # 2 kept in round 1, 2 more in round 2
    "two-rounds": {**SHAPE, "kept": [0, 5, 12, 17], "steps": 1},
    # the last allowed round fills the batch
    "last-round": {**SHAPE, "kept": [30, 31, 32, 33], "steps": 1},
    # nothing varies: the run fails after exactly max_gen_rounds rounds
    "never-fills": {**SHAPE, "kept": [], "steps": 1},
    # 3 of 4 in the only round allowed: fails after one round
    "one-round-limit": {**SHAPE, "max_gen_rounds": 1, "kept": [0, 1, 2], "steps": 1},
    # more kept than needed, out of order: the first 4 in data order train
    "first-in-data-order": {**SHAPE, "kept": [11, 1, 9, 3, 7, 10], "steps": 1},
    # gen_batch == prompts_per_step: the trainer's own batch is the whole round
    "gen-equals-step": {**SHAPE, "gen_batch": 4, "kept": ALL, "steps": 2},
}


def run_runtime_probe(mode: str, cases: dict, verl_python, verl_env, tmp: Path) -> dict:
    """runtime_probe.py's result for ``cases`` in one .venv-verl process."""
    (tmp / "request.json").write_text(json.dumps(cases))
    proc = subprocess.run(
        [str(verl_python), str(HELPER), mode, str(tmp / "request.json"), str(tmp / "out.json")],
        capture_output=True,
        text=True,
        env=verl_env,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads((tmp / "out.json").read_text())


@pytest.fixture(scope="module")
def rounds(verl_python, verl_env, tmp_path_factory) -> dict:
    tmp = tmp_path_factory.mktemp("sampler-rounds")
    return run_runtime_probe("rounds", CASES, verl_python, verl_env, tmp)


def _dispatches(got: dict, step: int = 1) -> list[tuple[int, int]]:
    """(prompts, prompts in flight at that moment) of every submission of one step."""
    return [(s["count"], s["inflight"]) for s in got["submits"] if s["step"] == step]


def test_a_round_is_gen_batch_prompts_and_the_surplus_is_discarded(rounds):
    got = rounds["all-kept"]
    assert got["error"] is None
    for step in (1, 2):
        # the trainer's 4, then the rest of the round at once: 12 prompts generated together
        assert _dispatches(got, step) == [(4, 0), (8, 4)]
    # the first prompts_per_step kept groups in data order, as the fork cuts its batch
    assert got["batches"] == [[0, 1, 2, 3], [12, 13, 14, 15]]
    assert [m["training/filter_groups/gen_rounds"] for m in got["metrics"]] == [1, 1]
    surplus = "training/filter_groups/discarded_surplus_samples"
    assert [m[surplus] for m in got["metrics"]] == [8, 8]
    assert got["left_in_queue"] == []  # nothing carries over to the next step


def test_another_round_only_after_the_last_one_is_scored(rounds):
    got = rounds["two-rounds"]
    assert got["error"] is None
    # round 2 goes out whole, with nothing in flight (no streaming refills)
    assert _dispatches(got) == [(4, 0), (8, 4), (12, 0)]
    assert got["batches"] == [[0, 5, 12, 17]]
    assert got["metrics"][0]["training/filter_groups/gen_rounds"] == 2
    assert got["metrics"][0]["training/filter_groups/evicted_samples"] == 20  # 24 - 4 kept
    got = rounds["last-round"]
    assert _dispatches(got) == [(4, 0), (8, 4), (12, 0), (12, 0)]
    assert got["batches"] == [[30, 31, 32, 33]]
    assert got["metrics"][0]["training/filter_groups/gen_rounds"] == 3


@pytest.mark.parametrize(("case", "rounds_run"), [("never-fills", 3), ("one-round-limit", 1)])
def test_the_run_fails_after_max_gen_rounds_rounds(rounds, case, rounds_run):
    got = rounds[case]
    assert got["batches"] == []
    assert got["error"]["type"] == "DynamicSamplingExhausted"
    assert f"max_gen_rounds {rounds_run}" in got["error"]["message"]
    assert sum(count for count, _ in _dispatches(got)) == rounds_run * 12
    assert got["report"]["dispatched"] == got["report"]["limit"] == rounds_run * 12


def test_gen_batch_equal_to_the_step_needs_no_top_up(rounds):
    got = rounds["gen-equals-step"]
    assert got["error"] is None
    assert _dispatches(got, 1) == [(4, 0)] and _dispatches(got, 2) == [(4, 0)]
    assert got["batches"] == [[0, 1, 2, 3], [4, 5, 6, 7]]


def test_the_batch_is_the_first_kept_groups_in_data_order(rounds):
    got = rounds["first-in-data-order"]
    assert _dispatches(got) == [(4, 0), (8, 4)]
    assert got["batches"] == [[1, 3, 7, 9]]
    assert got["metrics"][0]["training/filter_groups/discarded_surplus_samples"] == 2


def test_the_first_epoch_is_in_the_forks_order(verl_python, verl_env, tmp_path):
    """verl's train sampler from our config (data.seed 1) draws the fork's permutation for the
    first epoch; later epochs differ (the DEVIATIONS entry data.epoch_order)."""
    from deepmath import verl_recipe
    from tests.verl.conftest import PAPER_1_5B, overrides_of

    case = {"overrides": overrides_of(PAPER_1_5B), "rows": 1000, "epochs": 2}
    got = run_runtime_probe("data-order", {"1.5b": case}, verl_python, verl_env, tmp_path)["1.5b"]
    assert got["seed"] == 1
    assert got["ours"][0] == got["fork"][0] != list(range(1000))
    assert sorted(got["ours"][1]) == list(range(1000))
    assert got["ours"][1] != got["fork"][1]
    assert "data.epoch_order" in verl_recipe.DEVIATIONS
