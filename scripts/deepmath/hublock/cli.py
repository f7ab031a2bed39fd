"""``python -m deepmath.hublock {status,lock,refresh} --config config/config.yaml``: list,
lock or refresh the commits of the config's floating hub revisions (:mod:`deepmath.hublock`).

A module of its own because it loads and checks the whole config (:mod:`deepmath.config`,
which reaches every stage's code): the pull jobs import :mod:`deepmath.hublock` and stay light.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping
from typing import Any

from deepmath.hublock import (
    DEFAULT_LOCK,
    UNLOCKED,
    HubRef,
    config_refs,
    mutex,
    read_lock,
    resolve_commit,
    write_lock,
)
from deepmath.io import DeepmathError, setup_logging


def _config(paths: list[str]) -> dict[str, Any]:
    """The merged config, checked as the workflow checks it: a wrong key is named before
    anything is resolved or written."""
    from deepmath.config import load_config, validate_config

    config = load_config(paths)
    validate_config(config)
    return config


def _selected(refs: Mapping[str, HubRef], wanted: list[str] | None) -> list[HubRef]:
    """The floating refs named by --entry (repo, or repo@revision); all of them without."""
    floating = sorted({r for r in refs.values() if r.floating})
    if not wanted:
        return floating
    out = []
    for item in wanted:
        repo, _, revision = item.partition("@")
        hits = [r for r in floating if r.repo_id == repo and revision in ("", r.revision)]
        if not hits:
            names = ", ".join(f"{r.repo_id}@{r.revision}" for r in floating) or "none"
            raise DeepmathError(f"--entry {item}: no floating revision of the config is {item}; "
                                f"the floating ones: {names}")  # fmt: skip
        out += hits
    return sorted(set(out))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m deepmath.hublock",
        description="The hub lock: the commits the config's floating revisions resolved to.",
    )
    parser.add_argument("command", choices=["status", "lock", "refresh"],
                        help="status: list the floating revisions and their commits; lock: "
                        "resolve and lock the ones not locked yet; refresh: resolve again and "
                        "rewrite the lock (the jobs whose commit changed run again)")  # fmt: skip
    parser.add_argument("--config", nargs="+", default=["config/config.yaml"],
                        help="config file(s), merged in order as with --configfile")  # fmt: skip
    parser.add_argument("--entry", nargs="*", help="refresh only these: repo or repo@revision")
    args = parser.parse_args(argv)
    setup_logging()
    config = _config(args.config)
    lock_path = config.get("hub_lock") or DEFAULT_LOCK
    refs = config_refs(config)
    if args.command == "status":
        entries = read_lock(lock_path)
        for key, ref in sorted(refs.items()):
            if ref.floating:
                print(f"{key}\t{ref.repo_id}@{ref.revision}\t{entries.get(ref, UNLOCKED)}")
        return
    targets = _selected(refs, args.entry if args.command == "refresh" else None)
    if args.command == "lock":
        targets = [ref for ref in targets if ref not in read_lock(lock_path)]
    resolved = {ref: resolve_commit(ref) for ref in targets}
    with mutex(lock_path):
        entries = read_lock(lock_path)
        changed = {r: c for r, (c, _) in resolved.items() if entries.get(r) != c}
        if args.command == "lock":  # a job may have locked some meanwhile: theirs stay
            changed = {r: c for r, c in changed.items() if r not in entries}
        if changed:
            write_lock(lock_path, {**entries, **changed})
    for ref, commit in changed.items():
        old = entries.get(ref, UNLOCKED)
        print(f"{ref.repo_id}@{ref.revision}: {old} -> {commit} ({resolved[ref][1]})")
    print(f"{lock_path}: {len(changed)} entr{'y' if len(changed) == 1 else 'ies'} changed",
          file=sys.stderr)  # fmt: skip
