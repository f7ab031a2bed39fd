"""What verl 0.9.1 itself makes of our overrides (runs verl in .venv-verl, on CPU).

One probe process (verl_probe.py) composes verl's ``ppo_trainer`` config with hydra the way
``main_ppo`` does, runs main_ppo's ``validate_config``, builds verl's config dataclasses, resolves
the DAPO filter metric like the V1 trainer, loads the reward function and the ``dapo`` reward
manager with verl's own loaders and scores samples through ``run_single`` (the reward loop's
call). A second process runs the real ``python -m verl.trainer.main_ppo ... --cfg job``.
"""

from __future__ import annotations

import json
import subprocess
from functools import reduce

import pytest
import yaml

from deepmath import verl_recipe
from tests.verl.conftest import PAPER_1_5B, PAPER_ZERO_7B, PATHS, PROBE, REPO, REWARD

TIMEOUT = 300
THINK = {"reward_gate": "think"}
ONE_BOX = {"reward_gate": "one_box"}


def _samples(max_resp: int, buffer: int, gate: dict) -> list[dict]:
    over = max_resp - buffer + buffer // 2  # half-way into the overlong buffer: penalty -0.5
    tail = "</think> \\boxed{4}" if gate is THINK else "\\boxed{4}"
    good = "2+2 = 4. </think> The answer is \\boxed{4}." if gate is THINK else "So \\boxed{4}."
    return [
        {"response": good, "ground_truth": "4", "extra_info": gate},
        {"response": "Hmm. </think> \\boxed{5}", "ground_truth": "4", "extra_info": gate},
        {
            "response": "The answer is \\boxed{4}."
            if gate is THINK
            else "\\boxed{4} or \\boxed{4}",
            "ground_truth": "4",
            "extra_info": gate,
        },
        {"response": " " * (over - len(tail)) + tail, "ground_truth": "4", "extra_info": gate},
    ]


def _overrides(spec, name="deepmath"):
    return verl_recipe.build_overrides(spec, **PATHS, name=name)


def _config_runs() -> dict:
    from deepmath.config import load_config, validate_config

    config = load_config([REPO / "config" / "config.yaml"])
    validate_config(config)
    runs = config.get("rl", {}).get("runs", {})
    return {n: r for n, r in runs.items() if r["backend"] == "verl"}


