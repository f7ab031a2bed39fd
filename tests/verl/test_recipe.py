"""The override builder (deepmath.verl_recipe) and train_verl's pure parts, in the main venv.

What verl itself makes of these overrides is checked in test_verl_config.py (in .venv-verl).
"""

from __future__ import annotations

import copy
import json
import subprocess
import sys

import pandas as pd
import pytest

from deepmath import verl_recipe
from deepmath.io import DeepmathError
from deepmath.train_verl import check_reward_gate, finish, latest_step, load_spec, verl_python
from tests.verl.conftest import PAPER_1_5B, PAPER_ZERO_7B, PATHS, REPO


def items(spec, **kw):
    return verl_recipe.override_items(spec, **{**PATHS, **kw})


def overrides(spec, **kw):
    return verl_recipe.build_overrides(spec, **{**PATHS, **kw})


# The verl key of every recipe item (REFERENCE.md's table) for DeepMath-1.5B.
EXPECTED_1_5B = {
    "actor_rollout_ref.actor.optim.lr": 1e-6,
    "actor_rollout_ref.actor.optim.lr_warmup_steps": 0,
    "actor_rollout_ref.actor.optim.lr_warmup_steps_ratio": 0.0,
    "actor_rollout_ref.actor.optim.lr_scheduler_type": "constant",
    "actor_rollout_ref.actor.optim.weight_decay": 0.01,
    "data.train_batch_size": 128,
    "algorithm.filter_groups.enable": True,
    "algorithm.filter_groups.metric": "acc",
    "algorithm.filter_groups.max_inflight_gen_batches": 3,
    "actor_rollout_ref.actor.ppo_mini_batch_size": 64,
    "actor_rollout_ref.rollout.n": 16,
    "actor_rollout_ref.rollout.temperature": 0.6,
    "data.max_prompt_length": 2048,
    "data.max_response_length": 24576,
    "+reward.reward_kwargs.max_resp_len": 24576,
    "+reward.reward_kwargs.overlong_buffer_cfg.enable": True,
    "+reward.reward_kwargs.overlong_buffer_cfg.len": 4096,
    "+reward.reward_kwargs.overlong_buffer_cfg.penalty_factor": 1.0,
    "actor_rollout_ref.actor.clip_ratio_low": 0.2,
    "actor_rollout_ref.actor.clip_ratio_high": 0.27,
    "actor_rollout_ref.actor.use_kl_loss": True,
    "actor_rollout_ref.actor.kl_loss_type": "low_var_kl",
    "actor_rollout_ref.actor.kl_loss_coef": 1e-3,
    "algorithm.use_kl_in_reward": False,
    "actor_rollout_ref.actor.entropy_coeff": 0.0,
    "actor_rollout_ref.actor.ppo_epochs": 1,
    "actor_rollout_ref.actor.loss_agg_mode": "token-mean",
    "trainer.save_freq": 50,
    "actor_rollout_ref.rollout.tensor_model_parallel_size": 1,
    "actor_rollout_ref.rollout.gpu_memory_utilization": 0.7,
    "actor_rollout_ref.rollout.name": "vllm",
    "algorithm.adv_estimator": "grpo",
    "reward.reward_manager.name": "dapo",
    "reward.custom_reward_function.path": PATHS["reward"],
    "reward.custom_reward_function.name": "compute_score",
    "trainer.nnodes": 8,
    "trainer.n_gpus_per_node": 8,
    "trainer.total_training_steps": 1800,
    "trainer.total_epochs": 1800,
    "trainer.default_local_dir": PATHS["work_dir"] + "/checkpoints",
    "trainer.resume_mode": "auto",
    "trainer.logger": ["console"],
    "actor_rollout_ref.model.path": PATHS["model_dir"],
    "data.train_files": PATHS["train"],
    "data.val_files": PATHS["val"],
}


def test_paper_1_5b_maps_every_item():
    got = items(PAPER_1_5B)
    for key, value in EXPECTED_1_5B.items():
        assert got[key] == value, key


