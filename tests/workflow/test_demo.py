"""The demo DAG for real: offline, CPU, real data from PyPI packages, real models."""

import json
import shutil

import pandas as pd
import pytest

from tests.workflow.helpers import DEMO_CONFIGS, REPO, job_counts, snakemake

RESULTS = REPO / "results" / "pytest-demo"
pytestmark = pytest.mark.slow
# The retrieval half of the demo DAG, run for real. The LLM stages are covered on a few rows by
# test_llm_stages.py; the full demo (all stages, minutes of CPU LLM time) is `make demo`.
TARGETS = [f"results/pytest-demo/decontam/shard-{s}.neighbors.parquet" for s in ("0000", "0001")]


@pytest.fixture(scope="module")
def demo_run(venv_env):
    shutil.rmtree(RESULTS, ignore_errors=True)
    proc = snakemake(*TARGETS, "--profile", "profiles/demo", "--configfile", *DEMO_CONFIGS,
                     env=venv_env)  # fmt: skip
    return proc


def test_front_half_artifacts_and_counts(demo_run):
    pool_stats = json.loads((RESULTS / "pool" / "stats.json").read_text())
    shards = sorted((RESULTS / "pool").glob("shard-*.parquet"))
    assert [p.name for p in shards] == ["shard-0000.parquet", "shard-0001.parquet"]
    pool = pd.concat([pd.read_parquet(p) for p in shards], ignore_index=True)
    assert len(pool) == pool_stats["rows_out"] == sum(pool_stats["per_shard"])
    assert pool["id"].is_unique

    for shard in ("0000", "0001"):
        table = pd.read_parquet(RESULTS / "decontam" / f"shard-{shard}.neighbors.parquet")
        own = pd.read_parquet(RESULTS / "pool" / f"shard-{shard}.parquet")
        assert set(table["id"]) == set(own["id"])
        assert (table.groupby("id").size() == 5).all()
        assert table["score"].between(-1.0001, 1.0001).all()


def test_every_seeded_math500_item_is_flagged(demo_run):
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


def test_rerun_has_nothing_to_do(demo_run, venv_env):
    proc = snakemake(
        *TARGETS, "-n", "--profile", "profiles/demo", "--configfile", *DEMO_CONFIGS, env=venv_env
    )
    assert "Nothing to be done" in proc.stdout + proc.stderr


def test_partial_rebuild_of_one_shard(demo_run, venv_env):
    target = RESULTS / "decontam" / "shard-0001.neighbors.parquet"
    before = pd.read_parquet(target)
    # Snakemake does not rebuild a missing intermediate while its consumer is present, so drop
    # both: the shard's neighbours and its embeddings come back, nothing else runs.
    target.unlink()
    (RESULTS / "embeddings" / "shard-0001.npy").unlink(missing_ok=True)
    # the target goes first: --configfile takes every argument after it
    proc = snakemake(
        str(target.relative_to(REPO)),
        "--profile",
        "profiles/demo",
        "--configfile",
        *DEMO_CONFIGS,
        env=venv_env,
    )
    counts = job_counts(proc.stdout + proc.stderr)
    assert counts == {"embed_pool": 1, "retrieve_neighbors": 1, "total": 2}
    pd.testing.assert_frame_equal(before, pd.read_parquet(target), check_exact=False, rtol=1e-4)
