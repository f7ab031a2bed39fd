"""Dry runs of the paper config: the whole DAG, in seconds, without touching the network."""

import time

from tests.workflow.helpers import job_counts, snakemake


def test_paper_dry_run_lists_every_stage(venv_env):
    start = time.perf_counter()
    proc = snakemake("-n", "--configfile", "config/config.yaml", "--cores", "8", env=venv_env)
    elapsed = time.perf_counter() - start
    counts = job_counts(proc.stdout)
    assert counts["pull_source"] == 4  # three pool sources + the SimpleRL supplement
    assert counts["build_pool"] == 1
    assert counts["pull_benchmark"] == 17 + 6  # decontamination sets + evaluation sets
    # embedder, served judge and solver, RL inits (2), hub baselines (2)
    assert counts["prepare_model"] == 7
    assert counts["embed_benchmarks"] == 1
    for rule in (
        "embed_pool",
        "retrieve_neighbors",
        "judge_contamination",
        "decontaminate",
        "rate_difficulty",
        "rewrite_questions",
        "solve",
        "verify_answers",
        "classify_topic",
    ):
        assert counts[rule] == 64, rule
    for rule in ("rate_supplement", "solve_supplement", "topic_supplement", "assemble_dataset"):
        assert counts[rule] == 1, rule
    for rule in ("prepare_rl_data", "train_grpo", "merge_checkpoint"):
        assert counts[rule] == 2, rule  # DeepMath-1.5B and DeepMath-Zero-7B
    assert counts["generate_eval"] == counts["score_eval"] == 5 * 6  # models x eval sets
    assert counts["results_table"] == 1
    for rule in ("report_dataset", "report_cost", "report_results"):
        assert counts[rule] == 1, rule  # `rule all` builds the report's figures and tables
    # GRPO runs on 8 nodes x 8 GPUs
    train = proc.stdout.split("rule train_grpo:")[1].split("\n\n")[0]
    assert "nodes=8" in train and "gpus=8" in train
    print(f"paper dry run: {elapsed:.1f} s, {counts.get('total')} jobs")


def test_one_shard_target_only_pulls_its_upstream(venv_env):
    proc = snakemake(
        "-n",
        "--configfile",
        "config/config.yaml",
        "--cores",
        "1",
        "results/deepmath-103k/decontam/shard-0007.neighbors.parquet",
        env=venv_env,
    )
    counts = job_counts(proc.stdout)
    assert counts["retrieve_neighbors"] == 1
    assert counts["embed_pool"] == 1
    assert "embeddings/shard-0008" not in proc.stdout  # build_pool writes all shards, once


def test_rulegraph_renders(venv_env):
    proc = snakemake("--rulegraph", "--configfile", "config/config.yaml", env=venv_env)
    assert proc.stdout.lstrip().startswith("digraph")
    for rule in ("pull_source", "build_pool", "embed_pool", "retrieve_neighbors"):
        assert rule in proc.stdout


def test_zero_7b_trains_and_merges_with_the_orz_template(venv_env):
    """The template is an input of training and merging (a change re-runs them) and the merge
    writes it into the checkpoint; DeepMath-1.5B keeps its model's own template."""
    target = "results/deepmath-103k/checkpoints/{}/hf"
    proc = snakemake(
        "-n",
        "-p",
        "--configfile",
        "config/config.yaml",
        "--cores",
        "8",
        target.format("deepmath-zero-7b"),
        target.format("deepmath-1.5b"),
        env=venv_env,
    )
    merges = [block for block in proc.stdout.split("\n\n") if "python -m deepmath.merge" in block]
    assert len(merges) == 2
    for block in merges:
        zero = "checkpoints/deepmath-zero-7b/" in block
        assert ("--chat-template config/templates/orz.jinja" in block) is zero, block
    train = [b for b in proc.stdout.split("\n\n") if "rule train_grpo:" in b]
    assert sum("config/templates/orz.jinja" in b.split("output:")[0] for b in train) == 1
