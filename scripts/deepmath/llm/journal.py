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
DROPPED_SUFFIX = ".dropped"  # lines a repair removed from a journal are kept in <journal>.dropped
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
        self.conflicting_keys: set[str] = set()  # seen again with another answer
        self._written = self._synced = 0
        self._sync_task: asyncio.Future[None] | None = None

    def __enter__(self) -> Journal:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def open(self) -> dict[str, dict[str, Any]]:
        """Lock the journal, replay it, and repair it; returns key → entry.

        The file is read line by line and each entry is checked (:func:`entry_problem`) and
        kept with only the fields a replay needs, so a journal of hundreds of thousands of
        entries costs about its own size in memory, not many times it. A line that is not a
        valid entry is dropped with a warning and removed from the file (the journal is
        rewritten without it, atomically; the line is kept in ``<journal>.dropped``), so the
        warning is not repeated on every replay. Nothing can say whether it was a request of
        this job: if it was, that request is sent again. A torn last line (a job killed
        mid-write) is cut off. A key seen twice keeps its first entry; if the answers differ,
        one warning says how many keys do.
        """
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fh = self._lock()
        self._fh.seek(0)
        size = 0
        number = 0
        tail = b""
        bad: set[int] = set()
        for line in self._fh:
            number += 1
            if not line.endswith(b"\n"):
                tail = line  # the last line, cut short when a job was killed mid-write
                break
            size += len(line)
            if line.strip() and not self._load(line, number):
                bad.add(number)
        whole_tail = bool(tail) and self._load(tail, number, last=True)
        if bad:
            self._remove_lines(bad, whole_tail)
        elif whole_tail:
            self._write(b"\n")  # a whole entry whose newline never made it
        elif tail:
            os.ftruncate(self._fh.fileno(), size)
            os.fsync(self._fh.fileno())
        if tail and not whole_tail:
            log.warning(
                "journal %s: dropped a torn last line (%d bytes; the job was killed mid-write); "
                "if it was a request of this job, that request will be sent again",
                self.path,
                len(tail),
            )
        if self.conflicting_keys:
            log.warning(
                "journal %s: %d key(s) appear more than once with different answers; the first "
                "answer of each is used (the later lines stay in the file)",
                self.path,
                len(self.conflicting_keys),
            )
        return self.entries

    def _lock(self) -> Any:
        """Open the journal for appending and lock it; the file locked is the one at the path
        (a repair by another process may have renamed a new file over it meanwhile)."""
        while True:
            created = not self.path.exists()
            fh = open(self.path, "a+b")  # noqa: SIM115 (held open across appends)
            try:
                fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                fh.close()
                raise DeepmathError(
                    f"journal {self.path} is in use by another process (is the same job "
                    "running twice?)"
                ) from None
            if _same_inode(fh, self.path):
                if created:
                    _fsync_dir(self.path.parent)
                return fh
            fh.close()

    def _remove_lines(self, bad: set[int], whole_tail: bool) -> None:
        """Rewrite the journal without the lines in ``bad`` (numbers from 1), every other line
        kept in order, and keep the removed ones in ``<journal>.dropped``.

        The new file is written next to the journal, locked, fsynced and renamed over it, so a
        crash leaves the old journal or the new one, never half of one, and no other process
        can lock either meanwhile. If the rewrite fails (a full disk), the journal stays as it
        was and the lines are dropped from this replay only.
        """
        tmp = self.path.with_name(f".{self.path.name}.repair")
        dropped = Path(f"{self.path}{DROPPED_SUFFIX}")
        new = None
        try:
            fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND, 0o644)
            new = os.fdopen(fd, "a+b")
            fcntl.flock(new.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            self._fh.seek(0)
            with open(dropped, "ab") as aside:
                for number, line in enumerate(self._fh, start=1):
                    if not line.endswith(b"\n"):
                        if whole_tail:
                            new.write(line + b"\n")
                        break
                    if number in bad:
                        aside.write(line)
                    elif line.strip():
                        new.write(line)
                aside.flush()
                os.fsync(aside.fileno())
            new.flush()
            os.fsync(new.fileno())
            os.replace(tmp, self.path)
            _fsync_dir(self.path.parent)
        except OSError as err:
            if new is not None:
                new.close()
            tmp.unlink(missing_ok=True)
            log.warning(
                "journal %s: could not rewrite it without the dropped lines (they stay in the "
                "file and will be reported again): %s",
                self.path,
                err,
            )
            return
        self._fh.close()
        self._fh = new
        log.warning(
            "journal %s: %d line(s) were not valid entries; removed from the file (kept in %s); "
            "if they were requests of this job, those requests will be sent again",
            self.path,
            len(bad),
            dropped,
        )

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
                    log.warning(
                        "journal %s: line %d dropped (%s); if it was a request of this job, "
                        "that request will be sent again",
                        self.path,
                        number,
                        problem,
                    )
            return False
        kept = _kept(entry)
        first = self.entries.setdefault(entry["key"], kept)
        if first is not kept and _answer(first) != _answer(kept):
            self.conflicting_keys.add(entry["key"])
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


def _answer(entry: Mapping[str, Any]) -> tuple[Any, ...]:
    """What a journal entry answers (not when or after how many attempts)."""
    return entry.get("texts"), entry.get("finish_reasons"), entry.get("reasoning")


def _same_inode(fh: Any, path: Path) -> bool:
    try:
        held, there = os.fstat(fh.fileno()), os.stat(path)
    except FileNotFoundError:
        return False
    return (held.st_dev, held.st_ino) == (there.st_dev, there.st_ino)


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