def test_paper_zero_7b_maps_every_item():
    got = items(PAPER_ZERO_7B)
    expected = {
        **{
            k: v for k, v in EXPECTED_1_5B.items() if not k.startswith("actor_rollout_ref.actor.kl")
        },
        "actor_rollout_ref.actor.optim.lr_warmup_steps": 10,
        "actor_rollout_ref.actor.optim.weight_decay": 0.1,
        "data.train_batch_size": 512,
        "algorithm.filter_groups.max_inflight_gen_batches": 3,  # 1536 / 512
        "actor_rollout_ref.actor.ppo_mini_batch_size": 32,
        "actor_rollout_ref.rollout.temperature": 1.0,
        "data.max_response_length": 10240,
        "+reward.reward_kwargs.max_resp_len": 10240,
        "+reward.reward_kwargs.overlong_buffer_cfg.len": 2048,
        "actor_rollout_ref.actor.clip_ratio_high": 0.28,
        "actor_rollout_ref.actor.use_kl_loss": False,  # no KL: no reference model either
        "actor_rollout_ref.rollout.tensor_model_parallel_size": 2,
        "trainer.total_training_steps": 500,
        "trainer.total_epochs": 500,
    }
    for key, value in expected.items():
        assert got[key] == value, key
    assert not any(".kl_loss_" in key for key in got)
    assert got["algorithm.use_kl_in_reward"] is False


@pytest.mark.parametrize("item", verl_recipe.REQUIRED)
def test_every_recipe_item_reaches_the_overrides(item):
    """No recipe item is silently dropped by the builder: changing it changes the overrides."""
    base = copy.deepcopy(PAPER_1_5B)
    changed = copy.deepcopy(PAPER_1_5B)
    value = base["recipe"][item]
    bumps = {
        "prompts_per_step": 192,  # 384 and 64 still fit
        "gen_batch": 512,
        "clip_low": 0.1,
        "mini_batch": 32,
        "rollout_n": 8,
        "tensor_parallel": 2,
        "kl": {"type": "k2", "coef": 0.01},
        "warmup_steps": 5,
        "entropy_coeff": 0.001,
        "ppo_epochs": 2,
        "gpu_memory_utilization": 0.5,
        "overlong_buffer": 1024,
    }
    if item == "prompts_per_step":
        changed["recipe"]["gen_batch"] = 384  # must stay a multiple
    changed["recipe"][item] = bumps[item] if item in bumps else value * 2
    assert overrides(changed) != overrides(base)


def test_reward_hook_and_no_ignored_keys():
    out = overrides(PAPER_1_5B)
    keys = [verl_recipe.override_key(o) for o in out]
    assert "reward.custom_reward_function.path" in keys
    assert f"reward.custom_reward_function.path={PATHS['reward']}" in out
    # the legacy top-level keys main_ppo never reads, and V1-ignored knobs
    for key in keys:
        assert verl_recipe.ignored_reason(key) is None, key
    # every key we add with "+" is one the dapo reward manager reads (proven in .venv-verl)
    assert {o.split("=")[0] for o in out if o.startswith("+")} == {
        "+reward.reward_kwargs.max_resp_len",
        "+reward.reward_kwargs.overlong_buffer_cfg.enable",
        "+reward.reward_kwargs.overlong_buffer_cfg.len",
        "+reward.reward_kwargs.overlong_buffer_cfg.penalty_factor",
        "+reward.reward_kwargs.overlong_buffer_cfg.log",
    }
    assert len(keys) == len(set(keys))


def test_verl_overrides_come_last_and_legacy_keys_are_refused():
    spec = copy.deepcopy(PAPER_1_5B)
    spec["verl_overrides"] = ["actor_rollout_ref.ref.fsdp_config.param_offload=true"]
    assert overrides(spec)[-1] == "actor_rollout_ref.ref.fsdp_config.param_offload=true"
    for bad in (
        "custom_reward_function.path=/x/reward.py",
        "+reward_model.reward_kwargs.overlong_buffer_cfg.len=10",
        "algorithm.filter_groups.max_num_gen_batches=10",
        "data.gen_batch_size=384",
        "sandbox_fusion.url=http://x",
    ):
        spec["verl_overrides"] = [bad]
        with pytest.raises(DeepmathError, match="no effect"):
            overrides(spec)
    spec["verl_overrides"] = ["not an override"]
    with pytest.raises(DeepmathError, match="not a hydra override"):
        overrides(spec)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"gen_batch": 200}, "multiple of prompts_per_step"),
        ({"gen_batch": 64}, "multiple of prompts_per_step"),
        ({"mini_batch": 48}, "multiple of mini_batch"),
        ({"clip_high": 0.1}, "clip_high must be >= clip_low"),
        ({"kl": {"type": "nope", "coef": 0.1}}, "kl.type"),
        ({"kl": {"coef": 0.1}}, "kl must be null"),
        ({"overlong_buffer": 24576}, "overlong_buffer must be <"),
        ({"lr": 0}, "lr must be > 0"),
        ({"rollout_n": 0}, "rollout_n must be an integer"),
        ({"gpu_memory_utilization": 1.5}, "gpu_memory_utilization"),
        ({"filter_metric": "score_max"}, "filter_metric"),
        ({"lerning_rate": 1e-6}, "unknown item"),
        (
            {"prompts_per_step": 100, "gen_batch": 300, "mini_batch": 50, "rollout_n": 3},
            "by the number",
        ),
    ],
)
def test_bad_recipes_fail_with_the_key(change, message):
    spec = copy.deepcopy(PAPER_1_5B)
    spec["recipe"].update(change)
    with pytest.raises(DeepmathError, match=message):
        overrides(spec)