@pytest.fixture(scope="module")
def probe(verl_python, verl_env, tmp_path_factory):
    r15, z7 = PAPER_1_5B["recipe"], PAPER_ZERO_7B["recipe"]
    legacy = [o for o in _overrides(PAPER_1_5B) if not o.startswith("reward.custom_reward_")]
    legacy += [f"custom_reward_function.path={REWARD}", "custom_reward_function.name=compute_score"]
    cases = {
        "1.5b": {
            "overrides": _overrides(PAPER_1_5B),
            "samples": _samples(r15["max_response_length"], r15["overlong_buffer"], THINK),
        },
        "zero7b": {
            "overrides": _overrides(PAPER_ZERO_7B),
            "samples": _samples(z7["max_response_length"], z7["overlong_buffer"], ONE_BOX),
        },
        "legacy": {"overrides": legacy, "samples": _samples(24576, 4096, THINK)[:1]},
        "typo": {"overrides": [*_overrides(PAPER_1_5B), "actor_rollout_ref.actor.clip_ratio_hi=1"]},
    }
    for name, run in _config_runs().items():
        cases[f"config:{name}"] = {"overrides": _overrides(run, name)}
    tmp = tmp_path_factory.mktemp("verl-probe")
    (tmp / "request.json").write_text(json.dumps(cases))
    proc = subprocess.run(
        [str(verl_python), str(PROBE), "config", str(tmp / "request.json"), str(tmp / "out.json")],
        capture_output=True,
        text=True,
        env=verl_env,
        timeout=TIMEOUT,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    out = json.loads((tmp / "out.json").read_text())
    for name, result in out.items():
        assert "error" not in result, f"{name}: {result.get('trace', result['error'])}"
    return out


def _get(tree: dict, dotted: str):
    return reduce(lambda node, key: node[key], dotted.split("."), tree)


@pytest.mark.parametrize("case", ["1.5b", "zero7b"])
def test_composes_and_passes_verl_validation(probe, case):
    result = probe[case]
    assert "compose_error" not in result, result.get("compose_error")
    assert result["validated"] is True
    assert result["dataclasses"] == {
        "actor_rollout_ref.actor": "FSDPActorConfig",
        "actor_rollout_ref.rollout": "RolloutConfig",
        "algorithm": "AlgoConfig",
    }
    assert result["need_critic"] is False  # GRPO: no critic


def test_config_yaml_runs_compose(probe):
    names = [n for n in probe if n.startswith("config:")]
    if not names:
        pytest.skip("config/config.yaml declares no verl run")
    for name in names:
        assert "compose_error" not in probe[name], (name, probe[name].get("compose_error"))
        assert probe[name]["validated"] is True
        assert probe[name]["custom_reward_fn"]["name"] == "compute_score"
    # Zero-7B trains with the ORZ prompt: the template reaches verl's model config unchanged
    # (newlines, quotes, braces and backslashes survive the hydra override grammar)
    zero = probe["config:deepmath-zero-7b"]["resolved"]
    template = (REPO / "config" / "templates" / "orz.jinja").read_text()
    assert _get(zero, "actor_rollout_ref.model.custom_chat_template") == template
    one_five = probe["config:deepmath-1.5b"]["resolved"]
    assert _get(one_five, "actor_rollout_ref.model.custom_chat_template") is None


def test_unknown_key_is_an_error(probe):
    assert "clip_ratio_hi" in probe["typo"]["compose_error"]


# Where each recipe item lands in verl's resolved config (incl. values verl interpolates).
RESOLVED_1_5B = {
    "actor_rollout_ref.actor.optim.lr": 1e-6,
    "actor_rollout_ref.actor.optim.lr_warmup_steps": 0,
    "actor_rollout_ref.actor.optim.lr_warmup_steps_ratio": 0.0,
    "actor_rollout_ref.actor.optim.lr_scheduler_type": "constant",
    "actor_rollout_ref.actor.optim.weight_decay": 0.01,
    "data.train_batch_size": 128,
    "data.gen_batch_size": None,
    "algorithm.filter_groups.enable": True,
    "algorithm.filter_groups.metric": "acc",
    "algorithm.filter_groups.max_inflight_gen_batches": 3,
    "algorithm.filter_groups.max_num_gen_batches": 0,
    "actor_rollout_ref.actor.ppo_mini_batch_size": 64,
    "actor_rollout_ref.rollout.n": 16,
    "actor_rollout_ref.actor.rollout_n": 16,
    "actor_rollout_ref.rollout.temperature": 0.6,
    "actor_rollout_ref.rollout.prompt_length": 2048,
    "actor_rollout_ref.rollout.response_length": 24576,
    "reward.reward_kwargs.max_resp_len": 24576,
    "reward.reward_kwargs.overlong_buffer_cfg.len": 4096,
    "reward.reward_kwargs.overlong_buffer_cfg.penalty_factor": 1.0,
    "actor_rollout_ref.actor.clip_ratio_low": 0.2,
    "actor_rollout_ref.actor.clip_ratio_high": 0.27,
    "actor_rollout_ref.actor.loss_agg_mode": "token-mean",
    "actor_rollout_ref.actor.use_kl_loss": True,
    "actor_rollout_ref.actor.kl_loss_type": "low_var_kl",
    "actor_rollout_ref.actor.kl_loss_coef": 1e-3,
    "algorithm.use_kl_in_reward": False,
    "actor_rollout_ref.actor.entropy_coeff": 0.0,
    "actor_rollout_ref.actor.ppo_epochs": 1,
    "actor_rollout_ref.actor.use_dynamic_bsz": True,
    "actor_rollout_ref.ref.log_prob_use_dynamic_bsz": True,
    "actor_rollout_ref.rollout.log_prob_use_dynamic_bsz": True,
    "actor_rollout_ref.ref.strategy": "fsdp2",
    "actor_rollout_ref.rollout.name": "vllm",
    "actor_rollout_ref.rollout.tensor_model_parallel_size": 1,
    "actor_rollout_ref.rollout.gpu_memory_utilization": 0.7,
    "reward.reward_manager.name": "dapo",
    "reward.custom_reward_function.path": str(REWARD),
    "reward.custom_reward_function.name": "compute_score",
    "trainer.nnodes": 8,
    "trainer.n_gpus_per_node": 8,
    "trainer.total_training_steps": 1800,
    "trainer.save_freq": 50,
    "trainer.resume_mode": "auto",
    "trainer.default_local_dir": PATHS["work_dir"] + "/checkpoints",
    "trainer.logger": ["console"],
    "trainer.use_v1": True,
    "trainer.v1.trainer_mode": "sync",
}


def test_recipe_lands_on_verl_keys(probe):
    resolved = probe["1.5b"]["resolved"]
    for key, value in RESOLVED_1_5B.items():
        assert _get(resolved, key) == value, key
    zero = probe["zero7b"]["resolved"]
    assert _get(zero, "actor_rollout_ref.actor.use_kl_loss") is False
    assert _get(zero, "actor_rollout_ref.actor.optim.lr_warmup_steps") == 10
    assert _get(zero, "actor_rollout_ref.actor.clip_ratio_high") == 0.28
    assert _get(zero, "reward.reward_kwargs.overlong_buffer_cfg.len") == 2048
    assert _get(zero, "algorithm.filter_groups.max_inflight_gen_batches") == 3
    assert probe["1.5b"]["need_reference_policy"] is True  # KL loss needs the reference model
    assert probe["zero7b"]["need_reference_policy"] is False  # no KL: no reference model


def test_nothing_set_that_main_ppo_ignores(probe):
    """Legacy top-level sections compose but main_ppo never migrates them: all must stay unset;
    V1 ignores max_num_gen_batches (warning) - none may be logged; every '+' key is consumed."""
    for case in ("1.5b", "zero7b"):
        resolved = probe[case]["resolved"]
        assert all(v is None for v in resolved["custom_reward_function"].values())
        assert all(v is None for v in resolved["sandbox_fusion"].values())
        legacy_rm = resolved["reward_model"]
        flat = [v for v in legacy_rm.values() if not isinstance(v, dict)]
        flat += [v for sub in legacy_rm.values() if isinstance(sub, dict) for v in sub.values()]
        assert all(v is None for v in flat)
        assert probe[case]["filter_warnings"] == []
        assert probe[case]["filter_metric"] == "acc"
        for sample in probe[case]["samples"]:  # the V1 replay buffer needs the metric per sample
            assert "acc" in sample["extra"], sample
        # the only keys we add ('+') are reward.reward_kwargs.*; their effect is asserted below
        added = {o.split("=")[0] for o in probe_overrides(case) if o.startswith("+")}
        assert added and all(k.startswith("+reward.reward_kwargs.") for k in added)


def probe_overrides(case):
    return _overrides(PAPER_1_5B if case == "1.5b" else PAPER_ZERO_7B)


@pytest.mark.parametrize("case", ["1.5b", "zero7b"])
def test_verl_loads_and_calls_our_reward(probe, case):
    result = probe[case]
    assert result["custom_reward_fn"] == {
        "name": "compute_score",
        "file": str(REWARD.resolve()),
        "kwargs": {},
    }
    assert result["reward_manager"] == "DAPORewardManager"
    assert result["manager_compute_score"] == {
        "name": "compute_score",
        "file": str(REWARD.resolve()),
    }
    good, wrong, bad_format, overlong = result["samples"]
    assert good["reward"] == 1.0 and good["extra"]["acc"] is True
    assert wrong["reward"] == -1.0 and wrong["extra"]["acc"] is False
    assert bad_format["reward"] == -1.0 and bad_format["extra"]["reason"] == "format"
    # the dapo manager's overlong soft penalty, from reward.reward_kwargs
    recipe = (PAPER_1_5B if case == "1.5b" else PAPER_ZERO_7B)["recipe"]
    buffer, max_len = recipe["overlong_buffer"], recipe["max_response_length"]
    penalty = min(-(overlong["tokens"] - (max_len - buffer)) / buffer, 0.0)
    assert penalty == pytest.approx(-0.5, abs=0.01)
    assert overlong["extra"]["score"] == 1.0
    assert overlong["reward"] == pytest.approx(1.0 + penalty)
    assert overlong["extra"]["overlong"] is True


def test_legacy_reward_key_is_not_picked_up(probe):
    """The trap: top-level custom_reward_function.* composes fine, but main_ppo's reward loader
    never sees it - verl's default scorer runs instead of ours (here it refuses the data source;
    for a data source it knows it would silently score with its own rules)."""
    result = probe["legacy"]
    assert result["resolved"]["custom_reward_function"]["path"] == str(REWARD)
    assert result["resolved"]["reward"]["custom_reward_function"]["path"] is None
    assert result["custom_reward_fn"] is None
    assert result["manager_compute_score"]["name"] == "default_compute_score"
    assert "deepmath" not in result["manager_compute_score"]["file"]
    assert "NotImplementedError" in result["samples"][0]["error"]


def test_main_ppo_cli_composes_the_same_config(probe, verl_python, verl_env, tmp_path):
    """`python -m verl.trainer.main_ppo <overrides> --cfg job` (the real entry point, without
    GPUs) parses our exact strings and prints the config the probe composed."""
    cmd = verl_recipe.command(_overrides(PAPER_1_5B), str(verl_python)) + ["--cfg", "job"]
    proc = subprocess.run(
        cmd, capture_output=True, text=True, env=verl_env, cwd=tmp_path, timeout=TIMEOUT
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert yaml.safe_load(proc.stdout) == yaml.safe_load(probe["1.5b"]["yaml"])
