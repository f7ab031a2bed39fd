"""verl's model merger on a real FSDP checkpoint made on CPU, through ``deepmath.merge``.

The checkpoint is made the way verl's FSDP engine makes one with ``strategy=fsdp2`` (our
default): a tiny random Qwen2, two gloo ranks, ``fully_shard`` through verl's ``apply_fsdp2``,
one AdamW step, saved by verl's ``FSDPCheckpointManager`` (``global_step_3/actor`` +
``latest_checkpointed_iteration.txt``). FSDP1 (verl's ``strategy=fsdp``) cannot be built on CPU:
torch refuses ("FSDP needs a non-CPU accelerator device"); its sharded state dict holds the same
DTensor shards, which is the merger code path tested here.

``deepmath.merge`` runs in this venv and calls verl through ``--python .venv-verl/bin/python``,
as the cluster rule calls the train env's Python.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from tests.verl.conftest import PAPER_1_5B, PROBE, REPO, REWARD

TIMEOUT = 300


@pytest.fixture(scope="module")
def checkpoint(verl_python, verl_env, tmp_path_factory):
    work = tmp_path_factory.mktemp("verl-work")
    proc = subprocess.run(
        [str(verl_python), str(PROBE), "checkpoint", str(work)],
        capture_output=True,
        text=True,
        env=verl_env,
        timeout=TIMEOUT,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    return work


ORZ = REPO / "config" / "templates" / "orz.jinja"


def _merge(work, out, verl_python, venv_env, step="latest", *extra):
    cmd = [sys.executable, "-m", "deepmath.merge", "--work-dir", str(work), "--step", step]
    cmd += ["--out", str(out), "--python", str(verl_python), *extra]
    return subprocess.run(cmd, capture_output=True, text=True, env=venv_env, timeout=TIMEOUT)


def test_checkpoint_is_verl_fsdp_format(checkpoint):
    actor = checkpoint / "checkpoints" / "global_step_3" / "actor"
    assert json.loads((actor / "fsdp_config.json").read_text()) == {
        "FSDP_version": 2,
        "world_size": 2,
    }
    for rank in (0, 1):
        assert (actor / f"model_world_size_2_rank_{rank}.pt").is_file()
        assert (actor / f"optim_world_size_2_rank_{rank}.pt").is_file()
    assert (actor / "huggingface" / "config.json").is_file()
    assert (checkpoint / "checkpoints" / "latest_checkpointed_iteration.txt").read_text() == "3"


def test_merge_gives_the_trained_weights(checkpoint, verl_python, venv_env):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = checkpoint / "hf"
    # the Zero-7B run's ORZ template goes into the merged folder with the weights
    proc = _merge(checkpoint, out, verl_python, venv_env, "latest", "--chat-template", str(ORZ))
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert not list(checkpoint.glob(".hf.tmp-*"))
    provenance = json.loads((out / "deepmath_merge.json").read_text())
    assert provenance["step"] == 3 and provenance["requested_step"] == "latest"
    assert provenance["fsdp"] == {"FSDP_version": 2, "world_size": 2}
    assert provenance["verl"] == "0.9.1"
    assert provenance["command"][-1] == str(out)
    assert provenance["chat_template"] == str(ORZ)

    model = AutoModelForCausalLM.from_pretrained(out)
    trained = load_file(checkpoint / "trained.safetensors")
    merged = model.state_dict()
    assert set(merged) == set(trained)
    for key, full in trained.items():
        # verl's merger writes bfloat16: equal to the trained (gathered) weights in bf16
        assert merged[key].dtype == torch.bfloat16, key
        assert torch.equal(merged[key], full.to(torch.bfloat16)), key
    tokenizer = AutoTokenizer.from_pretrained(out)
    text = "2+2 </think> \\boxed{4}"
    assert tokenizer.decode(tokenizer(text)["input_ids"]) == text
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([tokenizer(text)["input_ids"]])).logits
    assert torch.isfinite(logits.float()).all()
    prompt = tokenizer.apply_chat_template(
        [{"role": "user", "content": "What is 2+2?"}], tokenize=False, add_generation_prompt=True
    )
    assert prompt.startswith("A conversation between User and Assistant.")
    assert prompt.endswith("This is the problem:\nWhat is 2+2?\nAssistant: <think>")


def test_merge_errors(checkpoint, verl_python, venv_env, tmp_path):
    proc = _merge(checkpoint, tmp_path / "hf", verl_python, venv_env, step="7")
    assert proc.returncode == 2
    assert "no checkpoint for step 7" in proc.stderr and "[3]" in proc.stderr
    proc = _merge(tmp_path, tmp_path / "hf", verl_python, venv_env)
    assert proc.returncode == 2 and "nothing trained yet" in proc.stderr
    assert not (tmp_path / "hf").exists()


def test_train_verl_done_from_a_real_checkpoint(checkpoint, venv_env, tmp_path):
    """A job whose checkpoint already is at the last step (a rerun after a failure past the last
    save) writes --done without starting Ray; one that is short fails and writes nothing."""
    import pandas as pd

    data = tmp_path / "train.parquet"
    pd.DataFrame({"extra_info": [{"reward_gate": "think", "index": 0}]}).to_parquet(data)
    model_dir = checkpoint / "checkpoints" / "global_step_3" / "actor" / "huggingface"
    done = tmp_path / "done.json"

    def run(steps):
        spec = json.dumps({**PAPER_1_5B, "steps": steps, "nodes": 1})
        cmd = [sys.executable, "-m", "deepmath.train_verl", "--spec", spec]
        cmd += ["--model-dir", str(model_dir), "--train", str(data), "--val", str(data)]
        cmd += ["--reward", str(REWARD), "--work-dir", str(checkpoint), "--out", str(done)]
        return subprocess.run(cmd, capture_output=True, text=True, env=venv_env, timeout=TIMEOUT)

    # the work dir was made under this run's spec, data, model and reward (the probe trained it
    # outside a job, so record that as the job would have; otherwise it is set aside)
    import argparse

    from deepmath.backends import Job, training_fingerprint
    from deepmath.fingerprint import write_record

    job = Job(
        spec={**PAPER_1_5B, "steps": 3, "nodes": 1},
        model_dir=model_dir.resolve(),
        train=data.resolve(),
        val=data.resolve(),
        work_dir=checkpoint.resolve(),
        out=done,
        name=checkpoint.name,
        args=argparse.Namespace(reward=str(REWARD)),
    )
    write_record(checkpoint, training_fingerprint(job), folder=True)
    proc = run(3)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "moved it aside" not in proc.stderr
    record = json.loads(done.read_text())
    assert record["state"]["work_dir"] == "match" and record["state"]["steps_this_attempt"] == 0
    assert record["step"] == 3 and record["steps"] == 3 and record["exit_code"] is None
    assert record["actor_checkpoint"].endswith("checkpoints/global_step_3/actor")
    assert "trainer.resume_mode=auto" in record["overrides"]
    done.unlink()
    proc = run(2)
    assert proc.returncode == 2
    assert "step 3 > steps 2" in proc.stderr
    assert not done.exists()


def test_sft_layout_merges_and_finishes_the_same_way(checkpoint, verl_python, venv_env, tmp_path):
    """verl's SFT trainer writes the shards straight into global_step_N/ (no actor/): the
    merge and train_sft_verl's done check find them there."""
    import shutil

    from deepmath.train_sft_verl import step_dir
    from deepmath.train_verl import finish, shards_dir

    work = tmp_path / "sft-work"
    ckpt = work / "checkpoints"
    shutil.copytree(checkpoint / "checkpoints" / "global_step_3" / "actor", ckpt / "global_step_3")
    (ckpt / "latest_checkpointed_iteration.txt").write_text("3")
    assert shards_dir(ckpt, 3) == step_dir(ckpt, 3)
    record = finish(
        spec={"backend": "sft", "steps": 3},
        ckpt_dir=ckpt,
        exit_code=0,
        cmd=["torchrun"],
        overrides=[],
        nodes=["n1"],
        paths={"work_dir": str(work)},
        what="verl sft_trainer",
        model_dir=step_dir,
    )
    assert record["backend"] == "sft" and record["actor_checkpoint"] == str(ckpt / "global_step_3")
    out = tmp_path / "hf"
    proc = _merge(work, out, verl_python, venv_env)
    assert proc.returncode == 0, proc.stderr[-4000:]
    merged = load_file(out / "model.safetensors") if (out / "model.safetensors").is_file() else {}
    trained = load_file(checkpoint / "trained.safetensors")
    assert merged and set(merged) == set(trained)
    assert json.loads((out / "deepmath_merge.json").read_text())["checkpoint"] == str(
        ckpt / "global_step_3"
    )
