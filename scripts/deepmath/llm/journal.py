"""The resume journal: one JSON line per finished request, flushed at once, so a rerun replays what
was paid for and sends only the rest.
"""

from __future__ import annotations

import asyncio
import fcntl
import json
import logging
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from deepmath.io import DeepmathError
from deepmath.llm.request import Request

log = logging.getLogger("deepmath.llm")


JOURNAL_VERSION = 1
_SKIP_WARNINGS = 10  # unreadable lines logged at WARNING per replay; the rest at DEBUG


def journal_entry(
    req: Request,
    role: str,
    result: Mapping[str, Any],
    *,
    attempts: int,
    latency_s: float,
) -> dict[str, Any]:
    """One journal line for a finished request; every writer (the HTTP client, the offline
    engine) builds it here so replay reads one format.

    ``result``: ``texts``, ``finish_reasons``, ``reasoning`` and ``usage`` (prompt and
    completion tokens) of the response.
    """
    return {
        "v": JOURNAL_VERSION,
        "key": req.key,
        "role": role,
        "model": req.model,
        "sample": req.sample,
        **result,
        "attempts": attempts,
        "latency_s": round(latency_s, 4),
        "finished_at": round(time.time(), 3),
    }


# What a replay needs of an entry (the rest is for people reading the file).
_KEPT_FIELDS = ("texts", "finish_reasons", "reasoning", "usage", "attempts", "latency_s")


def _kept(entry: Mapping[str, Any]) -> dict[str, Any]:
    return {k: entry[k] for k in (*_KEPT_FIELDS, "finished_at") if k in entry}


def entry_problem(entry: Any) -> str | None:
    """Why a journal line is not a usable entry (None: it is one).

    A replayed entry stands in for a paid response, so it must look like one: a key, the
    current format version, one or more texts that are strings, and finish reasons / usage of
    the right shape. Anything else would be counted as done and then break the stage (or
    silently change its output).
    """
    if not isinstance(entry, dict):
        return f"not an object ({type(entry).__name__})"
    if not isinstance(entry.get("key"), str) or not entry["key"]:
        return "no key"
    if entry.get("v") != JOURNAL_VERSION:
        return f"format version {entry.get('v')!r}, expected {JOURNAL_VERSION}"
    texts = entry.get("texts")
    if not isinstance(texts, list) or not texts:
        return f"texts must be a non-empty list, got {type(texts).__name__} {str(texts)[:40]}"
    if not all(isinstance(t, str) for t in texts):
        return "texts must be strings"
    reasons = entry.get("finish_reasons")
    if reasons is not None and (not isinstance(reasons, list) or len(reasons) != len(texts)):
        return "finish_reasons must be a list with one reason per text"
    reasoning = entry.get("reasoning")
    if reasoning is not None and (not isinstance(reasoning, list) or len(reasoning) != len(texts)):
        return "reasoning must be a list with one entry per text"
    usage = entry.get("usage")
    if usage is not None and not isinstance(usage, dict):
        return "usage must be an object"
    return None


