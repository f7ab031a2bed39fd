"""Resumable state is reused only for the exact inputs that made it (deepmath.fingerprint)."""

from __future__ import annotations

import json
import logging
import os

import pytest

from deepmath import fingerprint as fp
from deepmath.llm import make_request, role_config
from deepmath.llm.request import request_key


def _model(folder, weights=b"w" * 64, template="{{ messages }}", provenance=None):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text('{"hidden_size": 8}')
    (folder / "tokenizer_config.json").write_text(json.dumps({"chat_template": template}))
    (folder / "model.safetensors").write_bytes(weights)
    if provenance is not None:
        (folder / "deepmath-model.json").write_text(json.dumps(provenance))
    return folder


# --------------------------------------------------------------------------- model identity


def test_model_identity_follows_weights_tokenizer_and_template(tmp_path):
    a = fp.model_digest(_model(tmp_path / "a"))
    assert fp.model_digest(_model(tmp_path / "same")) == a  # same content elsewhere: same model
    assert fp.model_digest(_model(tmp_path / "w", weights=b"x" * 64)) != a
    assert fp.model_digest(_model(tmp_path / "t", template="{{ other }}")) != a
    # a converted model's dtype is part of what it is
    f16 = _model(tmp_path / "f16", provenance={"kind": "gguf", "dtype": "float16"})
    f32 = _model(tmp_path / "f32", provenance={"kind": "gguf", "dtype": "float32"})
    assert fp.model_digest(f16) != fp.model_digest(f32)


def test_model_identity_ignores_when_and_where_it_was_made(tmp_path):
    one = _model(tmp_path / "one", provenance={"kind": "gguf", "created": "2026-01-01"})
    two = _model(tmp_path / "two", provenance={"kind": "gguf", "created": "2026-12-01"})
    assert fp.model_digest(one) == fp.model_digest(two)


def test_hub_commit_pins_weights_but_a_floating_revision_hashes_them(tmp_path):
    commit = "a" * 40
    pinned = {"kind": "hub", "source": "org/m", "revision": commit}
    p1 = _model(tmp_path / "p1", provenance=pinned)
    p2 = _model(tmp_path / "p2", weights=b"y" * 64, provenance=pinned)
    # weights of a pinned commit are immutable: not hashed (a 70B folder would take minutes)
    assert fp.model_digest(p1) == fp.model_digest(p2)
    other = _model(tmp_path / "p3", provenance={**pinned, "revision": "b" * 40})
    assert fp.model_digest(other) != fp.model_digest(p1)
    floating = {"kind": "hub", "source": "org/m", "revision": "main"}
    f1 = _model(tmp_path / "f1", provenance=floating)
    f2 = _model(tmp_path / "f2", weights=b"y" * 64, provenance=floating)
    assert fp.model_digest(f1) != fp.model_digest(f2)


def test_weight_digests_are_cached_beside_the_folder_and_refreshed_on_change(tmp_path):
    folder = _model(tmp_path / "m")
    first = fp.model_digest(folder)
    cache = tmp_path / ".m.digests.json"
    assert cache.is_file() and "model.safetensors" in cache.read_text()
    assert fp.model_digest(folder) == first
    (folder / "model.safetensors").write_bytes(b"z" * 65)  # retrained in place
    assert fp.model_digest(folder) != first


# --------------------------------------------------------------------------- request keys


def test_request_key_carries_the_served_identity():
    role = role_config("solver", {"model": "m", "base_url": "http://127.0.0.1:1/v1"})
    msgs = [{"role": "user", "content": "1+1?"}]
    plain = make_request(role, msgs)
    # an external endpoint: the key is what it was before identities existed
    assert plain.key == request_key("m", msgs, None, {}, 0)
    from dataclasses import replace

    a = make_request(replace(role, identity="aaaa"), msgs)
    b = make_request(replace(role, identity="bbbb"), msgs)
    assert len({plain.key, a.key, b.key}) == 3
    assert make_request(replace(role, identity="aaaa"), msgs).key == a.key


# --------------------------------------------------------------------------- claiming state


def test_claim_a_new_folder_writes_the_record(tmp_path):
    state = tmp_path / "work"
    got = fp.claim(state, {"lr": 1e-6}, "training x", folder=True)
    assert got["status"] == "new"
    record = json.loads((state / fp.FINGERPRINT_FILE).read_text())
    assert record["fingerprint"] == {"lr": 1e-6} and record["digest"] == got["digest"]


def test_claim_a_matching_folder_resumes_it(tmp_path):
    state = tmp_path / "work"
    fp.claim(state, {"lr": 1e-6}, "t", folder=True)
    (state / "checkpoint-3").mkdir()
    got = fp.claim(state, {"lr": 1e-6}, "t", folder=True)
    assert got["status"] == "match" and (state / "checkpoint-3").is_dir()


