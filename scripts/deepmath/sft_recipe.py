"""The SFT recipe (``rl.runs.<name>`` with ``backend: sft``) for verl's SFT trainer and for TRL.

The paper's SFT baselines (appendix B): HF Trainer on Qwen2.5-7B, batch 128, micro-batch 1,
1 epoch, lr 1e-6, cosine schedule, 50 warm-up steps, bf16, gradient checkpointing,
padding-free, cut-off 9,216 tokens, DeepSpeed ZeRO-3. On a cluster the same recipe runs with
verl 0.9's own SFT trainer (``python -m verl.trainer.sft_trainer``, hydra config
``sft_trainer_engine``, launched with torchrun over the job's nodes: the same engine and the
same FSDP checkpoints as GRPO, merged by ``merge_checkpoint``); on a CPU with TRL's
SFTTrainer. Pure functions, no verl or TRL import.

Differences from the paper's stack, each a choice of engine rather than of recipe, are in
``DEVIATIONS`` (the README repeats them).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from deepmath.backends import recipe_items, trainer_kwargs
from deepmath.io import DeepmathError
from deepmath.verl_recipe import hydra_value

SFT_MODULE = "verl.trainer.sft_trainer"
CHECKPOINT_SUBDIR = "checkpoints"

REQUIRED = (
    "lr",
    "scheduler",
    "warmup_steps",
    "batch_size",
    "micro_batch_size",
    "epochs",
    "max_length",
    "dtype",
    "gradient_checkpointing",
    "padding_free",
)
OPTIONAL: dict[str, Any] = {
    "weight_decay": 0.0,  # HF Trainer's default (the paper's trainer)
    "grad_clip": 1.0,  # HF Trainer's max_grad_norm default
    "truncation": "right",  # the cut-off keeps the start of a conversation
    "save_every": 500,  # steps; the last step is always saved
    "strategy": "fsdp2",
    "offload": False,
    "ulysses_sp": 1,
}
SCHEDULERS = ("cosine", "constant")
SCHEDULER_NAMES = {"cosine": "cosine", "constant": "constant_with_warmup"}  # transformers' names
DTYPES = ("bfloat16", "float32")
TRUNCATIONS = ("right", "error")


@dataclass(frozen=True)
class Deviation:
    paper: str
    ours: str
    reason: str


DEVIATIONS: dict[str, Deviation] = {
    "trainer": Deviation(
        paper="Hugging Face Trainer (LLaMA-Factory-style options)",
        ours="verl 0.9's SFT trainer on the cluster, TRL's SFTTrainer on a CPU",
        reason="the same engine and checkpoint format as the GRPO runs (one merge, one "
        "launch); both compute the loss on the solution tokens only",
    ),
    "deepspeed_zero3": Deviation(
        paper="DeepSpeed ZeRO-3",
        ours="FSDP full sharding (FSDP2) of parameters, gradients and optimizer state",
        reason="verl's engine is FSDP; ZeRO-3 and full sharding partition the same state",
    ),
}


def recipe(spec: Mapping[str, Any]) -> dict[str, Any]:
    r = recipe_items(spec, REQUIRED, OPTIONAL, "sft")
    for key in ("batch_size", "micro_batch_size", "epochs", "max_length", "save_every"):
        value = r[key]
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise DeepmathError(f"sft recipe: {key} must be an integer >= 1, got {value!r}")
    for key in ("warmup_steps",):
        if isinstance(r[key], bool) or not isinstance(r[key], int) or r[key] < 0:
            raise DeepmathError(f"sft recipe: {key} must be an integer >= 0, got {r[key]!r}")
    for key in ("lr", "weight_decay", "grad_clip"):
        if isinstance(r[key], bool) or not isinstance(r[key], int | float) or r[key] < 0:
            raise DeepmathError(f"sft recipe: {key} must be a number >= 0, got {r[key]!r}")
    for key, allowed in (
        ("scheduler", SCHEDULERS),
        ("dtype", DTYPES),
        ("truncation", TRUNCATIONS),
        ("strategy", ("fsdp", "fsdp2")),
    ):
        if r[key] not in allowed:
            raise DeepmathError(f"sft recipe: {key} {r[key]!r}; allowed: {', '.join(allowed)}")
    for key in ("gradient_checkpointing", "padding_free", "offload"):
        if not isinstance(r[key], bool):
            raise DeepmathError(f"sft recipe: {key} must be true or false")
    return r


def world_size(spec: Mapping[str, Any]) -> int:
    return int(spec.get("nodes", 1)) * max(1, int(spec.get("gpus_per_node", 1)))


def check_shape(spec: Mapping[str, Any], r: Mapping[str, Any]) -> None:
    """The global batch must split into whole micro-batches on every GPU."""
    world = world_size(spec)
    if r["batch_size"] % (r["micro_batch_size"] * world):
        raise DeepmathError(
            f"sft recipe: batch_size ({r['batch_size']}) must be a multiple of micro_batch_size "
            f"({r['micro_batch_size']}) x GPUs ({world})"
        )


def total_steps(rows: int, r: Mapping[str, Any]) -> int:
    """Optimizer steps of ``epochs`` passes over ``rows`` (the last partial batch dropped, as
    verl's SFT sampler and our TRL mapping both do)."""
    steps = (rows // r["batch_size"]) * r["epochs"]
    if steps < 1:
        raise DeepmathError(
            f"sft: {rows} training row(s) do not fill one batch of {r['batch_size']}"
        )
    return steps


def checkpoint_dir(work_dir: str | Path) -> Path:
    return Path(work_dir) / CHECKPOINT_SUBDIR


def verl_items(
    spec: Mapping[str, Any],
    *,
    model_dir: str | Path,
    train: str | Path,
    work_dir: str | Path,
    steps: int,
    name: str = "deepmath-sft",
) -> dict[str, Any]:
    """verl 0.9 ``sft_trainer_engine`` keys and values for one run."""
    r = recipe(spec)
    check_shape(spec, r)
    items: dict[str, Any] = {
        "data.train_files": str(train),
        "data.val_files": None,
        "data.messages_key": "messages",
        "data.train_batch_size": r["batch_size"],
        "data.micro_batch_size_per_gpu": r["micro_batch_size"],
        "data.use_dynamic_bsz": False,
        "data.max_length": r["max_length"],
        "data.truncation": r["truncation"],
        "data.pad_mode": "no_padding" if r["padding_free"] else "right",
        "model.path": str(model_dir),
        "model.enable_gradient_checkpointing": r["gradient_checkpointing"],
        "model.use_remove_padding": r["padding_free"],
        "engine.strategy": r["strategy"],
        "engine.dtype": r["dtype"],
        "engine.param_offload": r["offload"],
        "engine.optimizer_offload": r["offload"],
        "engine.ulysses_sequence_parallel_size": r["ulysses_sp"],
        "optim.lr": float(r["lr"]),
        "optim.lr_scheduler_type": r["scheduler"],
        "optim.lr_warmup_steps": r["warmup_steps"],
        "optim.lr_warmup_steps_ratio": 0.0,
        "optim.min_lr_ratio": 0.0,
        "optim.weight_decay": float(r["weight_decay"]),
        "optim.clip_grad": float(r["grad_clip"]),
        "trainer.total_epochs": r["epochs"],
        "trainer.total_training_steps": steps,
        "trainer.save_freq": r["save_every"],
        "trainer.test_freq": -1,
        "trainer.default_local_dir": str(checkpoint_dir(work_dir)),
        "trainer.resume_mode": "auto",
        "trainer.logger": ["console"],
        "trainer.project_name": "deepmath",
        "trainer.experiment_name": name,
        "trainer.nnodes": int(spec.get("nodes", 1)),
        "trainer.n_gpus_per_node": int(spec.get("gpus_per_node", 8)),
        "trainer.seed": int(spec.get("seed", 42)),
    }
    if spec.get("chat_template"):
        from deepmath.templates import read_chat_template  # jinja2: only the train env has it

        items["model.custom_chat_template"] = read_chat_template(spec["chat_template"])
    return items


def verl_overrides(spec: Mapping[str, Any], **kw: Any) -> list[str]:
    items = verl_items(spec, **kw)
    extra = [str(o) for o in spec.get("verl_overrides") or []]
    return [f"{key}={hydra_value(value)}" for key, value in items.items()] + extra


def trl_kwargs(
    spec: Mapping[str, Any],
    work_dir: str,
    *,
    use_cpu: bool,
    dtype: str,
    steps: int,
    world: int = 1,
) -> dict[str, Any]:
    """TRL SFTConfig keyword arguments: the same batch, schedule and cut-off on one process.

    ``max_steps`` is the step count of ``epochs`` passes, as verl's ``total_training_steps``
    (TRL drops conversations whose solution the cut-off removes entirely; the step count does
    not shrink with them)."""
    r = recipe(spec)
    per_device = r["micro_batch_size"]
    if r["batch_size"] % (per_device * world):
        raise DeepmathError(
            f"sft recipe: batch_size ({r['batch_size']}) must be a multiple of "
            f"micro_batch_size ({per_device}) x processes ({world})"
        )
    kwargs: dict[str, Any] = {
        "output_dir": work_dir,
        "num_train_epochs": r["epochs"],
        "max_steps": steps,
        "per_device_train_batch_size": per_device,
        "gradient_accumulation_steps": r["batch_size"] // (per_device * world),
        "learning_rate": float(r["lr"]),
        "lr_scheduler_type": r["scheduler"]
        if r["scheduler"] != "constant"
        else "constant_with_warmup",
        "warmup_steps": r["warmup_steps"],
        "weight_decay": float(r["weight_decay"]),
        "max_grad_norm": float(r["grad_clip"]),
        "max_length": r["max_length"],
        "truncation_mode": "keep_start",
        "padding_free": False,  # needs flash attention; a CPU has none (loss is the same)
        "completion_only_loss": True,
        "gradient_checkpointing": r["gradient_checkpointing"],
        "dataloader_drop_last": True,
        **trainer_kwargs(spec, save_every=r["save_every"], use_cpu=use_cpu, dtype=dtype),
    }
    kwargs.update(dict(spec.get("trl") or {}))
    return kwargs
