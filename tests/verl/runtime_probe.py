"""Runs inside .venv-verl: what verl 0.9's own runtime code does with our sampler and config.

``python tests/verl/runtime_probe.py MODE REQUEST.json RESULT.json``, REQUEST ``{name: case}``:

``rounds``
    case ``{"prompts_per_step", "gen_batch", "max_gen_rounds", "n", "kept", "steps"}``: verl's
    real ReplayBuffer code with our BudgetedReplayBuffer on a scripted TransferQueue, step by
    step. ``kept`` is the submission indices (0-based, over the whole run) whose group has a
    varying ``acc``; every other group's ``acc`` is constant. Each step the trainer's
    prepare_step submits ``prompts_per_step`` prompts, then ``sample`` runs. Result: every
    submission (step, count, prompts in flight then), every batch (its submission indices), the
    metrics, and the error if the run failed.
``lr``
    case ``{"overrides", "updates"}``: compose verl's ``ppo_trainer`` config as ``main_ppo``
    does, set the optimizer's horizon as the V1 trainer does (``total_training_steps``), build
    the actor's optimizer and LR scheduler with verl's own FSDP engine code
    (``_build_optimizer``, ``_build_lr_scheduler``) on a small CPU module and run the updates
    as training does (one optimizer step, then one scheduler step, per training step). Result:
    the lr of each update, whether the weights moved, the optimizer's lr and weight decay.
``data-order``
    case ``{"overrides", "rows", "epochs"}``: the train sampler verl builds from the composed
    config (``create_rl_sampler``) and the fork's (torch's RandomSampler with a generator
    seeded 1), each iterated for some epochs over ``rows`` rows. Result: both orders.
"""

from __future__ import annotations

import json
import sys
import tempfile
import warnings
from pathlib import Path

warnings.filterwarnings("ignore")


class ScriptedQueue:
    """TransferQueue's kv_list / kv_clear / kv_batch_get over a dict: a prompt becomes
    ``running`` on the poll after its submission and ``finished`` (with its n trajectories)
    on the next, so a round takes two polls and the sampler can look in between."""

    def __init__(self, kept: set[int], n: int) -> None:
        self.kept, self.n = kept, n
        self.items: dict[str, dict] = {}
        self.extra: dict[str, dict] = {}
        self.index: dict[str, int] = {}
        self.submits: list[dict] = []

    def submit(self, count: int, step: int) -> int:
        inflight = sum(
            1
            for t in self.items.values()
            if t.get("is_prompt") and t["status"] in ("pending", "running")
        )
        self.submits.append({"step": step, "count": count, "inflight": inflight})
        for _ in range(count):
            uid = f"p{len(self.index):05d}"
            self.index[uid] = len(self.index)
            self.items[uid] = {"is_prompt": True, "status": "pending", "global_steps": step}
        return count

    def kv_list(self, partition_id=None):
        for uid, tag in list(self.items.items()):
            if not tag.get("is_prompt"):
                continue
            if tag["status"] == "running":
                tag["status"] = "finished"
                varying = self.index[uid] in self.kept
                for s in range(self.n):
                    key = f"{uid}_{s}_0"
                    self.items[key] = {"status": "finished"}
                    acc = float(s % 2) if varying else 1.0
                    self.extra[key] = {"reward_extra_info": {"acc": acc}}
            elif tag["status"] == "pending":
                tag["status"] = "running"
        return {"train": dict(self.items)}

    def kv_clear(self, partition_id, keys):
        for key in keys:
            self.items.pop(key, None)

    def kv_batch_get(self, keys, partition_id, select_fields):
        return {"extra_fields": [self.extra[k] for k in keys]}


