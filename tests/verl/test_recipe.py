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
from tests.verl.conftest import PAPER_1_5B, PAPER_RUNS, PAPER_ZERO_7B, PATHS, REPO


def items(spec, **kw):
    return verl_recipe.override_items(spec, **{**PATHS, **kw})


def overrides(spec, **kw):
    return verl_recipe.build_overrides(spec, **{**PATHS, **kw})


def test_any_generation_batch_relative_to_the_prompts_per_step():
    """480 generated for 128 trained (DeepMath-Omn-1.5B) is expressible: the sampler gets the
    exact numbers; verl's in-flight cap is the whole-batch ceiling above them."""
    spec = copy.deepcopy(PAPER_1_5B)
    spec["recipe"].update(gen_batch=480)
    got = items(spec)
    assert got["+trainer.v1.sampler.sampler_kwargs.gen_batch"] == 480
    assert got["+trainer.v1.sampler.sampler_kwargs.prompts_per_step"] == 128
    assert got["+trainer.v1.sampler.sampler_kwargs.max_gen_rounds"] == 10
    assert got["trainer.v1.sampler.custom_sampler.name"] == "BudgetedReplayBuffer"
    assert got["trainer.v1.sampler.custom_sampler.path"].endswith("deepmath/verl_sampler.py")
    assert got["+trainer.v1.sampler.sampler_kwargs.report"] == (
        PATHS["work_dir"] + "/dynamic_sampling.failed.json"
    )


def test_validation_is_off_unless_asked():
    got = items(PAPER_1_5B)
    assert (got["trainer.test_freq"], got["trainer.val_before_train"]) == (-1, False)
    spec = {**PAPER_1_5B, "validation": {"benchmark": "math500", "every": 50, "before_train": True}}
    got = items(spec)
    assert (got["trainer.test_freq"], got["trainer.val_before_train"]) == (50, True)
    for bad, message in (
        ({"every": 0}, "every must be -1"),
        ({"every": True}, "every must be -1"),
        ({"before_train": "no"}, "before_train"),
        ({"evry": 5}, "unknown key"),
        ({"benchmark": None}, "needs a benchmark"),
    ):
        with pytest.raises(DeepmathError, match=message):
            items({**PAPER_1_5B, "validation": bad})


def test_reward_hook_and_no_ignored_keys():
    out = overrides(PAPER_1_5B)
    keys = [verl_recipe.override_key(o) for o in out]
    assert "reward.custom_reward_function.path" in keys
    assert f"reward.custom_reward_function.path={PATHS['reward']}" in out
    # the legacy top-level keys main_ppo never reads, and V1-ignored knobs
    for key in keys:
        assert verl_recipe.ignored_reason(key) is None, key
    # every key we add with "+" is read by the dapo reward manager, the model config or our
    # sampler (proven in .venv-verl)
    assert {o.split("=")[0] for o in out if o.startswith("+")} == {
        "+reward.reward_kwargs.max_resp_len",
        "+reward.reward_kwargs.overlong_buffer_cfg.enable",
        "+reward.reward_kwargs.overlong_buffer_cfg.len",
        "+reward.reward_kwargs.overlong_buffer_cfg.penalty_factor",
        "+reward.reward_kwargs.overlong_buffer_cfg.log",
        "+reward.custom_reward_function.reward_kwargs.scorer",
        "+actor_rollout_ref.model.override_config.attention_dropout",
        "+actor_rollout_ref.model.override_config.embd_pdrop",
        "+actor_rollout_ref.model.override_config.resid_pdrop",
        "+trainer.v1.sampler.sampler_kwargs.filter_metric",
        "+trainer.v1.sampler.sampler_kwargs.prompts_per_step",
        "+trainer.v1.sampler.sampler_kwargs.gen_batch",
        "+trainer.v1.sampler.sampler_kwargs.max_gen_rounds",
        "+trainer.v1.sampler.sampler_kwargs.report",
    }
    assert len(keys) == len(set(keys))


def test_verl_overrides_come_last_and_legacy_keys_are_refused():
    spec = copy.deepcopy(PAPER_1_5B)
    spec["verl_overrides"] = ["trainer.logger=[console,wandb]"]
    assert overrides(spec)[-1] == "trainer.logger=[console,wandb]"
    for bad in (
        "custom_reward_function.path=/x/reward.py",
        "+reward_model.reward_kwargs.overlong_buffer_cfg.len=10",
        "algorithm.filter_groups.max_num_gen_batches=10",
        "algorithm.filter_groups.max_inflight_gen_batches=3",
        "actor_rollout_ref.actor.grad_clip=0.5",
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
        ({"gen_batch": 64}, "must be >= prompts_per_step"),
        ({"max_gen_rounds": 0}, "max_gen_rounds must be an integer"),
        ({"truncation": "both"}, "truncation 'both'"),
        ({"offload": "yes"}, "offload must be true or false"),
        ({"skip_grad_norm": -1}, "skip_grad_norm"),
        ({"ulysses_sp": 3}, "ulysses_sp"),
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
    spec["recipe"].update(keep_checkpoints=3, strategy="fsdp", save_rollouts=False)
    got = items(spec)
    assert got["trainer.max_actor_ckpt_to_keep"] == 3
    assert got["actor_rollout_ref.actor.strategy"] == "fsdp"
    assert got["trainer.rollout_data_dir"] is None
    paper = items(PAPER_1_5B)
    assert paper["actor_rollout_ref.actor.strategy"] == "fsdp2"
    assert paper["trainer.max_actor_ckpt_to_keep"] == 2  # resume and merge need the latest
    assert paper["trainer.rollout_data_dir"] == PATHS["work_dir"] + "/rollouts"


def test_config_yaml_has_the_four_runs():
    assert sorted(PAPER_RUNS) == [
        "deepmath-1.5b",
        "deepmath-omn-1.5b",
        "deepmath-zero-7b",
        "deepmath-zero-math-7b",
    ]
    for name, run in PAPER_RUNS.items():
        out = verl_recipe.build_overrides(run, **PATHS, name=name)
        assert "actor_rollout_ref.rollout.name=vllm" in out


# --------------------------------------------------------------------------- train_verl


def test_dry_run_prints_the_command(tmp_path, venv_env):
    spec = json.dumps(PAPER_1_5B)
    base = [sys.executable, "-m", "deepmath.train_verl", "--spec", spec, "--dry-run"]
    args = ["--model-dir", "m", "--train", "t.parquet", "--val", "v.parquet"]
    args += ["--reward", str(PATHS["reward"]), "--work-dir", str(tmp_path / "w")]
    args += ["--out", str(tmp_path / "done.json")]
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