class Journal:
    """Append-only JSON-lines journal of finished requests, one exclusive writer at a time.

    Each line: ``{"v", "key", "role", "model", "sample", "texts", "finish_reasons",
    "reasoning", "usage": {"prompt_tokens", "completion_tokens"}, "attempts", "latency_s",
    "finished_at"}``. No request text, no headers, no key.
    """

    def __init__(self, path: str | os.PathLike[str]):
        self.path = Path(path)
        self._fh: Any = None
        self.entries: dict[str, dict[str, Any]] = {}
        self.skipped_lines = 0
        self._written = self._synced = 0
        self._sync_task: asyncio.Future[None] | None = None

    def __enter__(self) -> Journal:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def open(self) -> dict[str, dict[str, Any]]:
        """Lock the journal, replay it, and repair a torn last line; returns key → entry.

        The file is read line by line and each entry is checked (:func:`entry_problem`) and
        kept with only the fields a replay needs, so a journal of hundreds of thousands of
        entries costs about its own size in memory, not many times it. A line that is not a
        valid entry is dropped with a warning: its request is sent again.
        """
        self.path.parent.mkdir(parents=True, exist_ok=True)
        created = not self.path.exists()
        self._fh = open(self.path, "a+b")  # noqa: SIM115 (held open across appends)
        try:
            fcntl.flock(self._fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._fh.close()
            self._fh = None
            raise DeepmathError(
                f"journal {self.path} is in use by another process (is the same job running twice?)"
            ) from None
        if created:
            _fsync_dir(self.path.parent)
        self._fh.seek(0)
        size = 0
        number = 0
        tail = b""
        for line in self._fh:
            number += 1
            if not line.endswith(b"\n"):
                tail = line  # the last line, cut short when a job was killed mid-write
                break
            size += len(line)
            if line.strip():
                self._load(line, number)
        if tail:
            if self._load(tail, number, last=True):
                self._write(b"\n")  # a whole entry whose newline never made it
            else:
                os.ftruncate(self._fh.fileno(), size)
                os.fsync(self._fh.fileno())
                log.warning(
                    "journal %s: dropped a torn last line (%d bytes; the job was killed "
                    "mid-write); that request will be sent again",
                    self.path,
                    len(tail),
                )
        if self.skipped_lines:
            log.warning(
                "journal %s: %d line(s) were not valid entries and were dropped; their "
                "requests will be sent again",
                self.path,
                self.skipped_lines,
            )
        return self.entries

    def _load(self, line: bytes, number: int, last: bool = False) -> bool:
        try:
            entry = json.loads(line)
        except ValueError:
            problem = "not JSON"
        else:
            problem = entry_problem(entry)
        if problem is not None:
            if not last:
                self.skipped_lines += 1
                if self.skipped_lines <= _SKIP_WARNINGS:
                    log.warning("journal %s: line %d dropped: %s", self.path, number, problem)
            return False
        self.entries.setdefault(entry["key"], _kept(entry))
        return True

    def _write(self, data: bytes) -> None:
        self._fh.write(data)
        self._fh.flush()
        os.fsync(self._fh.fileno())

    async def append(self, entry: Mapping[str, Any]) -> None:
        """Append one entry; returns once it is on disk (written, flushed, fsynced).

        The line is written and flushed at once (a SIGKILL after that loses nothing); the fsync
        runs in a thread and is shared by every line written meanwhile (group commit), so a
        slow disk neither blocks the event loop nor caps throughput at one fsync per request.
        """
        line = json.dumps(entry, ensure_ascii=False, separators=(",", ":")) + "\n"
        self._fh.write(line.encode())
        self._fh.flush()
        self._written += 1
        self.entries.setdefault(entry["key"], _kept(entry))
        target = self._written
        while self._synced < target:
            if self._sync_task is None:
                self._sync_task = asyncio.ensure_future(self._sync())
            await asyncio.shield(self._sync_task)

    async def _sync(self) -> None:
        try:
            target = self._written
            await asyncio.to_thread(os.fsync, self._fh.fileno())
            self._synced = max(self._synced, target)
        finally:
            self._sync_task = None

    def close(self) -> None:
        if self._fh is not None:
            if self._synced < self._written:
                os.fsync(self._fh.fileno())
            self._fh.close()  # closing releases the flock
            self._fh = None


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def read_journal(path: str | os.PathLike[str]) -> dict[str, dict[str, Any]]:
    """Entries of a journal without locking or repairing it (for tests and reports)."""
    entries: dict[str, dict[str, Any]] = {}
    p = Path(path)
    if not p.exists():
        return entries
    for line in p.read_bytes().split(b"\n"):
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if entry_problem(entry) is None:
            entries.setdefault(entry["key"], entry)
    return entries
