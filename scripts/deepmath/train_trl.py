"""train_grpo with ``backend: trl``: TRL's GRPOTrainer on the RL parquet, one GPU or the CPU.

The same data (``prepare_rl_data``'s verl-format parquet) and the same reward function
(:func:`deepmath.reward.trl_reward`) as the verl backend; the shared recipe keys map onto TRL's
``GRPOConfig`` (see :func:`grpo_kwargs`). What TRL 1.16 cannot do is said in the log, not
silently dropped: no dynamic sampling (``filter_groups``), no overlong soft penalty, no
``max_prompt_length`` (prompts longer than it are filtered out here, as verl's
``filter_overlong_prompts`` does), one KL estimator (k3, verl's ``low_var_kl``).

Checkpoints go to ``--work-dir`` (outside the rule's outputs, so Snakemake keeps them when a job
fails) and a rerun resumes from the newest complete one. The HF folder (weights, tokenizer,
chat template) and ``train_summary.json`` are written to ``--out`` only once the trainer's
global step equals the configured ``steps``.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import re
import shutil
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from deepmath import dtypes
from deepmath.backends import (
    Backend,
    Job,
    add_reward_arguments,
    check_reward,
    cli,
    execute,
    record,
    require_last_step,
    reward_env,
    trainer_kwargs,
)
from deepmath.io import DeepmathError, atomic_path, run_cli, write_json
from deepmath.templates import read_chat_template

log = logging.getLogger("deepmath.train_trl")

SUMMARY_FILE = "train_summary.json"
REWARD_METRIC = "rewards/trl_reward/mean"
RECIPE_REQUIRED = (
    "lr",
    "prompts_per_step",
    "rollout_n",
    "temperature",
    "max_prompt_length",
    "max_response_length",
    "clip_low",
    "clip_high",
)
RECIPE_OPTIONAL: dict[str, Any] = {
    "warmup_steps": 0,
    "weight_decay": 0.0,
    "kl": None,
    "save_every": None,
}
# verl-only recipe keys: TRL 1.16 has no equivalent, so they are named in the log and skipped.
NOT_IN_TRL = {
    "filter_groups": "dynamic sampling (drop groups with equal rewards) is verl-only",
    "overlong_buffer": "the DAPO overlong soft penalty is verl-only",
    "mini_batch": "TRL takes one optimizer step per generation batch here",
    "ppo_mini_batch": "TRL takes one optimizer step per generation batch here",
    "entropy_coef": "kept at TRL's default (0.0), as in the recipe",
}
KL_TYPES = ("low_var_kl", "k3")  # TRL's per-token KL is the k3 estimator
CHECKPOINT_RE = re.compile(r"^checkpoint-(\d+)$")
# files of a checkpoint that are training state, not part of the model folder
TRAINING_STATE = ("optimizer.pt", "scheduler.pt", "rng_state*.pth", "trainer_state.json")


# --------------------------------------------------------------------------- config mapping


def _recipe(spec: Mapping[str, Any]) -> dict[str, Any]:
    recipe = spec.get("recipe")
    if not isinstance(recipe, Mapping):
        raise DeepmathError("train spec: 'recipe' must be a mapping of the GRPO recipe keys")
    missing = [k for k in RECIPE_REQUIRED if recipe.get(k) is None]
    if missing:
        raise DeepmathError(f"train spec: recipe is missing {', '.join(missing)}")
    return {**RECIPE_OPTIONAL, **recipe}


def _steps(spec: Mapping[str, Any]) -> int:
    steps = spec.get("steps")
    if not isinstance(steps, int) or isinstance(steps, bool) or steps < 1:
        raise DeepmathError(f"train spec: steps must be an integer >= 1, got {steps!r}")
    return steps


def kl_beta(kl: Any) -> float:
    """``{type, coef}`` -> GRPOConfig.beta; null (or coef 0) means no KL and no reference model."""
    if kl is None:
        return 0.0
    if not isinstance(kl, Mapping) or "coef" not in kl:
        raise DeepmathError(f"train spec: recipe.kl must be null or {{type, coef}}, got {kl!r}")
    kind = kl.get("type", "low_var_kl")
    if kind not in KL_TYPES:
        raise DeepmathError(
            f"train spec: recipe.kl.type {kind!r} has no TRL equivalent; "
            f"allowed: {', '.join(KL_TYPES)}"
        )
    return float(kl["coef"])


def grpo_kwargs(
    spec: Mapping[str, Any],
    work_dir: str,
    *,
    use_cpu: bool,
    dtype: str = "float32",
    world_size: int = 1,
) -> dict[str, Any]:
    """GRPOConfig keyword arguments from the run spec (recipe keys, then raw ``trl`` overrides).

    ``dtype`` is the resolved compute dtype: bfloat16 / float16 train with mixed precision
    (autocast) over float32 weights, TRL's default load dtype, so that updates of lr 1e-6 are
    not rounded away as they would be in bfloat16 weights.

    One optimizer step = ``prompts_per_step`` prompts x ``rollout_n`` completions, generated
    once: TRL counts its batch sizes in completions, so per-device batch x accumulation x
    processes = prompts_per_step x rollout_n (the per-device batch can be lowered with
    ``trl.per_device_train_batch_size``; accumulation then makes up the rest).
    """
    recipe = _recipe(spec)
    steps = _steps(spec)
    overrides = dict(spec.get("trl") or {})
    from trl import GRPOConfig

    fields = {f.name for f in dataclasses.fields(GRPOConfig)}
    unknown = sorted(k for k in overrides if k not in fields)
    if unknown:
        raise DeepmathError(f"train spec: trl.{unknown[0]} is not a GRPOConfig field (TRL 1.16)")
    for key, why in NOT_IN_TRL.items():
        if recipe.get(key) not in (None, False, 0, {}):
            log.warning("recipe.%s is not applied with backend trl: %s", key, why)
    known = {*RECIPE_REQUIRED, *RECIPE_OPTIONAL, *NOT_IN_TRL}
    for key in sorted(k for k in recipe if k not in known):
        log.warning("recipe.%s is not used by backend trl (verl-only or unknown)", key)

    n = int(recipe["rollout_n"])
    total = int(recipe["prompts_per_step"]) * n
    per_device = int(overrides.pop("per_device_train_batch_size", 0) or total // world_size)
    if per_device < 1 or total % (per_device * world_size):
        raise DeepmathError(
            f"train spec: prompts_per_step x rollout_n = {total} completions per step is not a "
            f"multiple of per_device_train_batch_size ({per_device}) x processes ({world_size})"
        )
    save_every = recipe["save_every"] or steps
    kwargs: dict[str, Any] = {
        "output_dir": work_dir,
        "max_steps": steps,
        "learning_rate": float(recipe["lr"]),
        "lr_scheduler_type": "constant_with_warmup",
        # the fork's schedule, lr x min(1, s / max(1, W)) from s = 0: the first update runs at
        # lr x 0 even for W = 0; transformers' constant_with_warmup gives s / W below W, so
        # W = max(1, W) is the fork's exactly (as verl_recipe.verl_warmup_steps for verl)
        "warmup_steps": max(1, int(recipe["warmup_steps"])),
        "weight_decay": float(recipe["weight_decay"]),
        "num_generations": n,
        "per_device_train_batch_size": per_device,
        "gradient_accumulation_steps": total // (per_device * world_size),
        "temperature": float(recipe["temperature"]),
        "max_completion_length": int(recipe["max_response_length"]),
        "epsilon": float(recipe["clip_low"]),
        "epsilon_high": float(recipe["clip_high"]),
        "beta": kl_beta(recipe["kl"]),
        "loss_type": "dapo",  # token-level: sum over active tokens of the batch (verl token-mean)
        "scale_rewards": "group",  # GRPO advantage: (r - group mean) / group std, as verl's grpo
        "num_iterations": 1,  # ppo_epochs 1
        **trainer_kwargs(spec, save_every=int(save_every), use_cpu=use_cpu, dtype=dtype),
        "logging_strategy": "steps",
        "fp16": dtype == "float16",
        "disable_tqdm": False,
    }
    kwargs.update(overrides)
    return kwargs


def build_config(spec: Mapping[str, Any], work_dir: str) -> Any:
    import torch
    from trl import GRPOConfig

    cuda = torch.cuda.is_available()
    if spec.get("dtype", dtypes.AUTO) not in dtypes.CHOICES:
        raise DeepmathError(
            f"train spec: dtype = {spec['dtype']!r}; allowed: {', '.join(dtypes.CHOICES)}"
        )
    dtype = dtypes.resolve(spec.get("dtype"), "cuda" if cuda else "cpu", what="TRL training")
    world = int(os.environ.get("WORLD_SIZE", "1"))
    kwargs = grpo_kwargs(spec, work_dir, use_cpu=not cuda, dtype=dtype, world_size=world)
    try:
        return GRPOConfig(**kwargs)
    except (TypeError, ValueError) as err:
        raise DeepmathError(f"GRPOConfig rejected the recipe: {err}") from err


# --------------------------------------------------------------------------- data


def load_prompts(
    path: str, tokenizer: Any, max_prompt_length: int, *, allow_empty: bool = False
) -> tuple[Any, int]:
    """The RL parquet as a TRL conversational dataset: prompt, ground_truth, reward_gate.

    ``prompt`` stays the chat-message list (TRL applies the chat template, like verl);
    ``ground_truth`` and ``reward_gate`` are extra columns TRL passes to the reward function.
    Prompts longer than ``max_prompt_length`` tokens (with the generation prompt) are dropped;
    returns the dataset (None when empty and ``allow_empty``) and how many were dropped.
    """
    import pyarrow.parquet as pq
    from datasets import Dataset

    table = pq.read_table(path)
    missing = {"prompt", "reward_model"} - set(table.column_names)
    if missing:
        raise DeepmathError(f"{path}: not an RL parquet (missing {', '.join(sorted(missing))})")
    rows = table.to_pylist()
    records = []
    too_long = 0
    for row in rows:
        prompt = [{"role": m["role"], "content": m["content"]} for m in row["prompt"]]
        ids = tokenizer.apply_chat_template(prompt, add_generation_prompt=True, tokenize=True)
        if isinstance(ids, Mapping):
            ids = ids["input_ids"]
        if len(ids) > max_prompt_length:
            too_long += 1
            continue
        extra = row.get("extra_info") or {}
        records.append(
            {
                "prompt": prompt,
                "ground_truth": str(row["reward_model"]["ground_truth"]),
                "reward_gate": extra.get("reward_gate") or "think",
            }
        )
    if too_long:
        log.warning(
            "%s: dropped %d prompt(s) longer than %d tokens", path, too_long, max_prompt_length
        )
    if not records:
        if allow_empty:
            return None, too_long
        raise DeepmathError(f"{path}: no prompts left (of {len(rows)}) within max_prompt_length")
    return Dataset.from_list(records), too_long


# --------------------------------------------------------------------------- checkpoints


def last_checkpoint(work_dir: str | os.PathLike[str]) -> Path | None:
    """Newest ``checkpoint-N`` that finished saving (its trainer_state.json is written last)."""
    root = Path(work_dir)
    if not root.is_dir():
        return None
    done = [
        (int(m.group(1)), p)
        for p in root.iterdir()
        if (m := CHECKPOINT_RE.match(p.name)) and (p / "trainer_state.json").is_file()
    ]
    return max(done)[1] if done else None


def checkpoint_step(path: Path) -> int:
    return int(json.loads((path / "trainer_state.json").read_text())["global_step"])


def reward_per_step(log_history: Sequence[Mapping[str, Any]]) -> dict[int, float]:
    """Mean reward of each logged training step (the trainer's ``reward`` metric)."""
    out = {}
    for entry in log_history:
        if "reward" in entry and "step" in entry:
            out[int(entry["step"])] = float(entry["reward"])
    return out


# --------------------------------------------------------------------------- training


class TrlBackend(Backend):
    """What the TRL backends share: train, resume, or export a final checkpoint; the HF folder.

    ``plan`` holds ``resume`` (the newest complete checkpoint or None), ``done`` (its step),
    ``tokenizer``; ``train_or_export`` adds ``trainer``, ``global_step``, ``history`` and
    ``runtime``."""

    def train_or_export(
        self, job: Job, plan: dict[str, Any], steps: int, make_trainer: Any
    ) -> int | None:
        resume, done = plan["resume"], plan["done"]
        if resume is not None and done == steps:
            # transformers' Trainer resumed at max_steps still runs one more step, so don't
            # resume: the last checkpoint already is the trained model (the earlier run died
            # after it).
            log.info("%s is at the final step %d; exporting it without training", resume, steps)
            state = json.loads((resume / "trainer_state.json").read_text())
            plan.update(trainer=None, global_step=state["global_step"], runtime=0.0)
            plan["history"] = state["log_history"]
            return None
        if resume is not None:
            log.info("resuming from %s (step %d of %d)", resume, done, steps)
        else:
            log.info("training from %s for %d step(s)", job.model_dir, steps)
        trainer = make_trainer()
        result = trainer.train(resume_from_checkpoint=str(resume) if resume else None)
        plan.update(trainer=trainer, global_step=trainer.state.global_step)
        plan.update(history=trainer.state.log_history)
        plan["runtime"] = float(result.metrics.get("train_runtime", 0.0))
        return 0

    def write(self, job: Job, plan: dict[str, Any], summary: dict[str, Any]) -> None:
        save_folder(
            str(job.out),
            summary,
            trainer=plan["trainer"],
            tokenizer=plan["tokenizer"],
            checkpoint=plan["resume"],
        )
        log.info(
            "%d of %d step(s) trained in this run; HF folder at %s",
            summary["steps_this_run"],
            summary["steps"],
            job.out,
        )


class TrlGRPO(TrlBackend):
    """GRPO with TRL's GRPOTrainer on the RL parquet, one GPU or the CPU."""

    backend = "trl"
    description = __doc__.splitlines()[0]

    def add_arguments(self, parser: Any) -> None:
        add_reward_arguments(parser)

    def prepare(self, job: Job) -> dict[str, Any]:
        from transformers import AutoTokenizer

        steps = _steps(job.spec)
        recipe = _recipe(job.spec)
        job.work_dir.mkdir(parents=True, exist_ok=True)
        args = build_config(job.spec, str(job.work_dir))
        resume = last_checkpoint(job.work_dir)
        done = checkpoint_step(resume) if resume is not None else 0
        if done > steps:
            raise DeepmathError(
                f"{resume} is at step {done}, past the configured steps={steps}; "
                f"remove {job.work_dir} to train from scratch"
            )
        tokenizer = AutoTokenizer.from_pretrained(
            job.model_dir, padding_side="left", truncation_side="left"
        )
        if job.spec.get("chat_template"):
            # the run's own prompt format (e.g. ORZ); saved with the tokenizer into the output
            tokenizer.chat_template = read_chat_template(job.spec["chat_template"])
        if not tokenizer.chat_template:
            raise DeepmathError(f"{job.model_dir}: the tokenizer has no chat template")
        max_prompt = int(recipe["max_prompt_length"])
        train_ds, too_long = load_prompts(str(job.train), tokenizer, max_prompt)
        val_ds, _ = load_prompts(str(job.val), tokenizer, max_prompt, allow_empty=True)
        per_step = int(recipe["prompts_per_step"])
        if len(train_ds) < per_step:
            raise DeepmathError(
                f"{job.train}: {len(train_ds)} usable prompt(s), "
                f"fewer than prompts_per_step={per_step}"
            )
        return {
            "started": time.time(),
            "args": args,
            "resume": resume,
            "done": done,
            "tokenizer": tokenizer,
            "train_ds": train_ds,
            "val_ds": val_ds,
            "too_long": too_long,
            "command": ["GRPOTrainer", str(job.model_dir)],
            "reward_env": reward_env(job),
        }

    def run(self, job: Job, plan: dict[str, Any]) -> int | None:
        os.environ.update(plan["reward_env"])  # the reward's scorer and interpreter
        plan["reward"] = check_reward(job, plan["reward_env"])
        return self.train_or_export(
            job,
            plan,
            _steps(job.spec),
            lambda: _trainer(
                str(job.model_dir),
                plan["args"],
                plan["train_ds"],
                plan["val_ds"],
                plan["tokenizer"],
            ),
        )

    def finish(self, job: Job, plan: dict[str, Any], code: int | None) -> dict[str, Any]:
        steps, done = _steps(job.spec), plan["done"]
        global_step = require_last_step(
            what="TRL GRPOTrainer",
            step=plan["global_step"],
            steps=steps,
            code=code,
            where=job.work_dir,
            resume="the newest checkpoint-N",
        )
        rewards = reward_per_step(plan["history"])
        missing = [s for s in range(1, steps + 1) if s not in rewards]
        if missing:
            raise DeepmathError(f"no reward was logged for step(s) {missing}: the reward never ran")
        resume = plan["resume"]
        return record(
            "trl",
            job.spec,
            step=global_step,
            paths={"base_model": str(job.model_dir)},
            global_step=global_step,
            steps_this_run=global_step - done,
            resumed_from=str(resume) if resume else None,
            resumed_at_step=done,
            reward_mean_per_step={str(k): v for k, v in sorted(rewards.items())},
            reward_function="deepmath.reward.trl_reward",
            reward=plan.get("reward") or check_reward(job, plan["reward_env"]),
            train_prompts=len(plan["train_ds"]),
            train_prompts_too_long=plan["too_long"],
            val_prompts=len(plan["val_ds"]) if plan["val_ds"] is not None else 0,
            train_runtime_s=plan["runtime"],
            wall_s=round(time.time() - plan["started"], 1),
            grpo_config=_summary_config(plan["args"]),
            versions=_versions(),
            log_history=plan["history"],
        )


def train(
    spec: Mapping[str, Any], model_dir: str, train_path: str, val_path: str, work_dir: str, out: str
) -> dict[str, Any]:
    """Run (or resume) GRPO to ``steps`` and write the HF folder + summary to ``out``."""
    job = Job(
        spec=dict(spec),
        model_dir=Path(model_dir).resolve(),
        train=Path(train_path).resolve(),
        val=Path(val_path).resolve(),
        work_dir=Path(work_dir).resolve(),
        out=Path(out).resolve(),
        name=Path(work_dir).name,
    )
    backend = TrlGRPO()
    backend.check_spec(job.spec)
    return execute(backend, job)


def _trainer(model_dir: str, args: Any, train_ds: Any, val_ds: Any, tokenizer: Any) -> Any:
    from trl import GRPOTrainer

    from deepmath.reward import trl_reward

    return GRPOTrainer(
        model=model_dir,
        reward_funcs=trl_reward,
        args=args,
        train_dataset=train_ds,
        eval_dataset=val_ds,
        processing_class=tokenizer,
    )


def _summary_config(args: Any) -> dict[str, Any]:
    keys = (
        "learning_rate",
        "lr_scheduler_type",
        "warmup_steps",
        "weight_decay",
        "num_generations",
        "per_device_train_batch_size",
        "gradient_accumulation_steps",
        "generation_batch_size",
        "temperature",
        "max_completion_length",
        "epsilon",
        "epsilon_high",
        "beta",
        "loss_type",
        "scale_rewards",
        "max_steps",
        "save_steps",
        "seed",
        "use_cpu",
        "bf16",
        "fp16",
        "gradient_checkpointing",
    )
    return {k: getattr(args, k) for k in keys}


def _versions() -> dict[str, str]:
    import importlib.metadata

    out = {}
    for name in ("trl", "transformers", "torch", "accelerate", "datasets"):
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return out


def save_folder(
    out: str,
    summary: Mapping[str, Any],
    *,
    trainer: Any = None,
    tokenizer: Any = None,
    checkpoint: Path | None = None,
) -> None:
    """Weights, tokenizer (with chat template) and summary, renamed onto ``out`` when complete.

    From the trainer when this run trained; else the model files of the final checkpoint.
    """
    final = Path(out)
    with atomic_path(final) as tmp:
        if trainer is not None:
            trainer.save_model(str(tmp))
            tokenizer.save_pretrained(str(tmp))
        else:
            assert checkpoint is not None
            shutil.copytree(checkpoint, tmp, ignore=shutil.ignore_patterns(*TRAINING_STATE))
            if tokenizer is not None:  # this run's template, whatever the checkpoint holds
                tokenizer.save_pretrained(str(tmp))
        write_json(summary, tmp / SUMMARY_FILE)
        if final.exists():  # a rerun outside Snakemake: replace the old folder whole
            shutil.rmtree(final)


def main(argv: Sequence[str] | None = None) -> None:
    cli(TrlGRPO(), argv, prog="python -m deepmath.train_trl")


if __name__ == "__main__":
    run_cli(main)
