"""Runs inside .venv-verl: verl 0.9's real ReplayBuffer code with our BudgetedReplayBuffer,
on a scripted TransferQueue, step by step.

``python tests/verl/sampler_rounds.py REQUEST.json RESULT.json``
    REQUEST: ``{name: {"prompts_per_step", "gen_batch", "max_gen_rounds", "n", "kept",
    "steps"}}``; ``kept`` is the submission indices (0-based, over the whole run) whose group
    has a varying ``acc`` (kept); every other group's ``acc`` is constant (dropped). Each
    step, the trainer's prepare_step submits ``prompts_per_step`` prompts, then ``sample``
    runs. RESULT: per case, every submission (step, count, prompts in flight at that moment),
    every batch (the submission indices it holds), the metrics, and the error if the run
    failed.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path


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


def run_case(case: dict) -> dict:
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


def main(request: Path, result: Path) -> None:
    import logging

    logging.disable(logging.CRITICAL)
    cases = json.loads(request.read_text())
    result.write_text(json.dumps({name: run_case(case) for name, case in cases.items()}))


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
