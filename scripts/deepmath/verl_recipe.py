"""Our GRPO recipe (config ``rl.runs.<name>``) as hydra overrides for verl 0.9.x ``main_ppo``.

Pure functions, no verl import: the rule's shell and the tests build the same list. Every key
below was checked against verl 0.9.1's own config files and code (tests/verl/ composes the full
config with verl's hydra config and fails on unknown or ignored keys). What verl 0.9.1 does with
each recipe item:

- DAPO clip-higher: ``actor.clip_ratio_low/high`` (the vanilla policy loss reads them).
- token-level loss: ``actor.loss_agg_mode=token-mean``.
- dynamic sampling: ``algorithm.filter_groups.{enable,metric}``. ``main_ppo`` runs the *V1*
  trainer (``trainer.use_v1: true``), which streams prompts one at a time and drops groups whose
  metric is constant; it **ignores** ``filter_groups.max_num_gen_batches`` (warning only) and
  forces ``data.gen_batch_size=1``. The paper's generation batch (384 prompts generated per 128
  trained, i.e. 3x) maps to ``filter_groups.max_inflight_gen_batches`` = gen_batch /
  prompts_per_step: at most that many train batches of prompts in flight.
- filter metric ``acc``: our reward returns ``{"score", "acc", ...}``; the ``dapo`` reward manager
  puts every key into ``reward_extra_info``, where the V1 replay buffer reads ``acc``. (The
  alternative ``reward`` would include the overlong penalty, so groups that are all correct but
  of different lengths would not be dropped.)
- overlong soft penalty: ``reward.reward_manager.name=dapo`` reads
  ``reward.reward_kwargs.{max_resp_len,overlong_buffer_cfg}``. ``reward_kwargs`` is not in verl's
  reward config, so it is added with ``+``; the legacy ``reward_model.reward_kwargs`` is only
  migrated by the fully-async entry point, not by ``main_ppo``.
- reward hook: ``reward.custom_reward_function.{path,name}``. The legacy top-level
  ``custom_reward_function.*`` still composes (legacy_reward_impl.yaml) but ``main_ppo`` never
  reads it: the run would silently train on verl's default math scorer.
- KL: as a loss (``actor.use_kl_loss``, ``kl_loss_type``, ``kl_loss_coef``) or off (no reference
  model is built then); never in the reward (``algorithm.use_kl_in_reward=False``).
- constant LR with warmup: ``optim.lr_scheduler_type=constant`` and ``optim.lr_warmup_steps``
  (<= 0 falls back to ``lr_warmup_steps_ratio``, which we pin to 0).
- steps: ``trainer.total_training_steps``; the loop also stops after ``trainer.total_epochs``
  epochs (default 30, counted in train batches), so that is set to ``steps`` to never cut a run
  short. Checkpoints every ``save_every`` steps and at the last step under
  ``trainer.default_local_dir`` (``global_step_N/actor`` + ``latest_checkpointed_iteration.txt``);
  ``trainer.resume_mode=auto`` resumes from the latest one.
- FSDP: ``actor.strategy=fsdp2`` by default (the reference model follows it). FSDP2 is what
  verl recommends, and it is the flavour whose checkpoints can be made on CPU (FSDP1 needs an
  accelerator), so the merger test runs on exactly the format training writes.
- micro-batches: ``actor.use_dynamic_bsz`` with ``ppo_max_token_len_per_gpu`` = prompt +
  response length (the ref/rollout log-prob passes inherit both), as in verl's DAPO recipe.
"""

from __future__ import annotations

import math
import re
import shlex
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from deepmath.io import DeepmathError
from deepmath.templates import read_chat_template

MAIN_PPO = "verl.trainer.main_ppo"
CHECKPOINT_SUBDIR = "checkpoints"
LATEST_FILE = "latest_checkpointed_iteration.txt"

REQUIRED = (
    "lr",
    "warmup_steps",
    "weight_decay",
    "prompts_per_step",
    "gen_batch",
    "mini_batch",
    "rollout_n",
    "temperature",
    "max_prompt_length",
    "max_response_length",
    "overlong_buffer",
    "overlong_penalty_factor",
    "clip_low",
    "clip_high",
    "kl",
    "entropy_coeff",
    "ppo_epochs",
    "save_every",
    "tensor_parallel",
    "gpu_memory_utilization",
)

