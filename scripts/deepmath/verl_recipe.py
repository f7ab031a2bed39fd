"""Our GRPO recipe (config ``rl.runs.<name>``) as hydra overrides for verl 0.9.x ``main_ppo``.

Pure functions, no verl import: the rule's shell and the tests build the same list. Every key
below was checked against verl 0.9.1's own config files and code (tests/verl/ composes the full
config with verl's hydra config and fails on unknown or ignored keys). What verl 0.9.1 does with
each recipe item:

- DAPO clip-higher: ``actor.clip_ratio_low/high`` (the vanilla policy loss reads them).
- token-level loss: ``actor.loss_agg_mode=token-mean``.
- dynamic sampling: ``algorithm.filter_groups.{enable,metric}``. ``main_ppo`` runs the *V1*
  trainer (``trainer.use_v1: true``), which streams prompts and drops groups whose metric is
  constant, but ignores ``data.gen_batch_size`` and ``filter_groups.max_num_gen_batches``, has
  no limit on generation rounds and refills dropped groups while others still generate. Our
  sampler (``trainer.v1.sampler.custom_sampler`` = deepmath/verl_sampler.py, verl's documented
  extension point) keeps verl's filtering and fills each step in the fork's rounds: a round is
  ``gen_batch`` prompts (any size >= prompts_per_step: 480 for 128 works) generated and scored
  whole, the next round only when fewer than ``prompts_per_step`` groups are kept, the first
  ``prompts_per_step`` kept groups in data order train and the rest are discarded, and after
  ``max_gen_rounds`` rounds without a full batch the run fails with a message
  (deepmath.sampling). ``data.seed`` is the fork's 1 (its RandomSampler seed), so the first
  epoch's prompt order is the fork's.
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
  reads it: the run would silently train on verl's default math scorer. The run's
  ``reward_scorer`` goes to ``compute_score`` as ``+reward.custom_reward_function.reward_kwargs
  .scorer`` (verl's loader merges that mapping into every call), so no Ray worker falls back to
  the authors' scorer for want of ``$DEEPMATH_REWARD_SCORER``.
- KL: as a loss (``actor.use_kl_loss``, ``kl_loss_type``, ``kl_loss_coef``) or off (no reference
  model is built then); never in the reward (``algorithm.use_kl_in_reward=False``).
- constant LR with warmup, stepped once per training step as in the fork:
  ``optim.lr_scheduler_type=constant`` and ``optim.lr_warmup_steps`` (<= 0 falls back to
  ``lr_warmup_steps_ratio``, which we pin to 0). The fork's schedule is lr x min(1, s / max(1, W))
  at the s-th scheduler step (from 0), so its first update runs at lr x 0 even with W = 0; verl
  0.9's gives lr x 1 at s = 0 when W = 0 and is the same as the fork's for W >= 1. The recipe's
  warmup_steps is the authors' W; verl gets ``max(1, W)`` (:func:`verl_warmup_steps`).
- steps: ``trainer.total_training_steps``; ``trainer.total_epochs`` is the authors' 999999, so
  an epoch count never cuts a run short. Checkpoints every ``save_every`` steps and at the
  last step under ``trainer.default_local_dir`` (``global_step_N/actor`` +
  ``latest_checkpointed_iteration.txt``); ``trainer.resume_mode=auto`` resumes from the latest.
- FSDP: ``actor.strategy=fsdp2`` by default (the reference model follows it). FSDP2 is what
  verl recommends, and it is the flavour whose checkpoints can be made on CPU (FSDP1 needs an
  accelerator), so the merger test runs on exactly the format training writes.
- micro-batches: ``actor.use_dynamic_bsz`` with the recipe's ``max_token_len_per_gpu``; the
  log-prob passes of the rollout and the reference model get ``log_prob_max_token_len_per_gpu``.
- Ulysses sequence parallel: set on the actor and the reference model, both in the deprecated
  top-level key (which the dataclass copies) and in ``fsdp_config``; offload: FSDP parameter
  and optimizer offload of the actor and parameter offload of the reference model.
- skip the update above a gradient norm (the fork's ``max_grad_norm``, our ``skip_grad_norm``):
  ``actor_rollout_ref.model.external_lib`` = deepmath.verl_skip_update, which verl imports in
  every worker and which wraps the FSDP engine's optimizer step; the limit reaches the workers
  as ``DEEPMATH_SKIP_GRAD_NORM`` (``worker_env``).
- values verl 0.9 cannot reproduce are listed in ``DEVIATIONS`` (the README repeats it).
"""

