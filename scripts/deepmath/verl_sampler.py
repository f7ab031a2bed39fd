"""verl 0.9's V1 replay buffer with the DeepMath generation budget (runs inside verl's trainer).

verl loads this file by path (``trainer.v1.sampler.custom_sampler.{path,name}``) and builds
:class:`BudgetedReplayBuffer` with its standard sampler arguments; our settings arrive in
``trainer.v1.sampler.sampler_kwargs`` (see deepmath.verl_recipe): the filter metric, prompts per
step, the generation batch, the round limit and where to write a failure report. Filtering
itself is verl's own (``ReplayBuffer.sample`` drops groups whose metric is constant and asks for
replacements through ``refill_fn``); this class only puts the refills through
:class:`deepmath.sampling.GenerationBudget`.

Only importable where verl is installed (the train env, ``.venv-verl``).
"""

from __future__ import annotations

from typing import Any

from verl.trainer.ppo.v1.replay_buffer import ReplayBuffer

from deepmath.sampling import GenerationBudget

KWARGS = ("filter_metric", "prompts_per_step", "gen_batch", "max_gen_rounds", "report")


class BudgetedReplayBuffer(ReplayBuffer):
    """ReplayBuffer (sync mode) whose DAPO refills respect a :class:`GenerationBudget`."""

    def __init__(self, *, sampler_kwargs: Any, refill_fn: Any = None, **kwargs: Any) -> None:
        opts = {key: sampler_kwargs.get(key) for key in KWARGS}
        missing = [k for k in KWARGS if k != "report" and opts[k] is None]
        if missing:
            raise ValueError(
                f"{type(self).__name__}: trainer.v1.sampler.sampler_kwargs lacks "
                f"{', '.join(missing)}"
            )
        self.budget = GenerationBudget(
            prompts_per_step=int(opts["prompts_per_step"]),
            gen_batch=int(opts["gen_batch"]),
            max_gen_rounds=int(opts["max_gen_rounds"]),
            report=opts["report"],
        )
        self._verl_refill = refill_fn
        self._partition = "train"
        super().__init__(
            sampler_kwargs=sampler_kwargs,
            refill_fn=self._refill if refill_fn is not None else None,
            filter_groups_metric=str(opts["filter_metric"]),
            # verl caps prompts in flight at max_inflight_gen_batches x train_batch_size (its
            # only use of train_batch_size here): 1 x gen_batch is exactly our cap, so verl
            # never asks for a refill the budget would refuse for lack of room
            train_batch_size=1,
            gen_batch_size=1,  # what verl itself uses with filtering: refills of any size
            max_inflight_gen_batches=self.budget.gen_batch,
            **kwargs,
        )

    def _refill(self, num_prompts: int) -> int:
        inflight = len(self.pending_keys[self._partition]) + len(self.running_keys[self._partition])
        granted = self.budget.admit(int(num_prompts), inflight)
        if granted <= 0:
            return 0
        return self._verl_refill(granted)

    def _wait_for_next_poll(self, partition_id: str, last_debug_time: float) -> float:
        """verl waits here for generations to finish. Once the step's budget is spent and
        nothing is pending or running, waiting cannot fill the batch any more (verl spends its
        refill credit whether or not a refill was granted): fail instead of polling forever."""
        if partition_id != "val" and self.budget.spent():
            inflight = len(self.pending_keys[partition_id]) + len(self.running_keys[partition_id])
            if inflight == 0:
                self.budget.fail()
        return super()._wait_for_next_poll(partition_id, last_debug_time)

    def sample(self, global_steps: int, partition_id: str, batch_size: int) -> Any:
        if partition_id != "val":
            self._partition = partition_id
            self.budget.start_step(global_steps)
        return super().sample(global_steps, partition_id, batch_size)
