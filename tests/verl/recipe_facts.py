"""The authors' training recipes, as facts: every value their four runs trained with.

Sources (read, not copied):
- SCRIPTS: zwhe99/DeepMath at 0d97187, ``scripts/train/deepmath-{zero-7b,zero-math-7b,1.5b,
  omn-1.5b}.sh`` - the hydra overrides each run passed to their verl fork's ``main_ppo``. Where
  the paper's training table and a script differ (Zero-Math-7B: rollouts 16 in the table, 18 in
  the script; GPU memory 0.8 / 0.7), the script is what ran.
- FORK: the fork those scripts ran, zwhe99/verl at 05dc0fc (the DeepMath submodule pin):
  ``verl/trainer/config/ppo_trainer.yaml`` defaults for values a script leaves unset, and the
  reward files ``utils/reward_utils/reward_func.py`` (``</think>`` gate) and
  ``reward_func_2.py`` (exactly one ``\\boxed``, used by Zero-Math-7B only).
- PAPER: arXiv 2504.11456 v2, training table (init models, nodes x GPUs, steps).

Keys are the authors' own hydra keys (the fork's names, ``actor.`` = ``actor_rollout_ref.actor.``
and so on, spelled out), plus a few named facts that are not hydra keys (``init``,
``reward_gate``, ``train_data``, ``val_data``). test_conformance.py maps each one onto the
verl 0.9 config we compose (``MAPPING``) or onto our run config, and fails on any difference
that is not in ``deepmath.verl_recipe.DEVIATIONS``.
"""

from __future__ import annotations

from typing import Any

A = "actor_rollout_ref.actor"
R = "actor_rollout_ref.rollout"
F = "actor_rollout_ref.ref"
M = "actor_rollout_ref.model"

SOURCES = {
    "scripts": "zwhe99/DeepMath@0d97187 scripts/train/<run>.sh",
    "fork": "zwhe99/verl@05dc0fc verl/trainer/config/ppo_trainer.yaml (defaults)",
    "paper": "arXiv 2504.11456 v2, training table",
}

# Values every run shares (scripts, all four identical).
_COMMON: dict[str, Any] = {
    "data.prompt_key": "prompt",
    "data.truncation": "left",
    "algorithm.adv_estimator": "grpo",
    "algorithm.filter_groups.enable": True,
    "algorithm.filter_groups.max_num_gen_batches": 10,
    "algorithm.filter_groups.metric": "acc",
    f"{M}.use_remove_padding": True,
    f"{M}.enable_gradient_checkpointing": True,
    f"{M}.override_config.attention_dropout": 0.0,
    f"{M}.override_config.embd_pdrop": 0.0,
    f"{M}.override_config.resid_pdrop": 0.0,
    f"{A}.optim.lr": 1e-6,
    f"{A}.use_dynamic_bsz": True,
    f"{A}.entropy_coeff": 0.0,
    f"{A}.clip_ratio_low": 0.2,
    f"{A}.use_token_level_loss": True,
    f"{R}.tensor_model_parallel_size": 1,
    f"{R}.enable_chunked_prefill": True,
    f"{R}.disable_log_stats": False,
    f"{R}.enforce_eager": True,
    f"{F}.log_prob_use_dynamic_bsz": True,
    "custom_reward_function.overlong_buffer.enable": True,
    "custom_reward_function.overlong_buffer.penalty_factor": 1.0,
    "trainer.n_gpus_per_node": 8,
    "trainer.save_freq": 10,
    "trainer.save_rollout": True,
    "trainer.test_freq": -1,
    "trainer.val_before_train": False,
    "trainer.total_epochs": 999999,
    "trainer.logger": ["console", "wandb"],
    "train_data": "zwhe99/DeepMath-103K",  # all rows (the authors' train.parquet)
    "val_data": "math500",  # their test.parquet: MATH-500
}