from __future__ import annotations

import math
import re
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from deepmath.backends import recipe_items
from deepmath.io import DeepmathError
from deepmath.reward import spec_scorer

MAIN_PPO = "verl.trainer.main_ppo"
# the authors' total_epochs: training ends at total_training_steps, never at an epoch count
TOTAL_EPOCHS = 999999
CHECKPOINT_SUBDIR = "checkpoints"
LATEST_FILE = "latest_checkpointed_iteration.txt"

# Every value of the authors' training table is a required recipe item: a run that leaves one
# out is an error, never a silent verl default.
REQUIRED = (
    "lr",
    "warmup_steps",
    "weight_decay",
    "prompts_per_step",
    "gen_batch",
    "max_gen_rounds",
    "mini_batch",
    "rollout_n",
    "temperature",
    "top_p",
    "max_prompt_length",
    "max_response_length",
    "overlong_buffer",
    "overlong_penalty_factor",
    "clip_low",
    "clip_high",
    "kl",
    "grad_clip",
    "skip_grad_norm",
    "entropy_coeff",
    "ppo_epochs",
    "ulysses_sp",
    "max_token_len_per_gpu",
    "log_prob_max_token_len_per_gpu",
    "offload",
    "tensor_parallel",
    "gpu_memory_utilization",
    "max_num_batched_tokens",
    "save_every",
    "truncation",
)

# Optional recipe items and their defaults (the authors' values where they had one).
OPTIONAL: dict[str, Any] = {
    "filter_metric": "acc",
    "enforce_eager": True,
    "chunked_prefill": True,
    "dropout": 0.0,  # attention / embedding / residual dropout of the policy
    "save_rollouts": True,  # the authors' trainer.save_rollout: rollouts as JSONL per step
    "val_temperature": 0.6,  # the paper's evaluation sampling, when validation is on
    "val_top_p": 0.95,
    "val_n": 1,
    # trainer.max_actor_ckpt_to_keep: resume and merge need only the latest; a 7B checkpoint
    # with optimizer state is ~100 GB, and every 10 steps all of them would be 5-15 TB
    "keep_checkpoints": 2,
    "reward_workers": 8,
    "strategy": "fsdp2",  # actor (and ref) FSDP flavour: fsdp2 or fsdp (FSDP1)
}

KL_TYPES = ("kl", "k1", "abs", "mse", "k2", "low_var_kl", "k3", "full")
FILTER_METRICS = ("acc", "score", "reward")
STRATEGIES = ("fsdp", "fsdp2")
TRUNCATIONS = ("left", "right", "middle", "error")
SAMPLER_NAME = "BudgetedReplayBuffer"
SKIP_UPDATE_MODULE = "deepmath.verl_skip_update"
SKIP_UPDATE_ENV = "DEEPMATH_SKIP_GRAD_NORM"
SAMPLING_REPORT = "dynamic_sampling.failed.json"
DATA_SEED = 1  # the fork's data-order seed (its trainer reads data.seed, default 1)

