"""Servers shared by a local run's jobs (``share: workflow``), and the ``with`` block every stage
uses to get an endpoint.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import shutil
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from deepmath.io import (
    DeepmathError,
    write_json,
)
from deepmath.procs import (
    STOP_GRACE_S,
    group_members,
    pid_alive,
    pid_start_time,
    signals_raise,
    stop_group,
)
from deepmath.serve.config import ServeConfig, model_dir_for, role_serve_config, with_resolved_dtype
from deepmath.serve.server import ManagedServer, endpoint_ready

log = logging.getLogger("deepmath.serve")


REGISTRY_SUFFIX = ".json"


def server_key(cfg: ServeConfig, model_dir: str | os.PathLike[str]) -> str:
    """Registry key of a shared server: a hash of the model folder, what it holds (its identity:
    a server left running from before a retrain at the same path is not reused for the new
    weights) and everything it is run with."""
    from deepmath.fingerprint import model_digest

    skip = ("startup_timeout_s", "share", "gpus")  # not part of how the server runs
    ident = {k: v for k, v in asdict(cfg).items() if k not in skip}
    ident["model_dir"] = str(Path(model_dir).resolve())
    ident["model"] = model_digest(model_dir)
    ident["env"] = dict(sorted(cfg.env.items()))
    blob = json.dumps(ident, sort_keys=True, default=list)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


@contextlib.contextmanager
def _locked(path: Path, timeout_s: float | None = None) -> Iterator[bool]:
    """An exclusive flock on ``path``; yields False if ``timeout_s`` passed without it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as fh:
        got = False
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while True:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | (fcntl.LOCK_NB if deadline else 0))
                got = True
                break
            except BlockingIOError:
                if time.monotonic() > deadline:  # type: ignore[operator]
                    break
                time.sleep(0.2)
        try:
            yield got
        finally:
            if got:
                fcntl.flock(fh, fcntl.LOCK_UN)


