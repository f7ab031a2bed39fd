"""The generation budget of DAPO dynamic sampling, as the DeepMath runs bound it.

The authors' trainer generates ``gen_batch`` prompts per round, keeps the groups whose rewards
are not all equal, and repeats until ``prompts_per_step`` groups are kept; after
``max_gen_rounds`` rounds (10 in all four runs) without a full batch it stops the run with an
error. verl 0.9's V1 trainer streams prompts instead: it refills dropped groups without any
round limit (a run whose data is too easy or too hard for the model would sample forever) and
bounds the prompts in flight only in whole train batches (``max_inflight_gen_batches``), so a
generation batch of 480 for 128 trained prompts cannot be expressed on its own.

:class:`GenerationBudget` restores both rules on the V1 trainer's own extension point (a custom
sampler, ``deepmath.verl_sampler``): at most ``gen_batch`` prompts in flight, and at most
``max_gen_rounds x gen_batch`` prompts generated for one training step, after which the run
fails with a message that names the numbers. It is pure bookkeeping, no verl import, so it is
tested here and reused by the sampler.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


class DynamicSamplingExhausted(RuntimeError):
    """Dynamic sampling could not fill a training batch within the generation budget."""


@dataclass
class GenerationBudget:
    """Per-step accounting of the prompts dynamic sampling sends to generation.

    ``report`` (optional): a JSON file written when the budget runs out, so the launcher can
    print the reason instead of a Ray traceback.
    """

    prompts_per_step: int
    gen_batch: int
    max_gen_rounds: int
    report: str | None = None
    step: int = 0
    dispatched: int = 0
    history: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        for name in ("prompts_per_step", "gen_batch", "max_gen_rounds"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
        if self.gen_batch < self.prompts_per_step:
            raise ValueError(
                f"gen_batch ({self.gen_batch}) must be >= prompts_per_step "
                f"({self.prompts_per_step}): a step's first batch is already in flight"
            )

    @property
    def limit(self) -> int:
        """Prompts one step may generate: ``max_gen_rounds`` rounds of ``gen_batch``."""
        return self.max_gen_rounds * self.gen_batch

    def start_step(self, step: int) -> None:
        """A new training step: its first ``prompts_per_step`` prompts are already submitted.

        Calling it again for the same step keeps the count (the trainer may sample a step's
        batch in several calls)."""
        if step == self.step and self.dispatched:
            return
        if self.step and self.dispatched:
            self.history.append(self.dispatched)
        self.step = step
        self.dispatched = self.prompts_per_step

    def spent(self) -> bool:
        """The step has generated all the prompts it may."""
        return self.dispatched >= self.limit

    def admit(self, requested: int, inflight: int) -> int:
        """How many of ``requested`` refill prompts may go out now (0..requested).

        ``inflight``: prompts pending or running. Never more than ``gen_batch`` in flight; when
        the step has used its whole budget and still asks for more, the run fails.
        """
        if requested <= 0:
            return 0
        room = max(0, self.gen_batch - inflight)
        left = self.limit - self.dispatched
        if left <= 0:
            self.fail()
        granted = min(requested, room, left)
        self.dispatched += granted
        return granted

    def message(self) -> str:
        rounds = self.dispatched / self.gen_batch
        return (
            f"dynamic sampling could not fill training step {self.step}: "
            f"{self.dispatched} prompts generated ({rounds:.1f} rounds of gen_batch "
            f"{self.gen_batch}, the limit is max_gen_rounds {self.max_gen_rounds}) and fewer than "
            f"prompts_per_step {self.prompts_per_step} of them had rewards that were not all "
            "equal. The data is too easy or too hard for the model, or the reward never "
            "passes its gate; check the reward on a few rollouts, or raise "
            "rl.runs.<name>.recipe.max_gen_rounds"
        )

    def fail(self) -> None:
        text = self.message()
        if self.report:
            record = {"step": self.step, "dispatched": self.dispatched, "limit": self.limit}
            write_report(self.report, {**record, "message": text})
        raise DynamicSamplingExhausted(text)


def write_report(path: str | Path, record: dict[str, Any]) -> None:
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(target.suffix + ".tmp")
    tmp.write_text(json.dumps(record, indent=2) + "\n")
    tmp.replace(target)


def read_report(path: str | Path) -> str | None:
    """The failure message a sampler left behind, or None."""
    target = Path(path)
    if not target.is_file():
        return None
    try:
        return str(json.loads(target.read_text())["message"])
    except (ValueError, KeyError, TypeError):
        return target.read_text()[:2000]