def test_claim_moves_other_state_aside_and_names_each_change(tmp_path, caplog):
    state = tmp_path / "work"
    old = {"spec": {"recipe": {"lr": 1e-6, "rollout_n": 4}}, "train": "a" * 64}
    fp.claim(state, old, "training smollm2-grpo", folder=True)
    (state / "checkpoint-3").mkdir()
    new = {"spec": {"recipe": {"lr": 5e-5, "rollout_n": 4}}, "train": "b" * 64}
    with caplog.at_level(logging.WARNING, "deepmath.fingerprint"):
        got = fp.claim(state, new, "training smollm2-grpo", folder=True)
    assert got["status"] == "moved"
    aside = tmp_path / os.path.basename(got["moved_to"])
    assert aside.name.startswith("work.stale-")
    assert (aside / "checkpoint-3").is_dir()  # kept, not deleted
    assert not (state / "checkpoint-3").exists()  # fresh
    assert json.loads((state / fp.FINGERPRINT_FILE).read_text())["fingerprint"] == new
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1
    line = lines[0]
    assert "spec.recipe.lr: 1e-06 -> 5e-05" in line
    assert "train: aaaaaaaaaaaa -> bbbbbbbbbbbb" in line
    assert "rollout_n" not in line  # only what changed
    assert str(aside) in line


def test_a_journal_from_before_fingerprints_is_adopted(tmp_path):
    """Its entries are keyed by what shapes each answer: adopting it re-pays nothing and
    replays only identical requests."""
    journal = tmp_path / "j.jsonl"
    journal.write_text('{"key": "k"}\n')
    got = fp.claim(journal, {"model": "m"}, "role judge", folder=False, adopt_unrecorded=True)
    assert got["status"] == "adopted" and journal.read_text() == '{"key": "k"}\n'
    assert fp.read_record(journal, folder=False)["fingerprint"] == {"model": "m"}
    assert not [p for p in tmp_path.iterdir() if ".stale-" in p.name]


def test_claim_a_state_without_record_moves_it_aside(tmp_path, caplog):
    journal = tmp_path / "j.jsonl"
    journal.write_text('{"key": "k"}\n')
    with caplog.at_level(logging.WARNING, "deepmath.fingerprint"):
        got = fp.claim(journal, {"model": "m"}, "role judge", folder=False)
    assert got["status"] == "moved"
    assert "no fingerprint recorded" in caplog.text
    assert not journal.exists()
    assert (tmp_path / os.path.basename(got["moved_to"])).read_text() == '{"key": "k"}\n'
    assert (tmp_path / ("j.jsonl" + fp.FINGERPRINT_SUFFIX)).is_file()


def test_claim_a_file_moves_its_record_with_it(tmp_path):
    journal = tmp_path / "j.jsonl"
    fp.claim(journal, {"identity": "aaa"}, "role eval", folder=False)
    journal.write_text('{"key": "k"}\n')
    assert fp.claim(journal, {"identity": "aaa"}, "role eval", folder=False)["status"] == "match"
    got = fp.claim(journal, {"identity": "bbb"}, "role eval", folder=False)
    moved = tmp_path / os.path.basename(got["moved_to"])
    record = json.loads((tmp_path / (moved.name + fp.FINGERPRINT_SUFFIX)).read_text())
    assert record["fingerprint"] == {"identity": "aaa"}
    assert fp.read_record(journal, folder=False)["fingerprint"] == {"identity": "bbb"}


def test_an_empty_state_is_simply_claimed(tmp_path):
    journal = tmp_path / "j.jsonl"
    journal.write_text("")
    assert fp.claim(journal, {"a": 1}, "r", folder=False)["status"] == "new"
    assert [p.name for p in tmp_path.iterdir() if "stale" in p.name] == []


def test_two_moves_in_one_second_do_not_collide(tmp_path):
    state = tmp_path / "work"
    for lr in (1, 2, 3):
        fp.claim(state, {"lr": lr}, "t", folder=True)
        (state / "ckpt").mkdir()
    stale = sorted(p.name for p in tmp_path.iterdir() if ".stale-" in p.name)
    assert len(stale) == 2


# --------------------------------------------------------------------------- run-only keys


def test_split_role_keeps_what_shapes_answers():
    role = {
        "model": "m",
        "params": {"temperature": 0.6},
        "max_concurrency": 64,
        "timeout_s": 30,
        "prices": {"prompt": 1.0, "completion": 2.0},
        "on_rejected": "fail",
        "serve": {"model": "m", "dtype": "bfloat16", "port": 8000, "tensor_parallel": 8},
    }
    shaping, runtime = fp.split_role(role)
    assert shaping == {
        "model": "m",
        "params": {"temperature": 0.6},
        "on_rejected": "fail",
        "serve": {"model": "m", "dtype": "bfloat16"},
    }
    assert runtime["serve"] == {"port": 8000, "tensor_parallel": 8}
    assert fp.deep_merge(shaping, runtime) == role


@pytest.mark.parametrize("key", sorted(fp.ROLE_RUNTIME_KEYS))
def test_every_run_only_role_key_is_a_role_key(key):
    from deepmath.llm.roles import ROLE_KEYS

    assert key in ROLE_KEYS


@pytest.mark.parametrize("key", sorted(fp.SERVE_RUNTIME_KEYS))
def test_every_run_only_serve_key_is_a_serve_key(key):
    from deepmath import schema

    assert key in schema.descriptions("serve")
