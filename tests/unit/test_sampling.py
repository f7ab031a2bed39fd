"""The generation budget of dynamic sampling (deepmath.sampling): what verl's trainer is held to."""

from __future__ import annotations

import json

import pytest

from deepmath.sampling import DynamicSamplingExhausted, GenerationBudget, read_report


def test_any_generation_batch_bounds_the_prompts_in_flight():
    budget = GenerationBudget(prompts_per_step=128, gen_batch=480, max_gen_rounds=10)
    budget.start_step(1)
    assert budget.admit(1000, inflight=128) == 352  # 480 in flight, never more
    assert budget.admit(10, inflight=480) == 0
    assert budget.admit(10, inflight=470) == 10
    assert budget.admit(0, inflight=0) == 0


def test_a_step_that_cannot_fill_fails_after_its_rounds(tmp_path):
    report = tmp_path / "failed.json"
    budget = GenerationBudget(128, 384, 10, report=str(report))
    budget.start_step(7)
    sent = 128
    while True:
        try:
            sent += budget.admit(384, inflight=0)
        except DynamicSamplingExhausted as err:
            message = str(err)
            break
    assert sent == budget.limit == 3840  # 10 rounds of 384
    assert budget.spent()
    assert "training step 7" in message and "max_gen_rounds 10" in message
    assert "gen_batch 384" in message and "prompts_per_step 128" in message
    assert read_report(report) == message
    assert json.loads(report.read_text())["dispatched"] == 3840


def test_the_budget_is_per_step():
    budget = GenerationBudget(4, 8, 2)
    budget.start_step(1)
    assert budget.admit(100, inflight=0) == 8
    assert budget.admit(100, inflight=0) == 4  # 16 minus the 4 + 8 already out
    with pytest.raises(DynamicSamplingExhausted):
        budget.admit(1, inflight=0)
    budget.start_step(1)  # the same step sampled again keeps its count
    with pytest.raises(DynamicSamplingExhausted):
        budget.admit(1, inflight=0)
    budget.start_step(2)
    assert budget.admit(100, inflight=0) == 8
    assert budget.history == [16]


def test_bad_settings_are_refused():
    for args in ((0, 8, 1), (8, 4, 1), (4, 8, 0), (4, True, 1)):
        with pytest.raises(ValueError):
            GenerationBudget(*args)


def test_no_report_is_none(tmp_path):
    assert read_report(tmp_path / "none.json") is None