# The verl 0.9 keys each recipe item sets (tests perturb every item and check that exactly these
# keys move, so an item that never reaches verl fails).
RECIPE_KEYS: dict[str, tuple[str, ...]] = {
    "lr": ("actor_rollout_ref.actor.optim.lr",),
    "warmup_steps": ("actor_rollout_ref.actor.optim.lr_warmup_steps",),
    "weight_decay": ("actor_rollout_ref.actor.optim.weight_decay",),
    "prompts_per_step": (
        "data.train_batch_size",
        "+trainer.v1.sampler.sampler_kwargs.prompts_per_step",
    ),
    "gen_batch": ("+trainer.v1.sampler.sampler_kwargs.gen_batch",),
    "max_gen_rounds": ("+trainer.v1.sampler.sampler_kwargs.max_gen_rounds",),
    "mini_batch": ("actor_rollout_ref.actor.ppo_mini_batch_size",),
    "rollout_n": ("actor_rollout_ref.rollout.n",),
    "temperature": ("actor_rollout_ref.rollout.temperature",),
    "top_p": ("actor_rollout_ref.rollout.top_p",),
    "max_prompt_length": ("data.max_prompt_length", "actor_rollout_ref.rollout.max_model_len"),
    "max_response_length": (
        "data.max_response_length",
        "actor_rollout_ref.rollout.max_model_len",
        "+reward.reward_kwargs.max_resp_len",
    ),
    "overlong_buffer": (
        "+reward.reward_kwargs.overlong_buffer_cfg.enable",
        "+reward.reward_kwargs.overlong_buffer_cfg.len",
    ),
    "overlong_penalty_factor": ("+reward.reward_kwargs.overlong_buffer_cfg.penalty_factor",),
    "clip_low": ("actor_rollout_ref.actor.clip_ratio_low",),
    "clip_high": ("actor_rollout_ref.actor.clip_ratio_high",),
    "kl": (
        "actor_rollout_ref.actor.use_kl_loss",
        "actor_rollout_ref.actor.kl_loss_type",
        "actor_rollout_ref.actor.kl_loss_coef",
        "algorithm.kl_ctrl.kl_coef",
    ),
    "grad_clip": ("actor_rollout_ref.actor.optim.clip_grad",),
    # the limit itself reaches the workers as DEEPMATH_SKIP_GRAD_NORM (worker_env)
    "skip_grad_norm": ("actor_rollout_ref.model.external_lib",),
    "entropy_coeff": ("actor_rollout_ref.actor.entropy_coeff",),
    "ppo_epochs": ("actor_rollout_ref.actor.ppo_epochs",),
    "ulysses_sp": (
        "actor_rollout_ref.actor.ulysses_sequence_parallel_size",
        "actor_rollout_ref.actor.fsdp_config.ulysses_sequence_parallel_size",
        "actor_rollout_ref.ref.ulysses_sequence_parallel_size",
        "actor_rollout_ref.ref.fsdp_config.ulysses_sequence_parallel_size",
    ),
    "max_token_len_per_gpu": ("actor_rollout_ref.actor.ppo_max_token_len_per_gpu",),
    "log_prob_max_token_len_per_gpu": (
        "actor_rollout_ref.rollout.log_prob_max_token_len_per_gpu",
        "actor_rollout_ref.ref.log_prob_max_token_len_per_gpu",
    ),
    "offload": (
        "actor_rollout_ref.actor.fsdp_config.param_offload",
        "actor_rollout_ref.actor.fsdp_config.optimizer_offload",
        "actor_rollout_ref.ref.fsdp_config.param_offload",
    ),
    "tensor_parallel": ("actor_rollout_ref.rollout.tensor_model_parallel_size",),
    "gpu_memory_utilization": ("actor_rollout_ref.rollout.gpu_memory_utilization",),
    "max_num_batched_tokens": ("actor_rollout_ref.rollout.max_num_batched_tokens",),
    "save_every": ("trainer.save_freq",),
    "truncation": ("data.truncation",),
    "filter_metric": (
        "algorithm.filter_groups.metric",
        "+trainer.v1.sampler.sampler_kwargs.filter_metric",
    ),
    "enforce_eager": ("actor_rollout_ref.rollout.enforce_eager",),
    "chunked_prefill": ("actor_rollout_ref.rollout.enable_chunked_prefill",),
    "dropout": (
        "+actor_rollout_ref.model.override_config.attention_dropout",
        "+actor_rollout_ref.model.override_config.embd_pdrop",
        "+actor_rollout_ref.model.override_config.resid_pdrop",
    ),
    "save_rollouts": ("trainer.rollout_data_dir",),
    "val_temperature": ("actor_rollout_ref.rollout.val_kwargs.temperature",),
    "val_top_p": ("actor_rollout_ref.rollout.val_kwargs.top_p",),
    "val_n": ("actor_rollout_ref.rollout.val_kwargs.n",),
    "keep_checkpoints": ("trainer.max_actor_ckpt_to_keep",),
    "reward_workers": ("reward.num_workers",),
    "strategy": ("actor_rollout_ref.actor.strategy",),
}


