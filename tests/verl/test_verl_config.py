"""What verl 0.9.1 itself makes of our overrides (runs verl in .venv-verl, on CPU).

One probe process (verl_probe.py) composes verl's ``ppo_trainer`` config with hydra the way
``main_ppo`` does, runs main_ppo's ``validate_config``, builds verl's config dataclasses, resolves
the DAPO filter metric like the V1 trainer, loads the reward function and the ``dapo`` reward
manager with verl's own loaders and scores samples through ``run_single`` (the reward loop's
call). A second process runs the real ``python -m verl.trainer.main_ppo ... --cfg job``.
"""

from __future__ import annotations

import copy
import subprocess
from functools import reduce

import pytest
import yaml

from deepmath import verl_recipe
from tests.verl.conftest import (
    PAPER_1_5B,
    PAPER_RUNS,
    PAPER_ZERO_MATH_7B,
    REPO,
    REWARD,
    overrides_of,
)

TIMEOUT = 300


def _overrides(spec, name="deepmath"):
    return overrides_of(spec, name)


def _get(tree: dict, dotted: str):
    return reduce(lambda node, key: node[key], dotted.split("."), tree)


@pytest.mark.parametrize("case", ["1.5b", "zero-math"])
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
    assert sorted(names) == sorted(f"config:{n}" for n in PAPER_RUNS) and len(names) == 4
    for name in names:
        assert "compose_error" not in probe[name], (name, probe[name].get("compose_error"))
        assert probe[name]["validated"] is True
        assert probe[name]["custom_reward_fn"]["name"] == "compute_score"
        # every run trains with the init model's own chat template (Zero-7B's is in the
        # tokenizer of zwhe99/Qwen2.5-7B-orz)
        assert _get(probe[name]["resolved"], "actor_rollout_ref.model.custom_chat_template") is None


