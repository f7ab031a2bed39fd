"""Dry runs of the paper config: the whole DAG, in seconds, without touching the network."""

import time

from deepmath.config import load_config
from tests.workflow.helpers import job_counts, snakemake

PAPER_COMPARE = load_config(["config/config.yaml"]).get("analysis", {}).get("compare") or {}


def test_paper_dry_run_lists_every_stage(venv_env):
    start = time.perf_counter()
    proc = snakemake("-n", "--configfile", "config/config.yaml", "--cores", "8", env=venv_env)
    elapsed = time.perf_counter() - start
    counts = job_counts(proc.stdout)
    assert counts["pull_source"] == 4  # three pool sources + the SimpleRL supplement
    assert counts["build_pool"] == 1
    assert counts["pull_benchmark"] == 17 + 8  # decontamination sets + the 8 evaluation sets
    # embedder, served judge and solver, RL inits (4), the SFT init, evaluated hub models (8:
    # ORZ-7B, SimpleRL-Zoo, Still-3, DeepScaleR and the four published DeepMath models; the
    # other baselines are RL or SFT inits)
    assert counts["prepare_model"] == 16
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
    for rule in ("prepare_rl_data", "train_grpo"):
        assert counts[rule] == 4, rule  # the four DeepMath models
    assert counts["prepare_sft_data"] == counts["train_sft"] == 2  # the two SFT baselines
    assert counts["merge_checkpoint"] == 4 + 2
    # the paper's grid: 8 Zero-RL rows (4 of them DeepMath, hub and ours), 8 RL-from-reasoning
    # rows (likewise) and the 2 SFT baselines, each on the 8 evaluation sets, one GPU a job
    assert counts["generate_eval"] == counts["score_eval"] == 18 * 8
    grid = set()
    for block in proc.stdout.split("rule generate_eval:")[1:]:
        wildcards = block.split("wildcards: ")[1].splitlines()[0]
        resources = block.split("resources: ")[1].splitlines()[0]
        assert ", gpus=1" in resources or resources.endswith("gpus=1"), resources
        grid.add(tuple(w.split("=")[1] for w in wildcards.split(", ")))
    assert len(grid) == 18 * 8
    benches = {b for _, b in grid}
    assert benches == {
        "math500", "amc23_eval", "olympiadbench", "minerva", "aime24", "aime25",
        "polymath_en", "gpqa_diamond",
    }  # fmt: skip
    models = {m for m, _ in grid}
    for name in ("open-reasoner-zero-7b", "still-3-1.5b-preview", "deepmath-omn-1.5b-ours",
                 "qwen2.5-7b-base", "deepmath-zero-math-7b"):  # fmt: skip
        assert name in models, name
    assert counts["results_table"] == 1
    for rule in ("report_dataset", "report_cost", "report_results", "report_analysis"):
        assert counts[rule] == 1, rule  # `rule all` builds the report's figures and tables
    # the dataset analyses: ours and each compared set pulled and embedded, one job per analysis
    compare = len(PAPER_COMPARE)
    assert counts.get("pull_compare", 0) == compare
    assert counts["embed_compare"] == 1 + compare
    assert counts["sample_compare"] == counts["rate_compare"] == compare  # rated like curation
    for rule in ("analysis_ours", "analysis_profile", "analysis_strings", "analysis_novelty",
                 "analysis_map", "analysis_contamination", "sample_ours",
                 "analysis_difficulty", "analysis_summary"):  # fmt: skip
        assert counts[rule] == 1, rule
    # the audit of the published DeepMath-103K: pulled, its answers checked, decontaminated
    # against curation's 17 benchmarks (their embeddings reused) plus AIME 2025 (embedded alone)
    for rule in ("pull_audit", "audit_answers", "embed_audit", "embed_audit_benchmarks",
                 "retrieve_audit", "judge_audit", "decontaminate_audit", "audit_card"):  # fmt: skip
        assert counts[rule] == 1, rule
    audit_embed = proc.stdout.split("rule embed_audit_benchmarks:")[1].split("output:")[0]
    assert "benchmarks/aime25.parquet" in audit_embed
    assert "benchmarks/omni_math.parquet" not in audit_embed
    # the four GRPO runs and the two SFT baselines on their nodes x GPUs
    shapes = {}
    for rule in ("train_grpo", "train_sft"):
        for block in proc.stdout.split(f"rule {rule}:")[1:]:
            model = block.split("wildcards: model=")[1].split()[0]
            resources = block.split("resources: ")[1].splitlines()[0]
            shapes[model] = tuple(
                int(resources.split(f"{key}=")[1].split(",")[0]) for key in ("nodes", "gpus")
            )
    assert shapes == {
        "deepmath-zero-7b": (8, 8),
        "deepmath-zero-math-7b": (12, 8),
        "deepmath-1.5b": (8, 8),
        "deepmath-omn-1.5b": (12, 8),
        "qwen25-7b-sft": (2, 8),
        "qwen25-7b-sft-x3": (2, 8),
    }
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


