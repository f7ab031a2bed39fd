"""The hub lock through Snakemake: benchmarks from a local hub-shaped cache (offline), pulled by
the workflow's own rule. The first lock must rerun nothing; a changed entry reruns the pulls of
that entry and no other."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pandas as pd
import pytest
import yaml

from deepmath import hublock
from deepmath.hublock import HubRef
from tests.hubcache import COMMIT_A, COMMIT_B, add_dataset
from tests.workflow.helpers import REPO, job_counts, snakemake

RUN = "pytest-hublock"
RESULTS = REPO / "results" / RUN
TINY, OTHER = "deepmath-test/tiny", "deepmath-test/other"
# two benchmarks read tiny@main (one lock entry), one other@main, one pins tiny at commit B
BENCHES = {"hub_a": (TINY, "main"), "hub_a2": (TINY, "main"), "hub_b": (OTHER, "main"),
           "hub_pinned": (TINY, COMMIT_B)}  # fmt: skip
TARGETS = [f"results/{RUN}/benchmarks/{b}.parquet" for b in BENCHES]


@pytest.fixture(scope="module")
def hub(tmp_path_factory, venv_env):
    """An offline HF cache, a lock path and a config overlay with the hub benchmarks."""
    tmp = tmp_path_factory.mktemp("hublock")
    cache = tmp / "hf" / "hub"
    add_dataset(cache, TINY, {COMMIT_A: "tiny A", COMMIT_B: "tiny B"}, COMMIT_A)
    add_dataset(cache, OTHER, {COMMIT_A: "other A"}, COMMIT_A)
    lock = tmp / "hub.lock.yaml"
    benchmarks = {
        name: {
            "load": {"path": repo, "revision": revision, "split": "test"},
            "fields": {"problem": "problem", "answer": "answer"},
            "answer": "column",
        }
        for name, (repo, revision) in BENCHES.items()
    }
    overlay = tmp / "overlay.yaml"
    config = {"run": RUN, "hub_lock": str(lock), "benchmarks": benchmarks}
    overlay.write_text(yaml.safe_dump(config))
    env = {**venv_env, "HF_HOME": str(tmp / "hf"), "HF_DATASETS_CACHE": str(tmp / "datasets")}
    stamps = REPO / hublock.stamp_dir(str(lock))
    shutil.rmtree(RESULTS, ignore_errors=True)
    yield {"lock": lock, "overlay": overlay, "env": env, "stamps": stamps}
    shutil.rmtree(RESULTS, ignore_errors=True)
    shutil.rmtree(stamps, ignore_errors=True)


def run(hub, *args):
    configs = ["config/demo.yaml", str(hub["overlay"])]
    return snakemake(*args, *TARGETS, "--profile", "profiles/demo", "--configfile", *configs,
                     env=hub["env"], timeout=900)  # fmt: skip


def dry(hub):
    """(jobs to run, benchmarks whose pull would run, the unlocked-entry warnings)."""
    proc = run(hub, "-n")
    out = proc.stdout + proc.stderr
    benches = {
        block.split("wildcards: bench=")[1].split()[0]
        for block in out.split("rule pull_benchmark:")[1:]
    }
    warnings = [line for line in out.splitlines() if line.startswith("hub lock: ")]
    return job_counts(out), benches, warnings


def rows(bench):
    return pd.read_parquet(RESULTS / "benchmarks" / f"{bench}.parquet")


def test_first_lock_reruns_nothing_and_a_changed_entry_reruns_its_pulls(hub):
    tiny, other = HubRef("dataset", TINY, "main"), HubRef("dataset", OTHER, "main")

    # before anything ran: every pull to do, one warning per unlocked config key
    counts, benches, warnings = dry(hub)
    assert counts.get("pull_benchmark") == 4 and benches == set(BENCHES)
    keys = sorted(line.split()[2] for line in warnings)
    assert keys == [f"benchmarks.{b}.load.revision:" for b in ("hub_a", "hub_a2", "hub_b")]
    assert all(str(hub["lock"]) in line and "at revision 'main'" in line for line in warnings)
    assert TINY in warnings[0] and OTHER in warnings[2]

    # the run: each floating revision locked to the commit its pull downloaded
    run(hub)
    assert hublock.read_lock(hub["lock"]) == {tiny: COMMIT_A, other: COMMIT_A}
    for bench, tag in (("hub_a", "tiny A"), ("hub_a2", "tiny A"), ("hub_pinned", "tiny B")):
        assert rows(bench)["problem"].str.startswith(tag).all(), bench
    stats = json.loads((RESULTS / "benchmarks" / "hub_b.stats.json").read_text())
    assert (stats["hub"]["repo"], stats["hub"]["commit"]) == (OTHER, COMMIT_A)
    assert rows("hub_a").attrs["hub"]["commit"] == COMMIT_A

    # the first lock is no change: nothing to do, nothing unlocked
    assert dry(hub) == ({}, set(), [])

    # results without their lock (a checkout that never had one): still nothing to rerun,
    # the entries listed as unlocked; locking them by hand reruns nothing either
    hub["lock"].unlink()
    shutil.rmtree(hub["stamps"])
    counts, benches, warnings = dry(hub)
    assert (counts, benches, len(warnings)) == ({}, set(), 3)
    cmd = [sys.executable, "-m", "deepmath.hublock", "lock", "--config", "config/demo.yaml",
           str(hub["overlay"])]  # fmt: skip
    proc = subprocess.run(cmd, cwd=REPO, env=hub["env"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert hublock.read_lock(hub["lock"]) == {tiny: COMMIT_A, other: COMMIT_A}
    assert dry(hub) == ({}, set(), [])

    # an edited entry is a change: the two pulls of tiny@main rerun, and no other
    hublock.write_lock(hub["lock"], {tiny: COMMIT_B, other: COMMIT_A})
    counts, benches, warnings = dry(hub)
    assert counts == {"pull_benchmark": 2, "total": 2} and benches == {"hub_a", "hub_a2"}
    assert not warnings
    run(hub)
    assert rows("hub_a")["problem"].str.startswith("tiny B").all()
    assert rows("hub_b")["problem"].str.startswith("other A").all()
    assert dry(hub) == ({}, set(), [])
