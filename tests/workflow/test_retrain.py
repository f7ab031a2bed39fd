"""A recipe change on the finished demo run trains a new model and asks it again.

Runs after test_demo.py and test_report.py, on their run (``pytest-demo``): it leaves that run
trained under the edited recipe, so nothing after it may expect the demo's own recipe.
"""

import json

import pandas as pd
import pytest

from tests.workflow.helpers import DEMO_CONFIGS, REPO, job_counts, snakemake

RESULTS = REPO / "results" / "pytest-demo"
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def finished_demo(venv_env):
    """The demo run, made or brought up to date here (nothing to do after test_report.py)."""
    return snakemake("--profile", "profiles/demo", "--configfile", *DEMO_CONFIGS, env=venv_env)


def test_a_recipe_change_trains_a_new_model(finished_demo, venv_env, tmp_path):
    """Raising the GRPO learning rate must train a new model, not export the old checkpoint,
    and its evaluations must ask the new model instead of replaying the old one's answers.
    The old work dir and journals are kept aside, and the log says what changed."""
    import hashlib

    hf = RESULTS / "checkpoints" / "smollm2-grpo" / "hf"
    train_dir = RESULTS / ".train" / "smollm2-grpo"

    def weights():
        return hashlib.sha256((hf / "model.safetensors").read_bytes()).hexdigest()

    old_weights = weights()
    old_metrics = json.loads(
        (RESULTS / "eval" / "smollm2-grpo" / "math500" / "metrics.json").read_text()
    )
    old_table = pd.read_csv(RESULTS / "tables" / "main_results.csv")
    overlay = tmp_path / "lr.yaml"
    # (weight decay too: SmolLM2's completions often all score alike, and a zero policy gradient
    # leaves the weights where they were whatever the learning rate)
    recipe = {"lr": 5.0e-5, "weight_decay": 0.01}
    overlay.write_text(json.dumps({"rl": {"runs": {"smollm2-grpo": {"recipe": recipe}}}}))
    proc = snakemake(
        "--profile", "profiles/demo", "--configfile", *DEMO_CONFIGS, str(overlay), env=venv_env
    )
    counts = job_counts(proc.stdout + proc.stderr)
    assert counts.get("train_trl") == 1 and "prepare_rl_data" not in counts
    assert weights() != old_weights  # trained again, under the new learning rate

    log = (RESULTS / "logs" / "train_trl" / "smollm2-grpo.log").read_text()
    assert "spec.recipe.lr: 1e-06 -> 5e-05" in log and "moved it aside to" in log
    assert "spec.recipe.weight_decay: 0.0 -> 0.01" in log
    stale = sorted(RESULTS.glob(".train/smollm2-grpo.stale-*"))
    assert stale and str(stale[-1].name) in log
    assert sorted(p.name for p in stale[-1].glob("checkpoint-*"))  # the old state, kept
    state = json.loads((train_dir / "fingerprint.json").read_text())
    assert state["fingerprint"]["spec"]["recipe"]["lr"] == 5.0e-5
    record = json.loads((hf / "train_summary.json").read_text())
    assert record["state"]["work_dir"] == "moved"
    assert record["state"]["steps_this_attempt"] == record["steps"]
    assert record["state"]["fingerprint"] == state["digest"]
    assert record["spec"]["recipe"]["lr"] == 5.0e-5

    for bench in ("math500", "gsm8k", "minerva", "gpqa_diamond"):
        usage = json.loads(
            (RESULTS / "eval" / "smollm2-grpo" / bench / "responses.usage.json").read_text()
        )
        sent = usage["roles"]["eval"]["sent"]["requests"]
        assert sent == usage["roles"]["eval"]["requests"] > 0  # asked again, nothing replayed
    new_metrics = json.loads(
        (RESULTS / "eval" / "smollm2-grpo" / "math500" / "metrics.json").read_text()
    )
    assert (
        new_metrics["model_identity"]
        and new_metrics["model_identity"] != old_metrics["model_identity"]
    )
    new_table = pd.read_csv(RESULTS / "tables" / "main_results.csv")
    grpo = new_table["model"] == "smollm2-grpo"
    assert set(new_table[grpo]["model_identity"]) != set(old_table[grpo]["model_identity"])
    # the base model's rows were not touched
    base = new_table["model"] == "smollm2"
    assert list(new_table[base]["model_identity"]) == list(old_table[base]["model_identity"])
    eval_log = (RESULTS / "logs" / "generate_eval" / "smollm2-grpo" / "math500.log").read_text()
    assert "moved it aside to" in eval_log and "identity" in eval_log