# Fork defaults the scripts rely on (they set none of these).
FORK_DEFAULTS: dict[str, Any] = {
    f"{A}.strategy": "fsdp",
    f"{A}.ppo_epochs": 1,
    f"{A}.kl_loss_type": "low_var_kl",
    f"{A}.optim.lr_scheduler": "constant",  # the fork builds a constant schedule with warmup
    f"{A}.optim.lr_warmup_steps_ratio": 0.0,  # used when lr_warmup_steps < 0: 0 x steps
    # the train dataloader: shuffled by torch's RandomSampler, generator seeded data.seed
    # (ray_trainer reads data.get("seed", 1)), batches of gen_batch_size with drop_last
    "data.shuffle": True,
    "data.seed": 1,
    "data.epoch_order": "a new shuffle each epoch, cut into whole rounds of gen_batch_size; "
    "the last partial round of every epoch dropped",
    # dynamic sampling (ray_trainer.fit): rounds of gen_batch_size prompts, each generated and
    # scored whole; another round only while fewer than train_batch_size groups are kept; the
    # first train_batch_size kept groups (data order) train, the rest are discarded
    # (keep_all_batches False); the run fails after max_num_gen_batches rounds
    "algorithm.filter_groups.rounds": "whole rounds, first kept groups in data order",
    "algorithm.filter_groups.keep_all_batches": False,
    f"{R}.top_k": -1,
    "data.filter_overlong_prompts": False,
    "algorithm.use_kl_in_reward": False,  # the fork's in-reward KL never gets ref log-probs
    "algorithm.norm_adv_by_std_in_grpo": True,  # GRPO: (score - mean) / (std + eps)
    "max_model_len": "prompt + response",  # the fork's vLLM rollout: prompt + response length
}

_ZERO_7B = {
    "init": "zwhe99/Qwen2.5-7B-orz",
    "trainer.nnodes": 8,
    "trainer.total_training_steps": 500,
    "reward_gate": "think",  # reward_func.py
    "data.rm_system_prompt": False,
    "data.train_batch_size": 512,
    "data.gen_batch_size": 1536,
    "data.max_prompt_length": 2048,
    "data.max_response_length": 10240,
    "algorithm.kl_ctrl.kl_coef": 0.0,
    f"{A}.optim.lr_warmup_steps": 10,
    f"{A}.optim.weight_decay": 0.1,
    f"{A}.ppo_mini_batch_size": 32,
    f"{A}.ppo_max_token_len_per_gpu": 32768,
    f"{A}.use_kl_loss": False,
    f"{A}.kl_loss_coef": 0.0,
    f"{A}.grad_clip": 1.0,
    f"{A}.fsdp_config.param_offload": False,
    f"{A}.fsdp_config.optimizer_offload": False,
    f"{A}.clip_ratio_high": 0.28,
    f"{A}.max_grad_norm": None,  # no skip-update limit in this run
    f"{A}.ulysses_sequence_parallel_size": 1,
    f"{R}.log_prob_use_dynamic_bsz": True,
    f"{R}.log_prob_max_token_len_per_gpu": 131072,
    f"{R}.temperature": 1.0,
    f"{R}.top_p": 1.0,
    f"{R}.n": 16,
    f"{R}.gpu_memory_utilization": 0.8,
    f"{R}.max_num_batched_tokens": 12288,
    f"{F}.log_prob_max_token_len_per_gpu": 131072,
    f"{F}.fsdp_config.param_offload": False,
    "custom_reward_function.overlong_buffer.len": 2048,
}

_ZERO_MATH_7B = {
    **_ZERO_7B,
    "init": "Qwen/Qwen2.5-Math-7B",
    "trainer.nnodes": 12,
    "reward_gate": "one_box",  # reward_func_2.py
    "data.gen_batch_size": 3072,
    "data.max_prompt_length": 1024,
    "data.max_response_length": 3072,
    f"{A}.ppo_max_token_len_per_gpu": 16384,
    f"{A}.fsdp_config.param_offload": True,
    f"{A}.fsdp_config.optimizer_offload": True,
    f"{A}.max_grad_norm": 5.0,
    f"{R}.log_prob_max_token_len_per_gpu": 65536,
    f"{R}.n": 18,
    f"{R}.gpu_memory_utilization": 0.7,
    f"{R}.max_num_batched_tokens": 12288,
    f"{F}.log_prob_max_token_len_per_gpu": 65536,
    f"{F}.fsdp_config.param_offload": True,
    "custom_reward_function.overlong_buffer.len": 512,
}