def test_missing_items_are_named():
    spec = copy.deepcopy(PAPER_1_5B)
    del spec["recipe"]["clip_high"], spec["recipe"]["kl"]
    with pytest.raises(DeepmathError, match="missing clip_high, kl"):
        overrides(spec)


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (None, "null"),
        (True, "true"),
        (3, "3"),
        (1e-6, "1e-06"),
        ("/a/b-c_d.parquet", "/a/b-c_d.parquet"),
        ("/runs/my run,1/x", "'/runs/my run,1/x'"),
        ("it's", "'it\\'s'"),
        ("null", "'null'"),
        ("123", "'123'"),
        (["console"], "[console]"),
    ],
)
def test_hydra_values(value, text):
    assert verl_recipe.hydra_value(value) == text


HOSTILE = [
    "a\\nb",  # a jinja '\n' literal: the backslash must stay single
    "a\\'b",  # backslash before a quote
    "ends in a backslash\\",
    "x\\\\'y",
    "{{ '\\n' + m['c'] }}\nline two {% if x %}",
    'double "quotes"',
    (REPO / "config" / "templates" / "orz.jinja").read_text(),
]


def test_hydra_reads_back_every_string(verl_python, verl_env):
    """verl's own hydra parses each quoted value back to the exact string."""
    code = (
        "import json, sys\n"
        "from hydra.core.override_parser.overrides_parser import OverridesParser\n"
        "p = OverridesParser.create()\n"
        "print(json.dumps([p.parse_override(o).value() for o in json.load(sys.stdin)]))\n"
    )
    overrides = [f"k={verl_recipe.hydra_value(v)}" for v in HOSTILE]
    proc = subprocess.run(
        [str(verl_python), "-c", code],
        input=json.dumps(overrides),
        capture_output=True,
        text=True,
        env=verl_env,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads(proc.stdout) == HOSTILE
    with pytest.raises(DeepmathError, match="contains"):
        verl_recipe.hydra_value("${oc.env:HOME}")


def test_optional_items():
    spec = copy.deepcopy(PAPER_1_5B)
    spec["recipe"].update(keep_checkpoints=3, test_freq=100, strategy="fsdp", top_p=0.95)
    got = items(spec)
    assert got["trainer.max_actor_ckpt_to_keep"] == 3
    assert got["trainer.test_freq"] == 100
    assert got["actor_rollout_ref.actor.strategy"] == "fsdp"
    assert got["actor_rollout_ref.rollout.top_p"] == 0.95
    assert items(PAPER_1_5B)["actor_rollout_ref.actor.strategy"] == "fsdp2"


def test_config_yaml_verl_runs_build():
    """Whatever verl runs config/config.yaml declares must turn into overrides."""
    from deepmath.config import load_config, validate_config

    config = load_config([REPO / "config" / "config.yaml"])
    validate_config(config)
    runs = {n: r for n, r in config.get("rl", {}).get("runs", {}).items() if r["backend"] == "verl"}
    if not runs:
        pytest.skip("config/config.yaml declares no verl run yet")
    for name, run in runs.items():
        out = verl_recipe.build_overrides(run, **PATHS, name=name)
        assert "actor_rollout_ref.rollout.name=vllm" in out


# --------------------------------------------------------------------------- train_verl


def test_dry_run_prints_the_command(tmp_path, venv_env):
    spec = json.dumps(PAPER_1_5B)
    base = [sys.executable, "-m", "deepmath.train_verl", "--spec", spec, "--dry-run"]
    args = ["--model-dir", "m", "--train", "t.parquet", "--val", "v.parquet"]
    args += ["--reward", str(PATHS["reward"]), "--work-dir", str(tmp_path / "w")]
    args += ["--done", str(tmp_path / "done.json")]
    out = subprocess.run(base + args, capture_output=True, text=True, env=venv_env, check=True)
    line = out.stdout.strip()
    assert line.startswith("python -m verl.trainer.main_ppo ")
    assert f"trainer.default_local_dir={tmp_path}/w/checkpoints" in line
    assert "trainer.experiment_name=w" in line
    env = {**venv_env, "DEEPMATH_VERL_PYTHON": "/opt/train/bin/python"}
    out = subprocess.run(base + args, capture_output=True, text=True, env=env, check=True)
    assert out.stdout.startswith("/opt/train/bin/python -m verl.trainer.main_ppo ")
    out = subprocess.run(
        base + args + ["--python", "/x/py"], capture_output=True, text=True, env=env, check=True
    )
    assert out.stdout.startswith("/x/py -m verl.trainer.main_ppo ")
    assert not (tmp_path / "done.json").exists()


def test_spec_loading(tmp_path):
    assert load_spec(json.dumps(PAPER_1_5B))["steps"] == 1800
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(PAPER_ZERO_7B))
    assert load_spec(str(path))["steps"] == 500
    with pytest.raises(DeepmathError, match="backend 'verl'"):
        load_spec(json.dumps({**PAPER_1_5B, "backend": "trl"}))
    with pytest.raises(DeepmathError, match="neither"):
        load_spec(str(tmp_path / "missing.json"))
    assert verl_python(None, {}) == "python"
    assert verl_python(None, {"DEEPMATH_VERL_PYTHON": "/e/python"}) == "/e/python"
    assert verl_python("/f/python", {"DEEPMATH_VERL_PYTHON": "/e/python"}) == "/f/python"