def _read_entry(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def entry_state(entry: Mapping[str, Any], *, checks: int = 3) -> str:
    """``healthy``, ``unhealthy`` (running, not answering) or ``dead``."""
    pid = entry.get("pid")
    if not isinstance(pid, int) or not pid_alive(pid, entry.get("start_time")):
        return "dead"
    for i in range(checks):
        if endpoint_ready(entry["base_url"], entry["served_name"], timeout=10):
            return "healthy"
        if i + 1 < checks:
            time.sleep(1)
    return "unhealthy"


def _stop_entry(entry: Mapping[str, Any], grace_s: float) -> bool:
    """Stop a registered server if it is still ours; True if something was stopped."""
    pid = entry.get("pid")
    if not isinstance(pid, int):
        return False
    start = entry.get("start_time")
    if pid_alive(pid) and start is not None and pid_start_time(pid) != start:
        return False  # the pid now belongs to someone else
    stopped = bool(group_members(pid))
    stop_group(pid, grace_s=grace_s)
    if entry.get("state_dir"):
        shutil.rmtree(Path(entry["state_dir"]) / "tmp", ignore_errors=True)
    if entry.get("rpc_dir") and Path(entry["rpc_dir"]).name.startswith("vllm-rpc-"):
        shutil.rmtree(entry["rpc_dir"], ignore_errors=True)
    return stopped


def acquire(
    cfg: ServeConfig,
    model_dir: str | os.PathLike[str],
    *,
    registry: str | os.PathLike[str],
    command: Sequence[str] | None = None,
    python: str | None = None,
) -> dict[str, Any]:
    """A healthy shared server for (model dir, args): reused if registered, else started detached.

    Returns its registry entry (``base_url``, ``pid``, ``port``, ``log``, ...) plus ``reused``.
    Concurrent callers serialise on a lock per key, so only the first one starts the server.
    """
    registry = Path(registry)
    if command is None:
        cfg = with_resolved_dtype(cfg)  # the key names the dtype the server really runs
    key = server_key(cfg, model_dir)
    path = registry / f"{key}{REGISTRY_SUFFIX}"
    with _locked(registry / f"{key}.lock"):
        entry = _read_entry(path)
        if entry is not None:
            state = entry_state(entry)
            if state == "healthy":
                log.info(
                    "reusing shared server %s (pid %s, key %s)",
                    entry["base_url"],
                    entry["pid"],
                    key,
                )
                return {**entry, "reused": True}
            log.warning(
                "registered server %s (pid %s) is %s: cleaning up",
                entry.get("base_url"),
                entry.get("pid"),
                state,
            )
            _stop_entry(entry, grace_s=STOP_GRACE_S)
            path.unlink(missing_ok=True)
        server = ManagedServer(
            cfg,
            model_dir,
            state_dir=registry / key,
            detached=True,
            command=command,
            python=python,
        )

        def register(srv: ManagedServer) -> None:
            write_json({**srv.info(), "key": key}, path)

        with signals_raise():
            try:
                server.start(on_launch=register)
            except BaseException:
                path.unlink(missing_ok=True)
                raise
        entry = {**server.info(), "key": key, "startup_s": server.started_s}
        write_json(entry, path)
        return {**entry, "reused": False}


def registry_entries(registry: str | os.PathLike[str]) -> list[tuple[Path, dict[str, Any]]]:
    folder = Path(registry)
    if not folder.is_dir():
        return []
    out = []
    for path in sorted(folder.glob(f"*{REGISTRY_SUFFIX}")):
        entry = _read_entry(path)
        if entry is not None:
            out.append((path, entry))
    return out


def stop_all(
    registry: str | os.PathLike[str], *, grace_s: float = STOP_GRACE_S, lock_timeout_s: float = 60
) -> list[dict[str, Any]]:
    """Stop every registered server and clear the registry; returns entries with ``stopped``."""
    done = []
    for path, entry in registry_entries(registry):
        key = path.name.removesuffix(REGISTRY_SUFFIX)
        with _locked(path.with_name(f"{key}.lock"), timeout_s=lock_timeout_s) as got:
            if not got:
                log.warning(
                    "registry lock for %s held for %.0f s; stopping anyway", key, lock_timeout_s
                )
            entry = _read_entry(path) or entry
            stopped = _stop_entry(entry, grace_s)
            path.unlink(missing_ok=True)
        log.info(
            "%s shared server %s (pid %s)",
            "stopped" if stopped else "cleared stale entry for",
            entry.get("base_url"),
            entry.get("pid"),
        )
        done.append({**entry, "stopped": stopped})
    return done


def registry_status(registry: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Every registered server with its ``state`` (healthy / unhealthy / dead)."""
    return [
        {**entry, "state": entry_state(entry, checks=1)} for _, entry in registry_entries(registry)
    ]


@contextlib.contextmanager
def serving(
    cfg: ServeConfig,
    model_dir: str | os.PathLike[str],
    *,
    state_dir: str | os.PathLike[str],
    registry: str | os.PathLike[str] | None = None,
    log_path: str | os.PathLike[str] | None = None,
) -> Iterator[str]:
    """Yield a base_url: a shared server (``share: workflow`` and a registry) or a per-job one."""
    if cfg.share == "workflow" and registry is not None:
        yield acquire(cfg, model_dir, registry=registry)["base_url"]
        return
    if cfg.share == "workflow":
        log.info("share: workflow but no server registry (not the local executor): per-job server")
    with ManagedServer(cfg, model_dir, state_dir=state_dir, log_path=log_path) as url:
        yield url


@contextlib.contextmanager
def role_endpoint(
    config: Mapping[str, Any],
    role: str,
    *,
    state_dir: str | os.PathLike[str],
    registry: str | os.PathLike[str] | None = None,
    log_path: str | os.PathLike[str] | None = None,
    model_dir: str | os.PathLike[str] | None = None,
) -> Iterator[str | None]:
    """The base_url for ``llm.<role>``: a served one, or None for an external ``base_url`` role.

    Pass the result to ``deepmath.llm.load_role(config, role, base_url=...)``.
    """
    llm = config.get("llm") or {}
    if role not in llm:
        raise DeepmathError(f"llm.{role} is not configured; roles: {', '.join(llm) or '(none)'}")
    if not isinstance(llm[role], Mapping) or llm[role].get("serve") is None:
        yield None
        return
    cfg = role_serve_config(role, llm[role], models=config.get("models"))
    folder = Path(model_dir) if model_dir else model_dir_for(config, cfg)
    with serving(cfg, folder, state_dir=state_dir, registry=registry, log_path=log_path) as url:
        yield url
