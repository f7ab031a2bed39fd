"""verl 0.9's V1 replay buffer sampling in the authors' generation rounds (runs inside verl).

verl loads this file by path (``trainer.v1.sampler.custom_sampler.{path,name}``) and builds
:class:`BudgetedReplayBuffer` with its standard sampler arguments; our settings arrive in
``trainer.v1.sampler.sampler_kwargs`` (see deepmath.verl_recipe): the filter metric, prompts per
step, the generation batch, the round limit and where to write a failure report.

The authors' trainer (their verl fork) fills a training step in rounds: it generates
``gen_batch`` prompts, keeps the groups whose metric is not constant, and generates another
``gen_batch`` only once the whole round is scored and fewer than ``prompts_per_step`` groups
are kept; the first ``prompts_per_step`` kept groups train, the surplus is discarded, and the
run fails after ``max_gen_rounds`` rounds without a full batch. verl 0.9's own sync sampler
streams instead (it refills twice the dropped groups while others are still generating). This
class keeps verl's bookkeeping (its TransferQueue snapshot, DAPO classification, eviction,
selection and materialisation) and replaces only the dispatch with the authors' rounds:

- round 1: the trainer has already submitted ``prompts_per_step`` prompts; the rest of the
  round (``gen_batch - prompts_per_step``, the next prompts of the same data order) goes out
  at once, so the round is the ``gen_batch`` prompts the fork generated together;
- nothing more is dispatched while a round is generating; when it is done and fewer than
  ``prompts_per_step`` groups are kept, one more round of ``gen_batch`` goes out;
- when enough are kept, the first ``prompts_per_step`` of them in data order form the batch
  (verl's own choice among groups of one step is arbitrary) and the rest are cleared (nothing
  carries over to the next step);
- the :class:`deepmath.sampling.GenerationBudget` counts the prompts: a step may dispatch
  ``max_gen_rounds x gen_batch``; asking for a round beyond that fails the run with a message
  (and the report file the launcher reads).

Only importable where verl is installed (the train env, ``.venv-verl``).
"""

from __future__ import annotations

import time
from typing import Any

from verl.trainer.ppo.v1.replay_buffer import ReplayBuffer, _accumulate_eviction_metrics

from deepmath.sampling import GenerationBudget

KWARGS = ("filter_metric", "prompts_per_step", "gen_batch", "max_gen_rounds", "report")
ROUNDS_METRIC = "training/filter_groups/gen_rounds"
SURPLUS_METRIC = "training/filter_groups/discarded_surplus_samples"


class BudgetedReplayBuffer(ReplayBuffer):
    """ReplayBuffer (sync mode) that fills each training step in whole generation rounds."""

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
            # verl's own streaming loop (used here for validation only) would cap prompts in
            # flight at max_inflight_gen_batches x train_batch_size: 1 x gen_batch
            train_batch_size=1,
            gen_batch_size=1,  # what verl itself uses with filtering: refills of any size
            max_inflight_gen_batches=self.budget.gen_batch,
            **kwargs,
        )

    def _inflight(self, partition_id: str) -> int:
        return len(self.pending_keys[partition_id]) + len(self.running_keys[partition_id])

    def _refill(self, num_prompts: int) -> int:
        """Send up to ``num_prompts`` prompts to generation, as the budget allows (at most
        ``gen_batch`` in flight); a step whose budget is spent fails the run instead."""
        granted = self.budget.admit(int(num_prompts), self._inflight(self._partition))
        if granted <= 0:
            return 0
        return self._verl_refill(granted)

    def _select_prompt_uids(
        self, partition_id: str, sampleable_keys: set[str], batch_size: int
    ) -> tuple[list[str], dict[str, dict], dict[str, int]]:
        """The first ``batch_size`` groups in the order their prompts were submitted (the
        data order), as the fork cuts its kept groups; verl orders by step only.

        verl's metadata sync fills ``prompt_global_steps`` in TransferQueue's listing order,
        which is the order the prompts were put in."""
        if partition_id == "val":
            return super()._select_prompt_uids(partition_id, sampleable_keys, batch_size)
        steps = dict(self.prompt_global_steps[partition_id])
        position = {uid: i for i, uid in enumerate(steps)}
        ordered = sorted(
            sampleable_keys, key=lambda uid: (steps.get(uid, 0), position.get(uid, len(position)))
        )
        return ordered[:batch_size], dict(self.partitions[partition_id]), steps

    def sample(self, global_steps: int, partition_id: str, batch_size: int) -> Any:
        """A training step's batch, filled in rounds; validation is verl's own sampling."""
        if partition_id == "val":
            return super().sample(global_steps, partition_id, batch_size)
        self._partition = partition_id
        self.budget.start_step(global_steps)
        return self._sample_in_rounds(global_steps, partition_id, batch_size)

    def _sample_in_rounds(self, global_steps: int, partition_id: str, batch_size: int) -> Any:
        metrics: dict = {}
        self._sync_metadata_from_transfer_queue()
        # the rest of round 1 (the trainer's prepare_step submitted prompts_per_step of it)
        self._refill(self.budget.gen_batch - self.budget.prompts_per_step)
        rounds = 1
        last_debug_time = time.time()
        while True:
            self._sync_metadata_from_transfer_queue()
            reasons = self._terminal_eviction_reasons(global_steps, partition_id)
            evicted, stale, _dapo, evicted_metrics = self._evict_terminal_groups(
                global_steps, partition_id, reasons
            )
            if evicted:
                _accumulate_eviction_metrics(metrics, evicted_metrics, stale)
            kept = self._sampleable_terminal_keys(partition_id, reasons)
            if self._inflight(partition_id):
                last_debug_time = self._wait_for_next_poll(partition_id, last_debug_time)
                continue
            if len(kept) >= batch_size:
                break
            self._refill(self.budget.gen_batch)  # fails once max_gen_rounds rounds are spent
            rounds += 1
        selected, snapshot, _steps = self._select_prompt_uids(partition_id, kept, batch_size)
        surplus = kept - set(selected)
        if surplus:
            self._clear_groups(partition_id, surplus)
            metrics[SURPLUS_METRIC] = metrics.get(SURPLUS_METRIC, 0) + len(surplus)
        metrics[ROUNDS_METRIC] = rounds
        chosen = set(selected)
        if not any(key.split("_")[0] in chosen for key in snapshot):
            raise RuntimeError(
                "dynamic sampling selected groups with no trajectories (every rollout of the "
                "step failed); see the rollout workers' logs"
            )
        return self._materialize_batch(partition_id, selected, snapshot), metrics