def rounds_case(case: dict) -> dict:
    import verl.trainer.ppo.v1.replay_buffer as module

    from deepmath.verl_sampler import BudgetedReplayBuffer

    queue = ScriptedQueue(set(case["kept"]), case["n"])
    module.tq = queue
    report = Path(tempfile.mkdtemp()) / "dynamic_sampling.failed.json"
    step = [0]
    buffer = BudgetedReplayBuffer(
        trainer_mode="sync",
        trainer_config={},
        max_off_policy_threshold=None,
        max_off_policy_strategy="drop",
        sampler_kwargs={
            "filter_metric": "acc",
            "prompts_per_step": case["prompts_per_step"],
            "gen_batch": case["gen_batch"],
            "max_gen_rounds": case["max_gen_rounds"],
            "report": str(report),
        },
        refill_fn=lambda k: queue.submit(k, step[0]),
        poll_interval=0.0,
    )
    out: dict = {"batches": [], "metrics": [], "error": None}
    for s in range(1, case["steps"] + 1):
        step[0] = s
        queue.submit(case["prompts_per_step"], s)  # the trainer's prepare_step
        try:
            batch, metrics = buffer.sample(s, "train", case["prompts_per_step"])
        except Exception as err:
            out["error"] = {"type": type(err).__name__, "message": str(err)}
            out["report"] = json.loads(report.read_text()) if report.is_file() else None
            break
        uids = sorted({key.split("_")[0] for key in batch.keys})
        out["batches"].append(sorted(queue.index[u] for u in uids))
        out["metrics"].append({k: v for k, v in metrics.items() if not k.startswith("_")})
        queue.kv_clear("train", list(batch.keys))  # the trainer, once the step has trained
        out["left_in_queue"] = sorted(queue.index[u] for u in queue.items if u in queue.index)
    out["submits"] = queue.submits
    return out


def lr_case(case: dict) -> dict:
    import torch
    from omegaconf import open_dict
    from verl.utils.config import omega_conf_to_dataclass
    from verl.workers.engine.fsdp.transformer_impl import FSDPEngine
    from verl_probe import compose

    cfg = compose(case["overrides"])
    optim = cfg.actor_rollout_ref.actor.optim
    with open_dict(cfg):
        # PPOTrainer: total_training_steps x parameter_sync_step (1 in sync mode)
        optim.total_training_steps = int(cfg.trainer.total_training_steps)
    engine = object.__new__(FSDPEngine)  # no process group: only its optimizer/scheduler code
    engine.optimizer_config = omega_conf_to_dataclass(optim)
    engine.rank = 0
    module = torch.nn.Linear(4, 1, bias=False)
    optimizer = engine._build_optimizer(module)
    scheduler = engine._build_lr_scheduler(optimizer)
    lrs, moved = [], []
    for _ in range(case["updates"]):
        lrs.append(optimizer.param_groups[0]["lr"])
        before = module.weight.detach().clone()
        module.weight.grad = torch.ones_like(before)
        optimizer.step()
        optimizer.zero_grad()
        moved.append(bool((module.weight.detach() != before).any()))
        scheduler.step()  # once per training step, after its last mini-batch (engine_workers)
    group = optimizer.param_groups[0]
    return {
        "lrs": lrs,
        "moved": moved,
        "optimizer": type(optimizer).__name__,
        "initial_lr": group["initial_lr"],
        "weight_decay": group["weight_decay"],
    }


def data_order_case(case: dict) -> dict:
    import torch
    from torch.utils.data import RandomSampler
    from verl.trainer.ppo.utils import create_rl_sampler
    from verl_probe import compose

    cfg = compose(case["overrides"])
    rows = list(range(case["rows"]))
    ours = create_rl_sampler(cfg.data, rows)
    generator = torch.Generator()
    generator.manual_seed(1)  # the fork: data.get("seed", 1)
    fork = RandomSampler(data_source=rows, generator=generator)
    epochs = case["epochs"]
    return {
        "seed": cfg.data.seed,
        "ours": [list(ours) for _ in range(epochs)],
        "fork": [list(fork) for _ in range(epochs)],
    }


MODES = {"rounds": rounds_case, "lr": lr_case, "data-order": data_order_case}


def main(mode: str, request: Path, result: Path) -> None:
    import logging

    logging.disable(logging.CRITICAL)
    cases = json.loads(request.read_text())
    result.write_text(json.dumps({name: MODES[mode](case) for name, case in cases.items()}))


if __name__ == "__main__":
    main(sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3]))