def test_a_template_file_reaches_verl_unchanged(probe, verl_python, verl_env, tmp_path):
    """A run with ``chat_template`` (config/templates/orz.jinja, the offline copy of the ORZ
    prompt): newlines, quotes, braces and backslashes survive the hydra override grammar."""
    spec = copy.deepcopy(PAPER_1_5B)
    spec["chat_template"] = "config/templates/orz.jinja"
    cmd = verl_recipe.command(_overrides(spec), str(verl_python)) + ["--cfg", "job"]
    proc = subprocess.run(
        cmd, capture_output=True, text=True, env=verl_env, cwd=REPO, timeout=TIMEOUT
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    template = (REPO / "config" / "templates" / "orz.jinja").read_text()
    got = yaml.safe_load(proc.stdout)["actor_rollout_ref"]["model"]["custom_chat_template"]
    assert got == template


def test_unknown_key_is_an_error(probe):
    assert "clip_ratio_hi" in probe["typo"]["compose_error"]


def test_reference_model_only_with_a_kl_loss(probe):
    assert probe["1.5b"]["need_reference_policy"] is True  # KL loss needs the reference model
    assert probe["zero-math"]["need_reference_policy"] is False  # no KL: no reference model
    assert probe["config:deepmath-zero-7b"]["need_reference_policy"] is False
    assert probe["config:deepmath-omn-1.5b"]["need_reference_policy"] is True


@pytest.mark.parametrize("run", sorted(PAPER_RUNS))
def test_verl_builds_our_sampler_with_the_generation_budget(probe, run):
    """verl's own _build_replay_buffer loads deepmath/verl_sampler.py and gets the run's
    generation batch (in flight at most), and the round limit stops a step that never fills."""
    recipe = PAPER_RUNS[run]["recipe"]
    got = probe[f"config:{run}"]["sampler"]
    pps, gen, rounds = recipe["prompts_per_step"], recipe["gen_batch"], recipe["max_gen_rounds"]
    assert got["class"] == "BudgetedReplayBuffer"
    assert got["module_file"] == str(REPO / "scripts" / "deepmath" / "verl_sampler.py")
    assert got["filter_groups_metric"] == "acc"
    # verl's own in-flight cap (max_inflight_gen_batches x train_batch_size) is gen_batch
    assert got["max_inflight_gen_batches"] * got["train_batch_size"] == gen
    assert got["gen_batch_size"] == 1
    assert got["budget"] == {"gen_batch": gen, "limit": rounds * gen}
    assert got["granted"][0] == gen  # never more than gen_batch prompts in flight
    assert got["total"] == rounds * gen - pps  # the step's first batch was already out
    assert got["error"]["type"] == "DynamicSamplingExhausted"
    assert f"max_gen_rounds {rounds}" in got["error"]["message"]
    assert got["report_written"] is True


def test_nothing_set_that_main_ppo_ignores(probe):
    """Legacy top-level sections compose but main_ppo never migrates them: all must stay unset;
    V1 ignores max_num_gen_batches (warning) - none may be logged; every '+' key is consumed."""
    for case in ("1.5b", "zero-math"):
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
        # the only keys we add ('+'): reward.reward_kwargs.* (their effect is asserted below)
        # the policy's dropout (model.override_config is an open mapping in verl) and our
        # sampler's settings (sampler_kwargs: what verl hands a custom sampler)
        added = {o.split("=")[0] for o in probe_overrides(case) if o.startswith("+")}
        prefixes = (
            "+reward.reward_kwargs.",
            "+reward.custom_reward_function.reward_kwargs.",
            "+actor_rollout_ref.model.override_config.",
            "+trainer.v1.sampler.sampler_kwargs.",
        )
        assert added and all(k.startswith(prefixes) for k in added)
        override = resolved["actor_rollout_ref"]["model"]["override_config"]
        assert override == {"attention_dropout": 0.0, "embd_pdrop": 0.0, "resid_pdrop": 0.0}


def probe_overrides(case):
    return _overrides(PAPER_1_5B if case == "1.5b" else PAPER_ZERO_MATH_7B)


@pytest.mark.parametrize("case", ["1.5b", "zero-math"])
def test_verl_loads_and_calls_our_reward(probe, case):
    result = probe[case]
    assert result["custom_reward_fn"] == {
        "name": "compute_score",
        "file": str(REWARD.resolve()),
        "kwargs": {"scorer": "authors"},  # the run's scorer, whatever a worker's environment
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
    recipe = (PAPER_1_5B if case == "1.5b" else PAPER_ZERO_MATH_7B)["recipe"]
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


def test_the_gpu_check_run_is_a_valid_one_gpu_verl_config(probe):
    """scripts/gpu_check.py trains this spec on one GPU: it must pass verl's own checks."""
    got = probe["gpu-check"]
    assert "compose_error" not in got, got.get("compose_error")
    assert got["validated"] is True and got["need_reference_policy"] is True
    assert _get(got["resolved"], "trainer.n_gpus_per_node") == 1
    assert got["sampler"]["class"] == "BudgetedReplayBuffer"


def test_skip_update_above_the_limit_in_verls_own_optimizer_step(verl_python, verl_env, tmp_path):
    """The fork's max_grad_norm, on upstream verl: verl imports our module through its
    external-lib hook and its FSDP engine's optimizer step then skips norms above the limit."""
    got = _probe_mode("skip-update", verl_python, verl_env, tmp_path)
    assert got["limit"] == 5.0
    # norm 2 (above the clip at 1, under the limit): clipped to 1, then the step: lr 0.1 x 0.5
    assert got["small"]["grad_norm"] == pytest.approx(2.0) and got["small"]["moved"] > 0.04
    # norm 100 > 5: no step, gradients zeroed
    assert got["large"]["grad_norm"] == pytest.approx(100.0)
    assert got["large"]["moved"] == 0.0 and got["large"]["grads_zeroed"] is True
    # a non-finite norm: verl's own skip
    assert got["nan"]["moved"] == 0.0
    assert got["skipped"] == 1


def test_the_sampler_never_hangs_in_verls_own_sample_loop(verl_python, verl_env, tmp_path):
    """1,000 seeded runs of verl's ReplayBuffer.sample with our sampler and small budgets
    (queue replaced by a scripted one): each ends with full batches or with the round limit's
    error, none polls forever (verl spends refill credit the budget refused)."""
    got = _probe_mode("sampler-loop", verl_python, verl_env, tmp_path)
    assert got.get("hang", 0) == 0, got
    assert got.get("full", 0) > 0 and got.get("exhausted", 0) > 0, got


def _probe_mode(mode, verl_python, verl_env, tmp_path):
    """Run one verl_probe.py mode in .venv-verl; its JSON result."""
    import json

    from tests.verl.conftest import PROBE

    out = tmp_path / f"{mode}.json"
    proc = subprocess.run(
        [str(verl_python), str(PROBE), mode, str(out)],
        capture_output=True,
        text=True,
        env=verl_env,
        timeout=TIMEOUT,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(out.read_text())
