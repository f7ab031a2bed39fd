"""SFT with TRL's SFTTrainer on one GPU or the CPU (the demo's SFT baseline).

``python -m deepmath.train_sft_trl --spec JSON --model-dir DIR --train P --val P --work-dir DIR
--out HF_DIR`` (the shared backend CLI, deepmath.backends)

The conversations of prepare_sft_data become TRL prompt / completion pairs (everything before
the assistant turn is the prompt), so the loss is on the solution only, as with verl's SFT
trainer. The recipe is the same mapping (deepmath.sft_recipe.trl_kwargs): global batch =
micro-batch x accumulation, the schedule, warm-up and the cut-off. Checkpoints go to
``--work-dir`` and a rerun resumes from the newest complete one; the HF folder (weights,
tokenizer and its chat template) and ``train_summary.json`` are written to ``--out`` only when
the trainer's global step equals the step count of ``epochs`` passes.
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any

from deepmath import dtypes, sft_recipe
from deepmath.backends import Job, cli, record, require_last_step
from deepmath.io import DeepmathError, run_cli
from deepmath.templates import read_chat_template
from deepmath.train_trl import TrlBackend, _versions, checkpoint_step, last_checkpoint

log = logging.getLogger("deepmath.train_sft_trl")


def prompt_completion(path: str) -> Any:
    """prepare_sft_data's ``messages`` as a TRL conversational prompt / completion dataset."""
    import pyarrow.parquet as pq
    from datasets import Dataset

    table = pq.read_table(path)
    if "messages" not in table.column_names:
        raise DeepmathError(f"{path}: not SFT data (no messages column)")
    rows = []
    for row in table.to_pylist():
        messages = [{"role": m["role"], "content": m["content"]} for m in row["messages"]]
        if not messages or messages[-1]["role"] != "assistant":
            raise DeepmathError(f"{path}: a conversation does not end with the assistant turn")
        rows.append({"prompt": messages[:-1], "completion": messages[-1:]})
    if not rows:
        raise DeepmathError(f"{path}: no conversations")
    return Dataset.from_list(rows)


class TrlSFT(TrlBackend):
    """SFT with TRL's SFTTrainer (one GPU or the CPU)."""

    backend = "sft"
    trainer = "trl"
    description = __doc__.splitlines()[0]

    def prepare(self, job: Job) -> dict[str, Any]:
        import torch
        from transformers import AutoTokenizer
        from trl import SFTConfig

        r = sft_recipe.recipe(job.spec)
        train_ds = prompt_completion(str(job.train))
        steps = sft_recipe.total_steps(len(train_ds), r)
        job.spec = {**job.spec, "steps": steps}
        cuda = torch.cuda.is_available()
        dtype = dtypes.resolve(job.spec.get("dtype"), "cuda" if cuda else "cpu", what="TRL SFT")
        world = int(os.environ.get("WORLD_SIZE", "1"))
        job.work_dir.mkdir(parents=True, exist_ok=True)
        kwargs = sft_recipe.trl_kwargs(
            job.spec, str(job.work_dir), use_cpu=not cuda, dtype=dtype, steps=steps, world=world
        )
        try:
            args = SFTConfig(**kwargs)
        except (TypeError, ValueError) as err:
            raise DeepmathError(f"SFTConfig rejected the recipe: {err}") from err
        tokenizer = AutoTokenizer.from_pretrained(job.model_dir)
        if job.spec.get("chat_template"):
            tokenizer.chat_template = read_chat_template(job.spec["chat_template"])
        if not tokenizer.chat_template:
            raise DeepmathError(f"{job.model_dir}: the tokenizer has no chat template")
        resume = last_checkpoint(job.work_dir)
        done = checkpoint_step(resume) if resume is not None else 0
        if done > steps:
            raise DeepmathError(
                f"{resume} is at step {done}, past this run's {steps} steps; "
                f"remove {job.work_dir} to train from scratch"
            )
        return {
            "started": time.time(),
            "args": args,
            "kwargs": kwargs,
            "dtype": dtype,
            "steps": steps,
            "train_ds": train_ds,
            "tokenizer": tokenizer,
            "resume": resume,
            "done": done,
            "command": ["SFTTrainer", str(job.model_dir)],
        }

    def run(self, job: Job, plan: dict[str, Any]) -> int | None:
        from trl import SFTTrainer

        log.info("SFT on %d conversation(s)", len(plan["train_ds"]))
        return self.train_or_export(
            job,
            plan,
            plan["steps"],
            lambda: SFTTrainer(
                model=str(job.model_dir),
                args=plan["args"],
                train_dataset=plan["train_ds"],
                processing_class=plan["tokenizer"],
            ),
        )

    def finish(self, job: Job, plan: dict[str, Any], code: int | None) -> dict[str, Any]:
        step = require_last_step(
            what="TRL SFTTrainer",
            step=plan["global_step"],
            steps=plan["steps"],
            code=code,
            where=job.work_dir,
            resume="the newest checkpoint-N",
        )
        losses = [e["loss"] for e in plan["history"] if "loss" in e]
        if not losses:
            raise DeepmathError("no training loss was logged: nothing was trained")
        return record(
            "sft",
            job.spec,
            step=step,
            paths={"base_model": str(job.model_dir), "train": str(job.train)},
            trainer="trl",
            train_conversations=len(plan["train_ds"]),
            steps_this_run=step - plan["done"],
            resumed_from=str(plan["resume"]) if plan["resume"] else None,
            loss_first=losses[0],
            loss_last=losses[-1],
            dtype=plan["dtype"],
            sft_config={k: v for k, v in plan["kwargs"].items() if k != "output_dir"},
            train_runtime_s=plan["runtime"],
            wall_s=round(time.time() - plan["started"], 1),
            versions=_versions(),
            log_history=plan["history"],
        )


def main(argv: list[str] | None = None) -> None:
    cli(TrlSFT(), argv, prog="python -m deepmath.train_sft_trl")


if __name__ == "__main__":
    run_cli(main)