def _fake_checkpoint(ckpt, step, world=2):
    actor = ckpt / f"global_step_{step}" / "actor"
    (actor / "huggingface").mkdir(parents=True)
    (actor / "huggingface" / "config.json").write_text("{}")
    (actor / "fsdp_config.json").write_text(json.dumps({"FSDP_version": 2, "world_size": world}))
    for rank in range(world):
        (actor / f"model_world_size_{world}_rank_{rank}.pt").write_bytes(b"x")
    (ckpt / "latest_checkpointed_iteration.txt").write_text(str(step))


def test_done_only_at_the_last_step(tmp_path):
    ckpt = tmp_path / "checkpoints"
    kw = {"cmd": ["python"], "overrides": [], "nodes": ["n1"], "paths": {"work_dir": "w"}}
    spec = {**PAPER_1_5B, "steps": 100}
    with pytest.raises(DeepmathError, match="exited with code 0 but there is no checkpoint"):
        finish(spec=spec, ckpt_dir=ckpt, exit_code=0, **kw)
    _fake_checkpoint(ckpt, 50)
    assert latest_step(ckpt) == 50
    with pytest.raises(
        DeepmathError, match="code 0 but the last checkpoint is step 50, not step 100"
    ):
        finish(spec=spec, ckpt_dir=ckpt, exit_code=0, **kw)
    with pytest.raises(DeepmathError, match="exited with code 1 .* resumes"):
        finish(spec=spec, ckpt_dir=ckpt, exit_code=1, **kw)
    _fake_checkpoint(ckpt, 100)
    record = finish(spec=spec, ckpt_dir=ckpt, exit_code=0, **kw)
    assert record["step"] == 100
    assert record["actor_checkpoint"] == str(ckpt / "global_step_100" / "actor")
    assert record["fsdp"] == {"FSDP_version": 2, "world_size": 2}
    (ckpt / "global_step_100" / "actor" / "model_world_size_2_rank_1.pt").unlink()
    with pytest.raises(DeepmathError, match="incomplete checkpoint"):
        finish(spec=spec, ckpt_dir=ckpt, exit_code=0, **kw)
    (ckpt / "latest_checkpointed_iteration.txt").write_text("garbage")
    with pytest.raises(DeepmathError, match="not a step number"):
        latest_step(ckpt)


def test_reward_gate_must_match_the_data(tmp_path):
    path = tmp_path / "train.parquet"
    pd.DataFrame({"extra_info": [{"reward_gate": "one_box", "index": 0}]}).to_parquet(path)
    check_reward_gate(path, "one_box")
    with pytest.raises(DeepmathError, match="reward_gate='one_box' but the run says 'think'"):
        check_reward_gate(path, "think")