@dataclass(frozen=True)
class Deviation:
    """A value of the authors' recipe that our verl 0.9 run does not reproduce exactly."""

    authors: str  # what the authors' fork did
    ours: str  # what we do instead
    reason: str


# Keyed by the authors' hydra key (their verl fork, zwhe99/verl@05dc0fc). The conformance test
# compares every other value of the authors' table with the composed verl 0.9 config; these are
# the only ones allowed to differ. The README repeats this table.
DEVIATIONS: dict[str, Deviation] = {
    "actor_rollout_ref.actor.strategy": Deviation(
        authors="FSDP1 (the fork's default 'fsdp')",
        ours="FSDP2 ('fsdp2'); recipe item strategy: fsdp switches back",
        reason="verl 0.9 recommends FSDP2, and FSDP2 checkpoints can be written on CPU, so the "
        "checkpoint-merge test runs on exactly the format training writes",
    ),
    "actor_rollout_ref.actor.use_token_level_loss": Deviation(
        authors="token mean within each micro-batch, micro-batches weighted by size",
        ours="loss_agg_mode token-mean: token mean over the whole mini-batch",
        reason="upstream verl's token-level loss (the DAPO definition); the fork's variant is "
        "not available. Equal when micro-batches hold equal token counts",
    ),
    "data.epoch_order": Deviation(
        authors="each epoch a new shuffle (RandomSampler, seed 1) cut into whole rounds of "
        "gen_batch prompts; the last partial round of every epoch is dropped (drop_last)",
        ours="the same first-epoch permutation (data.seed 1); later epochs are shuffled by "
        "torchdata's stateful RandomSampler, which draws another permutation from the same "
        "generator, and verl fetches one prompt at a time, so no row is dropped at an epoch's "
        "end and a round may span two epochs",
        reason="verl 0.9 forces its dataloader batch to 1 with dynamic sampling and uses the "
        "resumable torchdata sampler. Effect: from the second epoch on (after at most 67 steps "
        "of Zero-7B, 33 of Zero-Math-7B, 268 of DeepMath-1.5B, 214 of Omn-1.5B, fewer when "
        "steps take several rounds) the steps see the prompts in another random order; every "
        "prompt is still seen once per epoch, including the 198 to 1,734 rows the fork left "
        "out of each epoch",
    ),
    "trainer.logger": Deviation(
        authors="console and wandb",
        ours="console; add 'trainer.logger=[console,wandb]' to the run's verl_overrides",
        reason="wandb needs an account and network access that cluster nodes often lack; it "
        "does not change training",
    ),
}


