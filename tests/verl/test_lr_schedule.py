"""The learning rate of every update, the authors' fork against verl 0.9 with our overrides.

The fork (zwhe99/verl@05dc0fc, verl/utils/torch_functional.py and verl/workers/fsdp_workers.py)
builds a constant schedule with warm-up W (``lr_warmup_steps``; -1 means ratio 0.0 x steps,
so 0) whose multiplier at scheduler step s is ``min(1, s / max(1, W))``, and steps it once per
training step: the first update always runs at lr x 0 (the weights do not move, the Adam
moments do), and with W = 10 the lr reaches its full value at the 11th update. runtime_probe.py
builds verl 0.9's optimizer and scheduler from the composed config with verl's own engine code
and steps them like training does.
"""

from __future__ import annotations

import pytest

from tests.verl.conftest import PAPER_RUNS, overrides_of
from tests.verl.recipe_facts import AUTHORS
from tests.verl.test_sampler import run_runtime_probe

UPDATES = 14
A = "actor_rollout_ref.actor"


def fork_multipliers(warmup_steps: int, total_steps: int, updates: int) -> list[float]:
    """The fork's lr multiplier for each update (its warm-up: -1 = ratio 0 x total steps)."""
    w = int(0.0 * total_steps) if warmup_steps < 0 else warmup_steps
    return [min(1.0, s / max(1, w)) for s in range(updates)]


@pytest.fixture(scope="module")
def schedules(verl_python, verl_env, tmp_path_factory) -> dict:
    tmp = tmp_path_factory.mktemp("lr-schedule")
    request = {
        run: {"overrides": overrides_of(spec, run), "updates": UPDATES}
        for run, spec in PAPER_RUNS.items()
    }
    return run_runtime_probe("lr", request, verl_python, verl_env, tmp)


@pytest.mark.parametrize("run", sorted(PAPER_RUNS))
def test_every_update_gets_the_forks_learning_rate(schedules, run):
    facts = AUTHORS[run]
    lr, total = facts[f"{A}.optim.lr"], facts["trainer.total_training_steps"]
    want = [lr * m for m in fork_multipliers(facts[f"{A}.optim.lr_warmup_steps"], total, UPDATES)]
    got = schedules[run]
    assert got["lrs"] == pytest.approx(want, abs=1e-15)
    assert got["lrs"][0] == 0.0 and got["moved"][0] is False  # the first update changes nothing
    assert all(got["moved"][1:])
    assert (got["optimizer"], got["initial_lr"]) == ("AdamW", lr)
    assert got["weight_decay"] == pytest.approx(facts[f"{A}.optim.weight_decay"])


def test_the_fork_schedule_as_read():
    """The two shapes the paper's runs use, written out."""
    assert fork_multipliers(-1, 1800, 4) == [0.0, 1.0, 1.0, 1.0]
    assert fork_multipliers(10, 500, 12)[:3] == [0.0, 0.1, 0.2]
    assert fork_multipliers(10, 500, 12)[10:] == [1.0, 1.0]