# Optional recipe items and their defaults (None: derived, see build_overrides).
OPTIONAL: dict[str, Any] = {
    "top_p": 1.0,
    "grad_clip": 1.0,
    "filter_metric": "acc",
    "max_token_len_per_gpu": None,  # default: max_prompt_length + max_response_length
    "test_freq": None,  # default: save_every (validation at every checkpoint and the last step)
    "val_before_train": False,
    "val_temperature": 0.6,  # the paper's evaluation sampling
    "val_top_p": 0.95,
    "val_n": 1,
    "keep_checkpoints": None,  # trainer.max_actor_ckpt_to_keep; None keeps all
    "reward_workers": 8,
    "strategy": "fsdp2",  # actor (and ref) FSDP flavour: fsdp2 or fsdp (FSDP1, verl's default)
}

KL_TYPES = ("kl", "k1", "abs", "mse", "k2", "low_var_kl", "k3", "full")
FILTER_METRICS = ("acc", "score", "reward")
STRATEGIES = ("fsdp", "fsdp2")

# Keys that exist in verl 0.9.1's config but that main_ppo (V1 trainer) ignores or overwrites
# when dynamic sampling is on; setting them would only mislead.
IGNORED_KEYS = {
    "data.gen_batch_size": "the V1 trainer forces it to 1 when filter_groups is enabled",
    "algorithm.filter_groups.max_num_gen_batches": "ignored by the V1 replay buffer (warning only)",
}
# Legacy top-level sections (legacy_reward_impl.yaml): they compose, but only the fully-async
# entry point migrates them into reward.*; main_ppo never reads them.
LEGACY_SECTIONS = {
    "custom_reward_function": "reward.custom_reward_function",
    "reward_model": "reward.reward_manager / reward.reward_kwargs / reward.reward_model",
    "sandbox_fusion": "reward.sandbox_fusion",
}


def ignored_reason(key: str) -> str | None:
    """Why main_ppo in verl 0.9 would not use ``key`` (None: it is used)."""
    if key in IGNORED_KEYS:
        return IGNORED_KEYS[key]
    section = key.split(".", 1)[0]
    if section in LEGACY_SECTIONS:
        return f"legacy key that main_ppo never reads; use {LEGACY_SECTIONS[section]}"
    return None


def recipe(spec: Mapping[str, Any]) -> dict[str, Any]:
    """The run's recipe with defaults filled in; unknown or missing items are errors."""
    raw = spec.get("recipe")
    if not isinstance(raw, Mapping):
        raise DeepmathError("rl run: 'recipe' must be a mapping of GRPO settings")
    missing = [k for k in REQUIRED if k not in raw]
    if missing:
        raise DeepmathError(f"rl recipe: missing {', '.join(missing)}")
    unknown = sorted(set(raw) - set(REQUIRED) - set(OPTIONAL))
    if unknown:
        allowed = ", ".join([*REQUIRED, *OPTIONAL])
        raise DeepmathError(f"rl recipe: unknown item(s) {', '.join(unknown)}; allowed: {allowed}")
    out = {**OPTIONAL, **dict(raw)}
    _check(spec, out)
    return out


def _positive_int(r: Mapping[str, Any], key: str, minimum: int = 1) -> int:
    value = r[key]
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise DeepmathError(f"rl recipe: {key} must be an integer >= {minimum}, got {value!r}")
    return value


def _number(r: Mapping[str, Any], key: str, low: float = 0.0) -> float:
    value = r[key]
    if isinstance(value, bool) or not isinstance(value, int | float) or value < low:
        raise DeepmathError(f"rl recipe: {key} must be a number >= {low:g}, got {value!r}")
    return float(value)