CURATION = (
    "pull_source",
    "build_pool",
    "embed_pool",
    "embed_benchmarks",
    "retrieve_neighbors",
    "judge_contamination",
    "decontaminate",
    "rate_difficulty",
    "rewrite_questions",
    "solve",
    "verify_answers",
    "classify_topic",
    "rate_supplement",
    "solve_supplement",
    "topic_supplement",
    "assemble_dataset",
    "report_dataset",
)


def test_training_from_the_published_dataset_curates_nothing(venv_env, tmp_path):
    overlay = tmp_path / "published.yaml"
    overlay.write_text("rl: {dataset: published}\n")
    configs = ["--configfile", "config/config.yaml", str(overlay)]
    proc = snakemake("-n", *configs, "--cores", "8", "--until", "train_grpo", env=venv_env)
    counts = job_counts(proc.stdout)
    assert counts["pull_published"] == 1
    assert counts["prepare_rl_data"] == counts["train_grpo"] == 4
    assert counts["pull_benchmark"] == 1  # MATH-500, the validation set
    # the SFT baselines train from the published dataset too
    proc = snakemake("-n", *configs, "--cores", "8", "--until", "train_sft", env=venv_env)
    counts = job_counts(proc.stdout)
    assert counts["pull_published"] == 1 and counts["train_sft"] == 2
    assert not [rule for rule in CURATION if rule in counts], counts
    assert not [rule for rule in CURATION if rule in counts], counts
    # the whole run (models, evaluation, tables) curates nothing either
    proc = snakemake("-n", *configs, "--cores", "8", env=venv_env)
    counts = job_counts(proc.stdout)
    assert counts["train_grpo"] == 4 and counts["results_table"] == 1
    assert not [rule for rule in CURATION if rule in counts], counts
    assert "published/deepmath-103k.parquet" in proc.stdout
    # the audit embeds every benchmark it checks itself
    assert counts["audit_card"] == 1 and counts["embed_audit_benchmarks"] == 1
    audit_embed = proc.stdout.split("rule embed_audit_benchmarks:")[1].split("output:")[0]
    assert "benchmarks/aime25.parquet" in audit_embed
    assert "benchmarks/omni_math.parquet" in audit_embed


def test_a_template_file_trains_and_merges_with_the_run(venv_env, tmp_path):
    """A run with `chat_template` (the offline ORZ copy on the base Qwen2.5-7B): the template
    is an input of training and merging (a change re-runs them) and the merge writes it into
    the checkpoint; the other runs keep their model's own template."""
    overlay = tmp_path / "orz.yaml"
    overlay.write_text(
        "rl:\n  runs:\n    deepmath-zero-7b:\n      init: qwen25_7b\n"
        "      chat_template: config/templates/orz.jinja\n"
    )
    target = "results/deepmath-103k/checkpoints/{}/hf"
    proc = snakemake(
        "-n",
        "-p",
        "--configfile",
        "config/config.yaml",
        str(overlay),
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