# Keys that exist in verl 0.9.1's config but that main_ppo (V1 trainer) ignores or overwrites
# when dynamic sampling is on; setting them would only mislead.
IGNORED_KEYS = {
    "data.gen_batch_size": "the V1 trainer forces it to 1 when filter_groups is enabled",
    "algorithm.filter_groups.max_num_gen_batches": "ignored by the V1 replay buffer (warning "
    "only); the recipe's max_gen_rounds is enforced by deepmath.verl_sampler",
    "algorithm.filter_groups.max_inflight_gen_batches": "not read with a custom sampler; the "
    "recipe's gen_batch bounds the prompts in flight (deepmath.verl_sampler)",
    "actor_rollout_ref.actor.grad_clip": "read nowhere in verl 0.9; the recipe's grad_clip sets "
    "actor_rollout_ref.actor.optim.clip_grad",
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
    out = recipe_items(spec, REQUIRED, OPTIONAL, "rl")
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
    for key in ("prompts_per_step", "gen_batch", "max_gen_rounds", "mini_batch", "rollout_n"):
        _positive_int(r, key)
    for key in ("ppo_epochs", "max_prompt_length", "max_response_length", "save_every"):
        _positive_int(r, key)
    for key in ("tensor_parallel", "ulysses_sp", "max_token_len_per_gpu", "reward_workers"):
        _positive_int(r, key)
    for key in ("log_prob_max_token_len_per_gpu", "max_num_batched_tokens"):
        _positive_int(r, key)
    _positive_int(r, "warmup_steps", minimum=0)
    _positive_int(r, "overlong_buffer", minimum=0)
    for key in ("lr", "weight_decay", "temperature", "clip_low", "clip_high", "entropy_coeff"):
        _number(r, key)
    for key in ("overlong_penalty_factor", "grad_clip", "val_temperature", "dropout"):
        _number(r, key)
    if r["lr"] <= 0:
        raise DeepmathError("rl recipe: lr must be > 0")
    if r["skip_grad_norm"] is not None and _number(r, "skip_grad_norm") <= 0:
        raise DeepmathError("rl recipe: skip_grad_norm must be null or a number > 0")
    if not 0 < _number(r, "gpu_memory_utilization") <= 1:
        raise DeepmathError("rl recipe: gpu_memory_utilization must be in (0, 1]")
    for key in ("top_p", "val_top_p"):
        if not 0 < _number(r, key) <= 1:
            raise DeepmathError(f"rl recipe: {key} must be in (0, 1]")
    _positive_int(r, "val_n")
    for key in ("offload", "enforce_eager", "chunked_prefill", "save_rollouts"):
        if not isinstance(r[key], bool):
            raise DeepmathError(f"rl recipe: {key} must be true or false, got {r[key]!r}")
    if r["clip_high"] < r["clip_low"]:
        raise DeepmathError("rl recipe: clip_high must be >= clip_low (DAPO clip-higher)")
    pps, gen, mini = r["prompts_per_step"], r["gen_batch"], r["mini_batch"]
    if pps % mini:
        raise DeepmathError(
            f"rl recipe: prompts_per_step ({pps}) must be a multiple of mini_batch ({mini})"
        )
    if gen < pps:
        raise DeepmathError(
            f"rl recipe: gen_batch ({gen}) must be >= prompts_per_step ({pps}): it is how many "
            "prompts dynamic sampling may have in generation at once"
        )
    if r["overlong_buffer"] >= r["max_response_length"]:
        raise DeepmathError("rl recipe: overlong_buffer must be < max_response_length")
    if r["truncation"] not in TRUNCATIONS:
        raise DeepmathError(
            f"rl recipe: truncation {r['truncation']!r}; allowed: {', '.join(TRUNCATIONS)}"
        )
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
    if r["keep_checkpoints"] is not None:
        _positive_int(r, "keep_checkpoints")
    nodes, gpus = int(spec.get("nodes", 1)), int(spec.get("gpus_per_node", 8))
    if nodes < 1 or gpus < 1:
        raise DeepmathError("rl run: verl needs nodes >= 1 and gpus_per_node >= 1")
    world = nodes * gpus
    for what, prompts in (("prompts_per_step", pps), ("mini_batch", mini)):
        if (prompts * r["rollout_n"]) % world:
            raise DeepmathError(
                f"rl recipe: {what} x rollout_n ({prompts * r['rollout_n']}) must be divisible "
                f"by the number of GPUs ({world}) - verl's validate_config"
            )
    for key in ("tensor_parallel", "ulysses_sp"):
        if world % r[key]:
            raise DeepmathError(f"rl recipe: {key} ({r[key]}) must divide the GPUs ({world})")
    steps = spec.get("steps")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise DeepmathError(f"rl run: steps must be an integer >= 1, got {steps!r}")
    validation_of(spec)


def validation_of(spec: Mapping[str, Any]) -> dict[str, Any]:
    """``rl.validation`` with defaults: the benchmark, every N steps (-1: off), before training."""
    raw = spec.get("validation") or {}
    if not isinstance(raw, Mapping):
        raise DeepmathError("rl validation must be a mapping {benchmark, every, before_train}")
    out = {"benchmark": None, "every": -1, "before_train": False, **dict(raw)}
    unknown = sorted(set(out) - {"benchmark", "every", "before_train", "limit"})
    if unknown:
        raise DeepmathError(
            f"rl validation: unknown key(s) {', '.join(unknown)}; allowed: benchmark, every, "
            "before_train, limit"
        )
    every = out["every"]
    if isinstance(every, bool) or not isinstance(every, int) or (every < 1 and every != -1):
        raise DeepmathError(f"rl validation: every must be -1 (off) or >= 1, got {every!r}")
    if not isinstance(out["before_train"], bool):
        raise DeepmathError("rl validation: before_train must be true or false")
    if not out["benchmark"]:
        raise DeepmathError(
            "rl validation: a verl run needs a benchmark (e.g. {benchmark: math500}): verl "
            "builds its validation loader even with validation off and fails on an empty set"
        )
    return out


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


def sampler_file() -> Path:
    """deepmath/verl_sampler.py, which verl loads by path inside its trainer."""
    return Path(__file__).with_name("verl_sampler.py")


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
    val_cfg = validation_of(spec)
    steps = int(spec["steps"])
    plen, rlen = r["max_prompt_length"], r["max_response_length"]
    seq = plen + rlen
    kl = r["kl"]
    actor = "actor_rollout_ref.actor"
    ref = "actor_rollout_ref.ref"
    rollout = "actor_rollout_ref.rollout"
    model = "actor_rollout_ref.model"
    sampler = "trainer.v1.sampler"
    items: dict[str, Any] = {
        # data: our parquet (verl RL format), chat prompts, lengths, batch in prompts; prompts
        # longer than max_prompt_length are kept and cut from the left, as the authors ran it
        "data.train_files": str(train),
        "data.val_files": str(val),
        "data.prompt_key": "prompt",
        "data.max_prompt_length": plen,
        "data.max_response_length": rlen,
        "data.train_batch_size": r["prompts_per_step"],
        "data.filter_overlong_prompts": False,
        "data.truncation": r["truncation"],
        # the fork's shuffle: RandomSampler seeded with data.seed, 1 unless set (verl 0.9's
        # default null leaves the generator unseeded)
        "data.shuffle": True,
        "data.seed": DATA_SEED,
        # GRPO, KL never in the reward; DAPO dynamic sampling (filtering by verl, the budget of
        # gen_batch prompts in flight and max_gen_rounds rounds per step by our sampler)
        "algorithm.adv_estimator": "grpo",
        "algorithm.norm_adv_by_std_in_grpo": True,
        "algorithm.use_kl_in_reward": False,
        "algorithm.kl_ctrl.kl_coef": float(kl["coef"]) if kl else 0.0,
        "algorithm.filter_groups.enable": True,
        "algorithm.filter_groups.metric": r["filter_metric"],
        f"{sampler}.custom_sampler.path": str(sampler_file()),
        f"{sampler}.custom_sampler.name": SAMPLER_NAME,
        f"+{sampler}.sampler_kwargs.filter_metric": r["filter_metric"],
        f"+{sampler}.sampler_kwargs.prompts_per_step": r["prompts_per_step"],
        f"+{sampler}.sampler_kwargs.gen_batch": r["gen_batch"],
        f"+{sampler}.sampler_kwargs.max_gen_rounds": r["max_gen_rounds"],
        f"+{sampler}.sampler_kwargs.report": str(Path(work_dir) / SAMPLING_REPORT),
        # the policy
        f"{model}.path": str(model_dir),
        f"{model}.use_remove_padding": True,
        f"{model}.enable_gradient_checkpointing": True,
        f"+{model}.override_config.attention_dropout": float(r["dropout"]),
        f"+{model}.override_config.embd_pdrop": float(r["dropout"]),
        f"+{model}.override_config.resid_pdrop": float(r["dropout"]),
        f"{actor}.strategy": r["strategy"],
        f"{actor}.optim.lr": float(r["lr"]),
        f"{actor}.optim.lr_scheduler_type": "constant",
        f"{actor}.optim.lr_warmup_steps": verl_warmup_steps(r["warmup_steps"]),
        f"{actor}.optim.lr_warmup_steps_ratio": 0.0,
        f"{actor}.optim.weight_decay": float(r["weight_decay"]),
        f"{actor}.optim.clip_grad": float(r["grad_clip"]),
        f"{actor}.ppo_mini_batch_size": r["mini_batch"],
        f"{actor}.ppo_epochs": r["ppo_epochs"],
        f"{actor}.use_dynamic_bsz": True,
        f"{actor}.ppo_max_token_len_per_gpu": r["max_token_len_per_gpu"],
        f"{actor}.ulysses_sequence_parallel_size": r["ulysses_sp"],
        f"{actor}.fsdp_config.ulysses_sequence_parallel_size": r["ulysses_sp"],
        f"{actor}.fsdp_config.param_offload": r["offload"],
        f"{actor}.fsdp_config.optimizer_offload": r["offload"],
        f"{actor}.policy_loss.loss_mode": "vanilla",
        f"{actor}.clip_ratio_low": float(r["clip_low"]),
        f"{actor}.clip_ratio_high": float(r["clip_high"]),
        f"{actor}.loss_agg_mode": "token-mean",
        f"{actor}.entropy_coeff": float(r["entropy_coeff"]),
        f"{actor}.use_kl_loss": kl is not None,
        f"{actor}.kl_loss_type": kl["type"] if kl else "low_var_kl",
        f"{actor}.kl_loss_coef": float(kl["coef"]) if kl else 0.0,
        # the reference model (built only with a KL loss)
        f"{ref}.log_prob_use_dynamic_bsz": True,
        f"{ref}.log_prob_max_token_len_per_gpu": r["log_prob_max_token_len_per_gpu"],
        f"{ref}.ulysses_sequence_parallel_size": r["ulysses_sp"],
        f"{ref}.fsdp_config.ulysses_sequence_parallel_size": r["ulysses_sp"],
        f"{ref}.fsdp_config.param_offload": r["offload"],
    }
    if r["skip_grad_norm"] is not None:
        # the authors' skip-update rule, installed in every worker (deepmath.verl_skip_update)
        items[f"{model}.external_lib"] = SKIP_UPDATE_MODULE
    if spec.get("chat_template"):
        from deepmath.templates import read_chat_template  # jinja2: only the train env has it

        # a template file replaces the init model's own everywhere verl turns messages into
        # tokens (rollout and dataset length filter alike)
        items[f"{model}.custom_chat_template"] = read_chat_template(spec["chat_template"])
    items.update(
        {
            # rollout: vLLM must be named explicitly (the default is ???); eager, chunked
            # prefill, the authors' token budget per batch
            f"{rollout}.name": "vllm",
            f"{rollout}.n": r["rollout_n"],
            f"{rollout}.temperature": float(r["temperature"]),
            f"{rollout}.top_p": float(r["top_p"]),
            f"{rollout}.top_k": -1,
            f"{rollout}.tensor_model_parallel_size": r["tensor_parallel"],
            f"{rollout}.gpu_memory_utilization": float(r["gpu_memory_utilization"]),
            f"{rollout}.max_model_len": seq,
            f"{rollout}.max_num_batched_tokens": r["max_num_batched_tokens"],
            f"{rollout}.enable_chunked_prefill": r["chunked_prefill"],
            f"{rollout}.enforce_eager": r["enforce_eager"],
            f"{rollout}.disable_log_stats": False,
            f"{rollout}.log_prob_use_dynamic_bsz": True,
            f"{rollout}.log_prob_max_token_len_per_gpu": r["log_prob_max_token_len_per_gpu"],
            f"{rollout}.val_kwargs.do_sample": True,
            f"{rollout}.val_kwargs.temperature": float(r["val_temperature"]),
            f"{rollout}.val_kwargs.top_p": float(r["val_top_p"]),
            f"{rollout}.val_kwargs.n": r["val_n"],
            # reward: our function, DAPO manager with the overlong soft penalty
            "reward.num_workers": r["reward_workers"],
            "reward.reward_manager.name": "dapo",
            "reward.custom_reward_function.path": str(reward),
            "reward.custom_reward_function.name": "compute_score",
            # the run's scorer, handed to compute_score by verl (not left to the environment)
            "+reward.custom_reward_function.reward_kwargs.scorer": spec_scorer(spec),
            "+reward.reward_kwargs.max_resp_len": rlen,
            "+reward.reward_kwargs.overlong_buffer_cfg.enable": r["overlong_buffer"] > 0,
            "+reward.reward_kwargs.overlong_buffer_cfg.len": r["overlong_buffer"],
            "+reward.reward_kwargs.overlong_buffer_cfg.penalty_factor": float(
                r["overlong_penalty_factor"]
            ),
            "+reward.reward_kwargs.overlong_buffer_cfg.log": True,
            # trainer: cluster shape, steps (never cut short by epochs), checkpoints, resume,
            # validation (off unless rl.validation.every says otherwise), logs
            "trainer.nnodes": int(spec.get("nodes", 1)),
            "trainer.n_gpus_per_node": int(spec.get("gpus_per_node", 8)),
            "trainer.total_training_steps": steps,
            "trainer.total_epochs": TOTAL_EPOCHS,
            "trainer.save_freq": r["save_every"],
            "trainer.test_freq": val_cfg["every"],
            "trainer.val_before_train": val_cfg["before_train"],
            "trainer.default_local_dir": str(checkpoint_dir(work_dir)),
            "trainer.resume_mode": "auto",
            "trainer.max_actor_ckpt_to_keep": r["keep_checkpoints"],
            "trainer.rollout_data_dir": str(Path(work_dir) / "rollouts")
            if r["save_rollouts"]
            else None,
            "trainer.logger": ["console"],
            "trainer.project_name": "deepmath",
            "trainer.experiment_name": name,
        }
    )
    return items


def worker_env(spec: Mapping[str, Any]) -> dict[str, str]:
    """Environment every verl worker needs for this run (inherited from the Ray raylets): the
    skip-update limit of deepmath.verl_skip_update, when the recipe has one."""
    limit = recipe(spec)["skip_grad_norm"]
    return {SKIP_UPDATE_ENV: repr(float(limit))} if limit is not None else {}


def verl_warmup_steps(warmup: int) -> int:
    """verl 0.9's ``lr_warmup_steps`` that gives the authors' schedule for their warm-up ``W``.

    The fork multiplies the lr by ``min(1, s / max(1, W))`` at scheduler step ``s`` (0 for the
    first update), verl 0.9 by ``s / W`` while ``s < W``, else 1. For ``W >= 1`` they agree; for
    ``W = 0`` (the 1.5B runs) the fork's first update runs at lr x 0 and verl's at the full lr,
    and verl's ``W = 1`` is exactly the fork's ``W = 0``: 0 for the first update, 1 after.
    """
    return max(1, int(warmup))


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