def _check(spec: Mapping[str, Any], r: dict[str, Any]) -> None:
    for key in ("prompts_per_step", "gen_batch", "mini_batch", "rollout_n", "ppo_epochs"):
        _positive_int(r, key)
    for key in ("max_prompt_length", "max_response_length", "save_every", "tensor_parallel"):
        _positive_int(r, key)
    _positive_int(r, "warmup_steps", minimum=0)
    _positive_int(r, "overlong_buffer", minimum=0)
    _positive_int(r, "reward_workers")
    for key in ("lr", "weight_decay", "temperature", "clip_low", "clip_high", "entropy_coeff"):
        _number(r, key)
    for key in ("overlong_penalty_factor", "grad_clip", "val_temperature"):
        _number(r, key)
    if r["lr"] <= 0:
        raise DeepmathError("rl recipe: lr must be > 0")
    if not 0 < _number(r, "gpu_memory_utilization") <= 1:
        raise DeepmathError("rl recipe: gpu_memory_utilization must be in (0, 1]")
    for key in ("top_p", "val_top_p"):
        if not 0 < _number(r, key) <= 1:
            raise DeepmathError(f"rl recipe: {key} must be in (0, 1]")
    _positive_int(r, "val_n")
    if r["clip_high"] < r["clip_low"]:
        raise DeepmathError("rl recipe: clip_high must be >= clip_low (DAPO clip-higher)")
    pps, gen, mini = r["prompts_per_step"], r["gen_batch"], r["mini_batch"]
    if pps % mini:
        raise DeepmathError(
            f"rl recipe: prompts_per_step ({pps}) must be a multiple of mini_batch ({mini})"
        )
    if gen < pps or gen % pps:
        raise DeepmathError(
            f"rl recipe: gen_batch ({gen}) must be a multiple of prompts_per_step ({pps}): verl "
            "0.9's V1 trainer bounds dynamic sampling in whole train batches in flight "
            "(algorithm.filter_groups.max_inflight_gen_batches)"
        )
    if r["overlong_buffer"] >= r["max_response_length"]:
        raise DeepmathError("rl recipe: overlong_buffer must be < max_response_length")
    kl = r["kl"]
    if kl is not None:
        if not isinstance(kl, Mapping) or set(kl) != {"type", "coef"}:
            raise DeepmathError("rl recipe: kl must be null or {type: ..., coef: ...}")
        if kl["type"] not in KL_TYPES:
            raise DeepmathError(
                f"rl recipe: kl.type {kl['type']!r}; allowed: {', '.join(KL_TYPES)}"
            )
        if isinstance(kl["coef"], bool) or not isinstance(kl["coef"], int | float):
            raise DeepmathError("rl recipe: kl.coef must be a number")
    if r["filter_metric"] not in FILTER_METRICS:
        raise DeepmathError(
            f"rl recipe: filter_metric {r['filter_metric']!r}; allowed: {', '.join(FILTER_METRICS)}"
        )
    if r["strategy"] not in STRATEGIES:
        raise DeepmathError(f"rl recipe: strategy {r['strategy']!r}; allowed: fsdp, fsdp2")
    for key in ("max_token_len_per_gpu", "test_freq", "keep_checkpoints"):
        if r[key] is not None:
            _positive_int(r, key)
    if not isinstance(r["val_before_train"], bool):
        raise DeepmathError("rl recipe: val_before_train must be true or false")
    nodes, gpus = int(spec.get("nodes", 1)), int(spec.get("gpus_per_node", 8))
    if nodes < 1 or gpus < 1:
        raise DeepmathError("rl run: verl needs nodes >= 1 and gpus_per_node >= 1")
    world = nodes * gpus
    if (pps * r["rollout_n"]) % world:
        raise DeepmathError(
            f"rl recipe: prompts_per_step x rollout_n ({pps * r['rollout_n']}) must be divisible "
            f"by the number of GPUs ({world}) - verl's validate_config"
        )
    if world % r["tensor_parallel"]:
        raise DeepmathError(
            f"rl recipe: tensor_parallel ({r['tensor_parallel']}) must divide the GPUs ({world})"
        )
    steps = spec.get("steps")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise DeepmathError(f"rl run: steps must be an integer >= 1, got {steps!r}")


# --------------------------------------------------------------------------- rendering

_BARE = re.compile(r"[A-Za-z0-9_./:@+\-]+")