_R1_1_5B = {
    "init": "deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B",
    "trainer.nnodes": 8,
    "trainer.total_training_steps": 1800,
    "reward_gate": "think",
    "data.rm_system_prompt": True,
    "data.train_batch_size": 128,
    "data.gen_batch_size": 384,
    "data.max_prompt_length": 2048,
    "data.max_response_length": 24576,
    "algorithm.kl_ctrl.kl_coef": 0.001,
    f"{A}.optim.lr_warmup_steps": -1,  # fork default: ratio 0.0, no warmup
    f"{A}.optim.weight_decay": 0.01,  # fork default
    f"{A}.ppo_mini_batch_size": 64,
    f"{A}.ppo_max_token_len_per_gpu": 16384,
    f"{A}.ulysses_sequence_parallel_size": 2,
    f"{A}.use_kl_loss": True,
    f"{A}.kl_loss_coef": 0.001,
    f"{A}.grad_clip": 1.0,  # fork default
    f"{A}.fsdp_config.param_offload": True,
    f"{A}.fsdp_config.optimizer_offload": True,
    f"{A}.clip_ratio_high": 0.27,
    f"{A}.max_grad_norm": 5.0,
    f"{R}.log_prob_use_dynamic_bsz": True,  # fork default: the actor's use_dynamic_bsz
    f"{R}.log_prob_max_token_len_per_gpu": 65536,
    f"{R}.temperature": 0.6,
    f"{R}.top_p": 1.0,  # fork default
    f"{R}.n": 16,
    f"{R}.gpu_memory_utilization": 0.8,
    f"{R}.max_num_batched_tokens": 25600,
    f"{F}.log_prob_max_token_len_per_gpu": 65536,
    f"{F}.fsdp_config.param_offload": True,
    "custom_reward_function.overlong_buffer.len": 4096,
}

_OMN_1_5B = {
    **_R1_1_5B,
    "init": "nvidia/OpenMath-Nemotron-1.5B",
    "trainer.nnodes": 12,
    "trainer.total_training_steps": 700,
    "data.gen_batch_size": 480,
    f"{R}.n": 18,
}

AUTHORS: dict[str, dict[str, Any]] = {
    run: {**_COMMON, **FORK_DEFAULTS, **values}
    for run, values in {
        "deepmath-zero-7b": _ZERO_7B,
        "deepmath-zero-math-7b": _ZERO_MATH_7B,
        "deepmath-1.5b": _R1_1_5B,
        "deepmath-omn-1.5b": _OMN_1_5B,
    }.items()
}


# --------------------------------------------------------------------------- the mapping
#
# Authors' key -> where the value lands with us. Kinds:
#   ("verl", key[, convert])  the composed verl 0.9 config (convert: authors' value -> verl's)
#   ("verl_all", (keys...), convert)  several verl keys that must all hold the value
#   ("run", getter)           our run config (getter(run_spec, config) -> value)
#   ("sampler",)              behaviour of deepmath.verl_sampler: the fact holds when the
#                             composed config loads it with the run's settings
# An authors' key missing here and from DEVIATIONS fails the test.


def _warmup(value: int) -> int:
    """verl 0.9's lr_warmup_steps for the fork's: -1 means 'ratio x steps' with ratio 0.0, so
    W = 0; the fork's schedule min(1, s / max(1, W)) gives lr x 0 to the first update even
    then, which verl 0.9 gives with W = 1 (test_lr_schedule.py steps both)."""
    return max(1, 0 if value < 0 else value)


def _hub(run: dict, config: dict) -> str:
    return config["models"][run["init"]]["hub"]["repo_id"]