def hydra_value(value: Any) -> str:
    """A Python value as a hydra override value (quoted where the grammar needs it)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            raise DeepmathError(f"cannot pass {value} to hydra")
        return repr(value)
    if isinstance(value, str):
        bare = _BARE.fullmatch(value) and value not in ("null", "true", "false")
        if bare and not re.fullmatch(r"[+\-]?[0-9.][0-9.eE+\-]*", value):
            return value
        return _quoted(value)
    if isinstance(value, list | tuple):
        return "[" + ",".join(hydra_value(v) for v in value) + "]"
    raise DeepmathError(f"cannot pass {type(value).__name__} {value!r} to hydra")


def _quoted(value: str) -> str:
    """A single-quoted hydra string. Hydra reads backslashes literally except in a run just
    before a quote, where they pair up, so only such runs are doubled ('\\n' stays as is)."""
    if "${" in value:
        raise DeepmathError(f"cannot pass {value[:60]!r}... to hydra: it contains '${{'")
    body = re.sub(r"(\\*)'", lambda m: m.group(1) * 2 + "\\'", value)
    body = re.sub(r"(\\+)$", lambda m: m.group(1) * 2, body)
    return "'" + body + "'"


def render(items: Mapping[str, Any]) -> list[str]:
    """``{key: value}`` -> ``["key=value", ...]`` (keys may start with ``+``)."""
    return [f"{key}={hydra_value(value)}" for key, value in items.items()]


# --------------------------------------------------------------------------- the mapping


def checkpoint_dir(work_dir: str | Path) -> Path:
    """Where verl writes ``global_step_N/`` and ``latest_checkpointed_iteration.txt``."""
    return Path(work_dir) / CHECKPOINT_SUBDIR


def override_items(
    spec: Mapping[str, Any],
    *,
    model_dir: str | Path,
    train: str | Path,
    val: str | Path,
    reward: str | Path,
    work_dir: str | Path,
    name: str = "deepmath",
) -> dict[str, Any]:
    """The verl keys and values for one run (before ``verl_overrides``), in a stable order."""
    r = recipe(spec)
    steps = int(spec["steps"])
    plen, rlen = r["max_prompt_length"], r["max_response_length"]
    seq = plen + rlen
    kl = r["kl"]
    actor = "actor_rollout_ref.actor"
    rollout = "actor_rollout_ref.rollout"
    items: dict[str, Any] = {
        # data: our parquet (verl RL format), chat prompts, lengths, batch in prompts
        "data.train_files": str(train),
        "data.val_files": str(val),
        "data.prompt_key": "prompt",
        "data.max_prompt_length": plen,
        "data.max_response_length": rlen,
        "data.train_batch_size": r["prompts_per_step"],
        "data.filter_overlong_prompts": True,
        "data.truncation": "error",
        # GRPO without KL in the reward; DAPO dynamic sampling
        "algorithm.adv_estimator": "grpo",
        "algorithm.norm_adv_by_std_in_grpo": True,
        "algorithm.use_kl_in_reward": False,
        "algorithm.filter_groups.enable": True,
        "algorithm.filter_groups.metric": r["filter_metric"],
        "algorithm.filter_groups.max_inflight_gen_batches": r["gen_batch"] // r["prompts_per_step"],
        # the policy
        "actor_rollout_ref.model.path": str(model_dir),
        "actor_rollout_ref.model.use_remove_padding": True,
        "actor_rollout_ref.model.enable_gradient_checkpointing": True,
        f"{actor}.strategy": r["strategy"],
        f"{actor}.optim.lr": float(r["lr"]),
        f"{actor}.optim.lr_scheduler_type": "constant",
        f"{actor}.optim.lr_warmup_steps": r["warmup_steps"],
        f"{actor}.optim.lr_warmup_steps_ratio": 0.0,
        f"{actor}.optim.weight_decay": float(r["weight_decay"]),
        f"{actor}.optim.clip_grad": float(r["grad_clip"]),
        f"{actor}.ppo_mini_batch_size": r["mini_batch"],
        f"{actor}.ppo_epochs": r["ppo_epochs"],
        f"{actor}.use_dynamic_bsz": True,
        f"{actor}.ppo_max_token_len_per_gpu": r["max_token_len_per_gpu"] or seq,
        f"{actor}.policy_loss.loss_mode": "vanilla",
        f"{actor}.clip_ratio_low": float(r["clip_low"]),
        f"{actor}.clip_ratio_high": float(r["clip_high"]),
        f"{actor}.loss_agg_mode": "token-mean",
        f"{actor}.entropy_coeff": float(r["entropy_coeff"]),
        f"{actor}.use_kl_loss": kl is not None,
    }
    if spec.get("chat_template"):
        # the Zero recipe's ORZ prompt replaces the base model's own template everywhere verl
        # turns messages into tokens (rollout and dataset length filter alike)
        items["actor_rollout_ref.model.custom_chat_template"] = read_chat_template(
            spec["chat_template"]
        )
    if kl is not None:
        items[f"{actor}.kl_loss_type"] = kl["type"]
        items[f"{actor}.kl_loss_coef"] = float(kl["coef"])
    items.update(
        {
            # rollout: vLLM must be named explicitly (the default is ???)
            f"{rollout}.name": "vllm",
            f"{rollout}.n": r["rollout_n"],
            f"{rollout}.temperature": float(r["temperature"]),
            f"{rollout}.top_p": float(r["top_p"]),
            f"{rollout}.top_k": -1,
            f"{rollout}.tensor_model_parallel_size": r["tensor_parallel"],
            f"{rollout}.gpu_memory_utilization": float(r["gpu_memory_utilization"]),
            f"{rollout}.max_model_len": seq,
            f"{rollout}.max_num_batched_tokens": max(seq, 8192),
            f"{rollout}.val_kwargs.do_sample": True,
            f"{rollout}.val_kwargs.temperature": float(r["val_temperature"]),
            f"{rollout}.val_kwargs.top_p": float(r["val_top_p"]),
            f"{rollout}.val_kwargs.n": r["val_n"],
            # reward: our function, DAPO manager with the overlong soft penalty
            "reward.num_workers": r["reward_workers"],
            "reward.reward_manager.name": "dapo",
            "reward.custom_reward_function.path": str(reward),
            "reward.custom_reward_function.name": "compute_score",
            "+reward.reward_kwargs.max_resp_len": rlen,
            "+reward.reward_kwargs.overlong_buffer_cfg.enable": r["overlong_buffer"] > 0,
            "+reward.reward_kwargs.overlong_buffer_cfg.len": r["overlong_buffer"],
            "+reward.reward_kwargs.overlong_buffer_cfg.penalty_factor": float(
                r["overlong_penalty_factor"]
            ),
            "+reward.reward_kwargs.overlong_buffer_cfg.log": True,
            # trainer: cluster shape, steps, checkpoints, resume, logs
            "trainer.nnodes": int(spec.get("nodes", 1)),
            "trainer.n_gpus_per_node": int(spec.get("gpus_per_node", 8)),
            "trainer.total_training_steps": steps,
            "trainer.total_epochs": steps,
            "trainer.save_freq": r["save_every"],
            "trainer.test_freq": r["test_freq"] or r["save_every"],
            "trainer.val_before_train": r["val_before_train"],
            "trainer.default_local_dir": str(checkpoint_dir(work_dir)),
            "trainer.resume_mode": "auto",
            "trainer.max_actor_ckpt_to_keep": r["keep_checkpoints"],
            "trainer.logger": ["console"],
            "trainer.project_name": "deepmath",
            "trainer.experiment_name": name,
        }
    )
    return items


def override_key(override: str) -> str:
    """``+a.b=1`` / ``++a.b=1`` / ``~a.b`` -> ``a.b``."""
    key = override.split("=", 1)[0]
    return key.lstrip("+~")


def build_overrides(spec: Mapping[str, Any], **paths: Any) -> list[str]:
    """All hydra overrides for ``main_ppo``: ours, then the run's ``verl_overrides`` verbatim.

    ``paths`` are :func:`override_items`' keywords (model_dir, train, val, reward, work_dir,
    name).
    """
    items = override_items(spec, **paths)
    extra = list(spec.get("verl_overrides") or [])
    for raw in extra:
        if not isinstance(raw, str) or "=" not in raw and not raw.startswith("~"):
            raise DeepmathError(f"rl verl_overrides: {raw!r} is not a hydra override (key=value)")
        key = override_key(raw)
        reason = ignored_reason(key)
        if reason:
            raise DeepmathError(f"rl verl_overrides: {key} has no effect in verl 0.9 ({reason})")
    return [*render(items), *extra]


def command(overrides: Sequence[str], python: str = "python") -> list[str]:
    """``python -m verl.trainer.main_ppo <overrides>``."""
    return [python, "-m", MAIN_PPO, *overrides]


def shell(cmd: Sequence[str]) -> str:
    return shlex.join(list(cmd))