MAPPING: dict[str, tuple] = {
    "data.prompt_key": ("verl", "data.prompt_key"),
    "data.truncation": ("verl", "data.truncation"),
    "data.train_batch_size": ("verl", "data.train_batch_size"),
    "data.gen_batch_size": ("verl", "trainer.v1.sampler.sampler_kwargs.gen_batch"),
    "data.max_prompt_length": ("verl_all", ("data.max_prompt_length", f"{R}.prompt_length")),
    "data.max_response_length": (
        "verl_all",
        ("data.max_response_length", f"{R}.response_length", "reward.reward_kwargs.max_resp_len"),
    ),
    "data.filter_overlong_prompts": ("verl", "data.filter_overlong_prompts"),
    "data.rm_system_prompt": ("run", lambda run, config: not run["system_prompt"]),
    "algorithm.adv_estimator": ("verl", "algorithm.adv_estimator"),
    "algorithm.kl_ctrl.kl_coef": ("verl", "algorithm.kl_ctrl.kl_coef"),
    "algorithm.use_kl_in_reward": ("verl", "algorithm.use_kl_in_reward"),
    "algorithm.norm_adv_by_std_in_grpo": ("verl", "algorithm.norm_adv_by_std_in_grpo"),
    "algorithm.filter_groups.enable": ("verl", "algorithm.filter_groups.enable"),
    "algorithm.filter_groups.max_num_gen_batches": (
        "verl",
        "trainer.v1.sampler.sampler_kwargs.max_gen_rounds",
    ),
    "algorithm.filter_groups.metric": (
        "verl_all",
        ("algorithm.filter_groups.metric", "trainer.v1.sampler.sampler_kwargs.filter_metric"),
    ),
    f"{M}.use_remove_padding": ("verl", f"{M}.use_remove_padding"),
    f"{M}.enable_gradient_checkpointing": ("verl", f"{M}.enable_gradient_checkpointing"),
    f"{M}.override_config.attention_dropout": ("verl", f"{M}.override_config.attention_dropout"),
    f"{M}.override_config.embd_pdrop": ("verl", f"{M}.override_config.embd_pdrop"),
    f"{M}.override_config.resid_pdrop": ("verl", f"{M}.override_config.resid_pdrop"),
    f"{A}.optim.lr": ("verl", f"{A}.optim.lr"),
    f"{A}.optim.lr_scheduler": ("verl", f"{A}.optim.lr_scheduler_type"),
    f"{A}.optim.lr_warmup_steps": ("verl", f"{A}.optim.lr_warmup_steps", _warmup),
    f"{A}.optim.lr_warmup_steps_ratio": ("verl", f"{A}.optim.lr_warmup_steps_ratio"),
    "data.shuffle": ("verl", "data.shuffle"),
    "data.seed": ("verl", "data.seed"),
    # our sampler does what the fork's loop did (tests/verl/test_sampler.py pins it): the
    # composed config must load it
    "algorithm.filter_groups.rounds": ("sampler",),
    "algorithm.filter_groups.keep_all_batches": ("sampler",),
    f"{A}.optim.weight_decay": ("verl", f"{A}.optim.weight_decay"),
    f"{A}.ppo_mini_batch_size": ("verl", f"{A}.ppo_mini_batch_size"),
    f"{A}.ppo_epochs": ("verl", f"{A}.ppo_epochs"),
    f"{A}.use_dynamic_bsz": ("verl", f"{A}.use_dynamic_bsz"),
    f"{A}.ppo_max_token_len_per_gpu": ("verl", f"{A}.ppo_max_token_len_per_gpu"),
    f"{A}.use_kl_loss": ("verl", f"{A}.use_kl_loss"),
    f"{A}.kl_loss_coef": ("verl", f"{A}.kl_loss_coef"),
    f"{A}.kl_loss_type": ("verl", f"{A}.kl_loss_type"),
    f"{A}.entropy_coeff": ("verl", f"{A}.entropy_coeff"),
    f"{A}.grad_clip": ("verl", f"{A}.optim.clip_grad"),
    f"{A}.fsdp_config.param_offload": ("verl", f"{A}.fsdp_config.param_offload"),
    f"{A}.fsdp_config.optimizer_offload": ("verl", f"{A}.fsdp_config.optimizer_offload"),
    f"{A}.clip_ratio_low": ("verl", f"{A}.clip_ratio_low"),
    f"{A}.clip_ratio_high": ("verl", f"{A}.clip_ratio_high"),
    f"{A}.ulysses_sequence_parallel_size": (
        "verl_all",
        (
            f"{A}.ulysses_sequence_parallel_size",
            f"{A}.fsdp_config.ulysses_sequence_parallel_size",
            f"{F}.ulysses_sequence_parallel_size",
            f"{F}.fsdp_config.ulysses_sequence_parallel_size",
        ),
    ),
    f"{R}.log_prob_use_dynamic_bsz": ("verl", f"{R}.log_prob_use_dynamic_bsz"),
    f"{R}.log_prob_max_token_len_per_gpu": ("verl", f"{R}.log_prob_max_token_len_per_gpu"),
    f"{R}.temperature": ("verl", f"{R}.temperature"),
    f"{R}.top_p": ("verl", f"{R}.top_p"),
    f"{R}.top_k": ("verl", f"{R}.top_k"),
    f"{R}.n": ("verl_all", (f"{R}.n", f"{A}.rollout_n")),
    f"{R}.tensor_model_parallel_size": ("verl", f"{R}.tensor_model_parallel_size"),
    f"{R}.gpu_memory_utilization": ("verl", f"{R}.gpu_memory_utilization"),
    f"{R}.enable_chunked_prefill": ("verl", f"{R}.enable_chunked_prefill"),
    f"{R}.max_num_batched_tokens": ("verl", f"{R}.max_num_batched_tokens"),
    f"{R}.disable_log_stats": ("verl", f"{R}.disable_log_stats"),
    f"{R}.enforce_eager": ("verl", f"{R}.enforce_eager"),
    f"{F}.log_prob_use_dynamic_bsz": ("verl", f"{F}.log_prob_use_dynamic_bsz"),
    f"{F}.log_prob_max_token_len_per_gpu": ("verl", f"{F}.log_prob_max_token_len_per_gpu"),
    f"{F}.fsdp_config.param_offload": ("verl", f"{F}.fsdp_config.param_offload"),
    "max_model_len": ("max_model_len",),
    # fork-only in verl: our external_lib wraps the engine's optimizer step, the limit goes to
    # the workers' environment
    f"{A}.max_grad_norm": ("skip_update",),
    "custom_reward_function.overlong_buffer.enable": (
        "verl",
        "reward.reward_kwargs.overlong_buffer_cfg.enable",
    ),
    "custom_reward_function.overlong_buffer.len": (
        "verl",
        "reward.reward_kwargs.overlong_buffer_cfg.len",
    ),
    "custom_reward_function.overlong_buffer.penalty_factor": (
        "verl",
        "reward.reward_kwargs.overlong_buffer_cfg.penalty_factor",
    ),
    "trainer.n_gpus_per_node": ("verl", "trainer.n_gpus_per_node"),
    "trainer.nnodes": ("verl", "trainer.nnodes"),
    "trainer.total_training_steps": ("verl", "trainer.total_training_steps"),
    "trainer.total_epochs": ("verl", "trainer.total_epochs"),
    "trainer.save_freq": ("verl", "trainer.save_freq"),
    "trainer.save_rollout": ("verl", "trainer.rollout_data_dir", lambda on: "set" if on else None),
    "trainer.test_freq": ("verl", "trainer.test_freq"),
    "trainer.val_before_train": ("verl", "trainer.val_before_train"),
    "init": ("run", _hub),
    "reward_gate": ("run", lambda run, config: run["reward_gate"]),
    "train_data": (
        "run",
        lambda run, config: config["rl"]["published"]["load"]["path"],
    ),
    "val_data": ("run", lambda run, config: config["rl"]["validation"]["benchmark"]),
}
