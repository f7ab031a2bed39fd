"""One resumable client for every LLM step.

Every LLM stage (judge, difficulty, rewrite, solve, topic) talks to an OpenAI-compatible endpoint
through the official ``openai`` client. The endpoint is either external (``base_url`` +
``api_key_env`` in the role config) or a vLLM server the rule started (``serve:``; the server
manager hands us its URL). Same code either way.

The stage-facing API is small::

    role = load_role(config, "judge", base_url=served_url)        # validated role config
    reqs = [make_request(role, messages, sample=i, meta=row_id) for ...]
    resps = run_requests(role, reqs, journal_path)                 # same order as reqs
    write_usage(f"{output}.usage.json", [resps.usage])

Why a journal: LLM calls are the expensive part of the curation ($138K of GPT-4o in the paper).
Each finished request is appended (one JSON line, flushed and fsynced) to a journal that lives
outside the rule's declared outputs, so Snakemake never deletes it. A rerun replays it and only
sends what is missing: a killed job never pays twice for a finished request. Requests are keyed
by a hash of (model, messages or prompt, effective sampling params, sample index), never by
position, so reordering or resharding inputs still hits the journal.

Why our own retries: the openai client's built-in retries are switched off (``max_retries=0``)
so that every attempt is ours: counted, logged in words, with exponential backoff and jitter, and
a final error that names the role and endpoint. Secrets are read from the environment variable
the config names, only when something has to be sent, and are scrubbed from every message we
produce; journals and usage files never contain headers.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import json
import logging
import os
import random
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from deepmath import schema
from deepmath.io import DeepmathError, timeout_scale, write_json

log = logging.getLogger("deepmath.llm")

# The openai/httpx DEBUG logs dump request options and response headers; keep them quiet so a
# verbose run cannot leak anything sensitive into a rule's log.
for _name in ("openai", "httpx", "httpcore", "httpx2", "httpcore2"):
    logging.getLogger(_name).setLevel(logging.WARNING)

JOURNAL_VERSION = 1

# Keys a role config may carry (config `llm.<role>`).
# Every key of a role, its type and range live in config/schema.yaml ($defs/role); the
# defaults here are those of keys the schema leaves unset.
ROLE_KEYS = schema.descriptions("role")
ROLE_DEFAULTS: dict[str, Any] = {
    "max_concurrency": 8,
    "timeout_s": 600.0,
    "max_retries": 5,
    "backoff_s": 1.0,
    "backoff_max_s": 60.0,
    "on_rejected": "drop",
    "progress_s": 60.0,
    "stall_s": 300.0,
}
FLOAT_PARAMS = {
    key
    for key, sub in schema.definition("sampling_params")["properties"].items()
    if "number" in sub.get("type", ())
}

RETRYABLE_STATUS = {408, 409, 425, 429} | set(range(500, 600))
_RETRY_WARNINGS = 10  # retries logged at WARNING per run; the rest at DEBUG
# Keys never include the URL, so requests can be built (and checked against the journal)
# before any server exists. This stand-in URL is never contacted: a request that would go to
# it is a bug and fails at once.
NOT_STARTED_URL = "http://127.0.0.1:9/v1"


class LLMError(DeepmathError):
    """A request failed for good; the message names the role and endpoint, never a key."""

    def __init__(self, message: str, *, role: str = "", base_url: str = "", attempts: int = 0):
        super().__init__(message)
        self.role, self.base_url, self.attempts = role, base_url, attempts


# --------------------------------------------------------------------------- role config


def safe_url(url: str) -> str:
    """The URL without user info, query or fragment (where keys sometimes hide)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


@dataclass(frozen=True)
class RoleConfig:
    """A validated `llm.<role>` config; ``base_url`` is always set (served or external)."""

    name: str
    model: str
    base_url: str
    api_key_env: str | None = None
    params: Mapping[str, Any] = field(default_factory=dict)
    max_concurrency: int = 8
    timeout_s: float = 600.0
    max_retries: int = 5
    retry_budget: int | None = None  # None: one extra retry per request of the job
    backoff_s: float = 1.0
    backoff_max_s: float = 60.0
    prices: Mapping[str, float] | None = None
    served: bool = False
    on_rejected: str = "drop"
    progress_s: float = 60.0
    stall_s: float = 300.0

    @property
    def endpoint(self) -> str:
        """The base URL, safe to print."""
        return safe_url(self.base_url)

    def api_key(self) -> str:
        """The key from the environment variable the config names ("EMPTY" when none)."""
        if not self.api_key_env:
            return "EMPTY"
        value = os.environ.get(self.api_key_env, "")
        if not value:
            raise DeepmathError(
                f"LLM role '{self.name}': environment variable {self.api_key_env} is not set; "
                f"it must hold the API key for {self.endpoint} (llm.{self.name}.api_key_env)"
            )
        return value


def normalize_params(params: Mapping[str, Any] | None, where: str = "params") -> dict[str, Any]:
    """Check sampling params ($defs/sampling_params) and normalise their types, so that `1`
    and `1.0` hash alike, a single stop string is a list, and null means unset."""
    if params is None:
        return {}
    problems = schema.check(params, "sampling_params", where)
    if problems:
        raise DeepmathError("; ".join(problems))
    out: dict[str, Any] = {}
    for key, value in params.items():
        if value is None:
            continue
        if key in FLOAT_PARAMS:
            value = float(value)
        elif key == "stop" and isinstance(value, str):
            value = [value]
        out[key] = value
    return out


def role_config(name: str, cfg: Mapping[str, Any], *, base_url: str | None = None) -> RoleConfig:
    """Validate config `llm.<name>`; ``base_url`` is the URL of the server a `serve:` role got.

    Raises DeepmathError listing every problem, each naming the dotted key.
    """
    where = f"llm.{name}"
    problems = schema.check(cfg, "role", where)
    if problems:
        lines = "\n".join(f"  - {p}" for p in problems)
        raise DeepmathError(f"invalid LLM role config ({len(problems)} problem(s)):\n{lines}")
    served = cfg.get("serve") is not None
    if served and not base_url:
        raise DeepmathError(
            f"{where} uses serve: but no server URL was handed to the client (start the server "
            "first and pass its base_url)"
        )
    url = base_url if served else cfg["base_url"]
    params = normalize_params(cfg.get("params"), f"{where}.params")
    values = {**ROLE_DEFAULTS, **{k: cfg[k] for k in ROLE_DEFAULTS if cfg.get(k) is not None}}
    if "timeout_s" not in cfg:
        values["timeout_s"] = default_timeout_s(params)
    budget, prices = cfg.get("retry_budget"), cfg.get("prices")
    return RoleConfig(
        name=name,
        model=str(cfg["model"]),
        base_url=str(url),
        api_key_env=cfg.get("api_key_env"),
        params=params,
        max_concurrency=int(values["max_concurrency"]),
        timeout_s=float(values["timeout_s"]) * timeout_scale(),
        max_retries=int(values["max_retries"]),
        retry_budget=None if budget is None else int(budget),
        backoff_s=float(values["backoff_s"]),
        backoff_max_s=float(values["backoff_max_s"]),
        prices={k: float(v) for k, v in prices.items()} if prices else None,
        served=served,
        on_rejected=str(values["on_rejected"]),
        progress_s=float(values["progress_s"]),
        stall_s=float(values["stall_s"]),
    )


def default_timeout_s(params: Mapping[str, Any]) -> float:
    """A per-attempt timeout that fits the role: a 4-token judge answer is not a 32K-token
    solution. 120 s of queueing and prefill plus 0.1 s per output token (10 tokens/s, a busy
    server's pace per request), at most an hour; 600 s when max_tokens is not set."""
    tokens = params.get("max_tokens") or params.get("max_completion_tokens")
    if not isinstance(tokens, int) or isinstance(tokens, bool) or tokens < 1:
        return float(ROLE_DEFAULTS["timeout_s"])
    return float(min(3600.0, 120.0 + 0.1 * tokens))


def load_role(config: Mapping[str, Any], name: str, *, base_url: str | None = None) -> RoleConfig:
    """The role `name` from a full workflow config (`config["llm"][name]`)."""
    roles = config.get("llm") or {}
    if name not in roles:
        raise DeepmathError(
            f"missing key 'llm.{name}': no LLM role named '{name}'; defined roles: "
            f"{', '.join(sorted(roles)) or '(none)'}"
        )
    return role_config(name, roles[name], base_url=base_url)


# --------------------------------------------------------------------------- requests


def _canonical(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, ensure_ascii=False, separators=(",", ":"))


def request_key(
    model: str,
    messages: Sequence[Mapping[str, Any]] | None,
    prompt: str | None,
    params: Mapping[str, Any],
    sample: int,
) -> str:
    """sha256 of (model, messages or prompt, effective params, sample index)."""
    body: dict[str, Any] = {"model": model, "params": dict(params), "sample": sample}
    if messages is not None:
        body["messages"] = [dict(m) for m in messages]
    else:
        body["prompt"] = prompt
    return hashlib.sha256(_canonical(body).encode()).hexdigest()


@dataclass(frozen=True)
class Request:
    """One request: chat ``messages`` (→ /v1/chat/completions) or a ``prompt`` (→ /v1/completions).

    ``params`` are the effective sampling params (role params merged with overrides); ``meta`` is
    the caller's, carried through to the Response and never hashed or written to the journal.
    Build it with :func:`make_request`.
    """

    model: str
    messages: tuple[Mapping[str, Any], ...] | None
    prompt: str | None
    params: Mapping[str, Any]
    sample: int = 0
    meta: Any = None
    key: str = field(init=False)

    def __post_init__(self) -> None:
        if (self.messages is None) == (self.prompt is None):
            raise DeepmathError("an LLM request needs exactly one of messages or prompt")
        if self.messages is not None:
            if not self.messages:
                raise DeepmathError("an LLM chat request needs at least one message")
            for msg in self.messages:
                if not isinstance(msg, Mapping) or not isinstance(msg.get("role"), str):
                    raise DeepmathError(f"chat message {msg!r} needs a 'role' string")
                if not isinstance(msg.get("content"), str):
                    raise DeepmathError(f"chat message {msg!r} needs a 'content' string")
        elif not isinstance(self.prompt, str):
            raise DeepmathError(f"an LLM prompt must be a string, got {type(self.prompt)}")
        if isinstance(self.sample, bool) or not isinstance(self.sample, int) or self.sample < 0:
            raise DeepmathError(f"sample index must be an integer >= 0, got {self.sample!r}")
        key = request_key(self.model, self.messages, self.prompt, self.params, self.sample)
        object.__setattr__(self, "key", key)


def make_request(
    role: RoleConfig,
    messages: Sequence[Mapping[str, Any]] | None = None,
    *,
    prompt: str | None = None,
    sample: int = 0,
    params: Mapping[str, Any] | None = None,
    meta: Any = None,
) -> Request:
    """A request for ``role``: its params, overridden by ``params``.

    When the effective params carry a ``seed``, sample ``i`` is sent with ``seed + i`` (as in the
    DeepMath eval script), so k samples of one prompt differ yet stay reproducible.
    """
    merged = {**role.params, **normalize_params(params, "request params")}
    if "seed" in merged:
        merged["seed"] = int(merged["seed"]) + int(sample)
    msgs = None if messages is None else tuple(dict(m) for m in messages)
    return Request(role.model, msgs, prompt, merged, sample, meta)


@dataclass(frozen=True)
class Response:
    """The answer to one Request (``replayed``: it came from the journal, nothing was sent).

    ``texts``/``finish_reasons``/``reasoning`` have one entry per choice (``n`` > 1 gives
    several); ``reasoning`` holds a reasoning parser's separate field where the server has one.
    ``error`` is set (and ``texts`` empty) only with ``run_requests(..., return_errors=True)``.
    """

    request: Request
    texts: tuple[str, ...]
    finish_reasons: tuple[str | None, ...]
    prompt_tokens: int = 0
    completion_tokens: int = 0
    replayed: bool = False
    attempts: int = 0
    latency_s: float = 0.0
    reasoning: tuple[str | None, ...] | None = None
    error: str | None = None

    @property
    def key(self) -> str:
        return self.request.key

    @property
    def text(self) -> str:
        """The first choice's text ("" when the request failed)."""
        return self.texts[0] if self.texts else ""

    @property
    def meta(self) -> Any:
        return self.request.meta

    @classmethod
    def from_entry(cls, request: Request, entry: Mapping[str, Any], replayed: bool) -> Response:
        usage = entry.get("usage") or {}
        reasoning = entry.get("reasoning")
        return cls(
            request=request,
            texts=tuple(entry["texts"]),
            finish_reasons=tuple(entry.get("finish_reasons") or [None] * len(entry["texts"])),
            prompt_tokens=int(usage.get("prompt_tokens") or 0),
            completion_tokens=int(usage.get("completion_tokens") or 0),
            replayed=replayed,
            attempts=int(entry.get("attempts") or 0),
            latency_s=float(entry.get("latency_s") or 0.0),
            reasoning=tuple(reasoning) if reasoning is not None else None,
        )


# --------------------------------------------------------------------------- usage and cost


def cost_usd(prompt_tokens: int, completion_tokens: int, prices: Mapping[str, float]) -> float:
    """Dollars for a token count; ``prices`` are USD per 1M prompt / completion tokens."""
    return (prompt_tokens * prices["prompt"] + completion_tokens * prices["completion"]) / 1e6


@dataclass
class RoleUsage:
    """What one role cost in one job: sent now vs replayed from the journal (paid earlier)."""

    role: str
    model: str
    requests: int = 0  # as asked by the caller, duplicates included
    unique_requests: int = 0
    replayed_requests: int = 0
    replayed_prompt_tokens: int = 0
    replayed_completion_tokens: int = 0
    sent_requests: int = 0  # finished now (and journaled)
    sent_prompt_tokens: int = 0
    sent_completion_tokens: int = 0
    attempts: int = 0  # HTTP attempts made now, retries included
    retries: int = 0
    failed_requests: int = 0
    rejected_requests: int = 0  # refused by the server (4xx) and dropped under on_rejected
    budget_retries: int = 0  # retries past a request's own max_retries (the job's budget)
    elapsed_s: float = 0.0
    prices: Mapping[str, float] | None = None

    def __add__(self, other: RoleUsage) -> RoleUsage:
        if (self.role, self.model) != (other.role, other.model):
            raise DeepmathError(
                f"cannot add usage of role {other.role} ({other.model}) to {self.role} "
                f"({self.model})"
            )
        total = replace(self)
        for name in self.__dataclass_fields__:
            value = getattr(other, name)
            if isinstance(value, int | float) and not isinstance(value, bool):
                setattr(total, name, getattr(self, name) + value)
        total.prices = self.prices or other.prices
        return total

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "model": self.model,
            "requests": self.requests,
            "unique_requests": self.unique_requests,
            "replayed": {
                "requests": self.replayed_requests,
                "prompt_tokens": self.replayed_prompt_tokens,
                "completion_tokens": self.replayed_completion_tokens,
            },
            "sent": {
                "requests": self.sent_requests,
                "prompt_tokens": self.sent_prompt_tokens,
                "completion_tokens": self.sent_completion_tokens,
                "attempts": self.attempts,
                "retries": self.retries,
                "failed_requests": self.failed_requests,
                "rejected_requests": self.rejected_requests,
                "budget_retries": self.budget_retries,
            },
            "elapsed_s": round(self.elapsed_s, 3),
            "prices_usd_per_1m": dict(self.prices) if self.prices else None,
            "cost_usd": None,
        }
        if self.prices:
            sent = cost_usd(self.sent_prompt_tokens, self.sent_completion_tokens, self.prices)
            replayed = cost_usd(
                self.replayed_prompt_tokens, self.replayed_completion_tokens, self.prices
            )
            out["cost_usd"] = {"sent": round(sent, 6), "total": round(sent + replayed, 6)}
        return out


def usage_summary(usages: Iterable[RoleUsage]) -> dict[str, Any]:
    """The `<output>.usage.json` document: per role, plus the priced total.

    ``cost_usd.sent`` is what this job paid; ``cost_usd.total`` adds what earlier (killed) runs
    paid for the journal entries replayed here, i.e. the cost of the artifact.
    """
    by_role: dict[str, RoleUsage] = {}
    for usage in usages:
        by_role[usage.role] = by_role[usage.role] + usage if usage.role in by_role else usage
    roles = {name: u.to_dict() for name, u in sorted(by_role.items())}
    priced = [r["cost_usd"] for r in roles.values() if r["cost_usd"]]
    total = None
    if priced:
        total = {k: round(sum(c[k] for c in priced), 6) for k in ("sent", "total")}
    return {"roles": roles, "cost_usd": total}


def write_usage(path: str | os.PathLike[str], usages: Iterable[RoleUsage]) -> dict[str, Any]:
    """Write the usage document atomically (the caller names it `<output>.usage.json`)."""
    doc = usage_summary(usages)
    write_json(doc, path)
    return doc


# --------------------------------------------------------------------------- journal


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


def full_text(response: object) -> str | None:
    """A response as one text: the reasoning (when the server split it off) and the answer,
    joined as R1 writes them (``<think>...</think>`` then the answer)."""
    texts = getattr(response, "texts", None)
    if not texts:
        return None
    reasoning = (getattr(response, "reasoning", None) or [None])[0]
    return f"<think>\n{reasoning}\n</think>\n{texts[0]}" if reasoning else texts[0]


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
                if self.skipped_lines <= _RETRY_WARNINGS:
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


# --------------------------------------------------------------------------- sending


class _Aborted(Exception):
    """Another request failed for good; this one stops retrying quietly."""


class _Failed(Exception):
    def __init__(self, detail: str, attempts: int, retryable: bool):
        super().__init__(detail)
        self.detail, self.attempts, self.retryable = detail, attempts, retryable


class _Runner:
    """Sends requests with retries.

    A request gets ``max_retries`` retries of its own. Past those it may go on retrying from
    the job's shared ``retry_budget`` as long as the job keeps making progress (another
    request succeeded since it started, or since it last drew from the budget): on a flaky
    endpoint (a share of requests failing at random) one unlucky request then no longer fails
    a whole shard, while a dead endpoint (no
    successes at all) still fails after ``max_retries``.
    """

    def __init__(
        self,
        role: RoleConfig,
        journal: Journal,
        usage: RoleUsage,
        secret: str | None,
        requests: int = 0,
    ):
        self.role, self.journal, self.usage, self.secret = role, journal, usage, secret
        self.abort = asyncio.Event()
        self.client: Any = None
        self.retry_logs = 0
        self.successes = 0
        self.in_flight = 0
        self.last_finish = time.monotonic()
        self.budget = role.retry_budget if role.retry_budget is not None else max(requests, 1)
        self.budget_used = 0

    def redact(self, text: str) -> str:
        if self.secret and self.secret != "EMPTY" and len(self.secret) >= 4:
            text = text.replace(self.secret, "***")
        return text

    def describe(self, err: Exception) -> tuple[str, bool, float | None]:
        """(what went wrong in words, retryable?, server's Retry-After seconds)."""
        import openai

        if isinstance(err, openai.APITimeoutError):
            return f"timed out after {self.role.timeout_s:g} s", True, None
        if isinstance(err, openai.APIConnectionError):
            cause = err.__cause__ or err
            return f"connection error: {type(cause).__name__}: {cause}", True, None
        if isinstance(err, openai.APIStatusError):
            status = err.status_code
            body = err.body if err.body is not None else err.message
            text = body if isinstance(body, str) else json.dumps(body, default=str)
            retry_after = None
            header = err.response.headers.get("retry-after") if err.response is not None else None
            if header:
                try:
                    retry_after = max(0.0, float(header))
                except ValueError:
                    retry_after = None
            hint = ""
            if status in (401, 403):
                hint = (
                    f" (check the key in ${self.role.api_key_env})" if self.role.api_key_env else ""
                )
            return f"HTTP {status}{hint}: {text[:500]}", status in RETRYABLE_STATUS, retry_after
        return f"{type(err).__name__}: {str(err)[:500]}", False, None

    def delay(self, attempt: int, retry_after: float | None) -> float:
        """Exponential backoff with equal jitter; a server's Retry-After is a lower bound."""
        cap = min(self.role.backoff_max_s, self.role.backoff_s * 2 ** (attempt - 1))
        wait = cap / 2 + random.uniform(0, cap / 2)
        if retry_after is not None:
            wait = max(wait, min(retry_after, self.role.backoff_max_s))
        return wait

    async def call(self, req: Request) -> Any:
        params = dict(req.params)
        extra = params.pop("extra_body", None) or {}
        body = {**params, **extra}
        if req.messages is not None:
            return await self.client.chat.completions.create(
                model=req.model, messages=[dict(m) for m in req.messages], extra_body=body
            )
        return await self.client.completions.create(
            model=req.model, prompt=req.prompt, extra_body=body
        )

    def parse(self, req: Request, resp: Any) -> dict[str, Any]:
        choices = sorted(resp.choices or [], key=lambda c: c.index or 0)
        if not choices:
            raise _Failed("the server answered with no choices", 0, retryable=False)
        texts: list[str] = []
        reasoning: list[str | None] = []
        for choice in choices:
            if req.messages is not None:
                msg = choice.message
                texts.append(msg.content or "")
                thought = getattr(msg, "reasoning_content", None) or getattr(msg, "reasoning", None)
                reasoning.append(thought if isinstance(thought, str) else None)
            else:
                texts.append(choice.text or "")
                reasoning.append(None)
        usage = resp.usage
        return {
            "texts": texts,
            "finish_reasons": [c.finish_reason for c in choices],
            "reasoning": reasoning if any(r is not None for r in reasoning) else None,
            "usage": {
                "prompt_tokens": int(getattr(usage, "prompt_tokens", 0) or 0),
                "completion_tokens": int(getattr(usage, "completion_tokens", 0) or 0),
            },
        }

    async def send(self, req: Request) -> dict[str, Any]:
        """One request with retries; returns the journal entry (already appended)."""
        role = self.role
        total = role.max_retries + 1
        last = "no attempt made"
        attempt = 0
        seen = self.successes  # the job's successes when this request started
        while True:
            attempt += 1
            if self.abort.is_set():
                raise _Aborted
            self.usage.attempts += 1
            start = time.monotonic()
            self.in_flight += 1
            try:
                resp = await self.call(req)
            except Exception as err:  # noqa: BLE001 - every failure is classified below
                self.in_flight -= 1
                detail, retryable, retry_after = self.describe(err)
                last = self.redact(detail)
                if not retryable:
                    raise _Failed(last, attempt, retryable=False) from None
                if attempt >= total:
                    progressing = self.successes > seen
                    if not progressing or self.budget_used >= self.budget:
                        break
                    self.budget_used += 1  # the job moves on: one more try from its budget
                    self.usage.budget_retries += 1
                    seen = self.successes  # the next one needs progress again
                wait = self.delay(min(attempt, total), retry_after)
                self.usage.retries += 1
                self.retry_logs += 1
                level = logging.WARNING if self.retry_logs <= _RETRY_WARNINGS else logging.DEBUG
                log.log(
                    level,
                    "role %s: request %s attempt %d/%d failed (%s); retrying in %.1f s%s",
                    role.name,
                    req.key[:12],
                    attempt,
                    total,
                    last[:200],
                    wait,
                    "; further retries are logged at debug level"
                    if self.retry_logs == _RETRY_WARNINGS
                    else "",
                )
                try:
                    await asyncio.wait_for(self.abort.wait(), timeout=wait)
                except TimeoutError:
                    continue
                raise _Aborted from None
            self.in_flight -= 1
            self.last_finish = time.monotonic()
            latency = time.monotonic() - start
            try:
                result = self.parse(req, resp)
            except _Failed as err:
                raise _Failed(err.detail, attempt, retryable=False) from None
            entry = journal_entry(req, role.name, result, attempts=attempt, latency_s=latency)
            await self.journal.append(entry)
            self.successes += 1
            return entry
        raise _Failed(last, attempt, retryable=True)


async def _watch(runner: _Runner, usage: RoleUsage, total: int) -> None:
    """Progress lines every ``progress_s`` (readable in a Slurm log, where no progress bar
    draws), and a warning when nothing has finished for ``stall_s``: a server that accepts
    requests and never answers is noticed in minutes, not after every retry timed out."""
    role = runner.role
    start = time.monotonic()
    warned_at = 0.0
    while True:
        await asyncio.sleep(role.progress_s)
        now = time.monotonic()
        done = usage.sent_requests
        log.info(
            "role %s: %d/%d done, %d in flight, %d failed, %d retries, %.2f req/s",
            role.name,
            done,
            total,
            runner.in_flight,
            usage.failed_requests,
            usage.retries,
            done / max(now - start, 1e-9),
        )
        quiet = now - runner.last_finish
        if quiet >= role.stall_s and now - warned_at >= role.stall_s:  # once per stall_s
            warned_at = now
            log.warning(
                "role %s: no request has finished for %.0f s (%d in flight) at %s; the "
                "endpoint may be hung or overloaded (each attempt times out after %g s, "
                "%d retries each)",
                role.name,
                quiet,
                runner.in_flight,
                role.endpoint,
                role.timeout_s,
                role.max_retries,
            )


async def arun_requests(
    role: RoleConfig,
    requests: Sequence[Request],
    journal_path: str | os.PathLike[str] | Journal,
    *,
    progress: bool = True,
    return_errors: bool = False,
) -> Responses:
    """Async form of :func:`run_requests`."""
    start = time.monotonic()
    usage = RoleUsage(role.name, role.model, requests=len(requests), prices=role.prices)
    unique: dict[str, Request] = {}
    for req in requests:
        if req.model != role.model:
            raise DeepmathError(
                f"request for model {req.model!r} given to role '{role.name}' ({role.model})"
            )
        unique.setdefault(req.key, req)
    usage.unique_requests = len(unique)
    errors: dict[str, str] = {}
    first_failure: LLMError | None = None
    opened = (
        contextlib.nullcontext(journal_path)
        if isinstance(journal_path, Journal)
        else Journal(journal_path)
    )
    with opened as journal:
        done = dict(journal.entries)
        replayed = {k for k in unique if k in done}
        todo = [req for k, req in unique.items() if k not in done]
        for key in replayed:
            entry_usage = done[key].get("usage") or {}
            usage.replayed_requests += 1
            usage.replayed_prompt_tokens += int(entry_usage.get("prompt_tokens") or 0)
            usage.replayed_completion_tokens += int(entry_usage.get("completion_tokens") or 0)
        unused = len(done) - len(replayed)
        log.info(
            "role %s (%s at %s): %d requests, %d unique; %d already in journal %s%s; "
            "sending %d, up to %d at once",
            role.name,
            role.model,
            role.endpoint,
            len(requests),
            len(unique),
            len(replayed),
            journal.path,
            f" ({unused} other journal entries unused)" if unused else "",
            len(todo),
            role.max_concurrency,
        )
        if todo and role.base_url == NOT_STARTED_URL:
            raise DeepmathError(
                f"role {role.name}: {len(todo)} request(s) to send but no server was started "
                "for it (the stand-in URL is never contacted); this is a bug, please report it"
            )
        if todo:
            import openai
            from tqdm import tqdm

            secret = role.api_key()
            runner = _Runner(role, journal, usage, secret, requests=len(todo))
            bar = tqdm(
                total=len(unique),
                initial=len(replayed),
                desc=f"llm {role.name}",
                unit="req",
                disable=not progress,
                file=sys.stderr,
                mininterval=0.5 if sys.stderr.isatty() else 10.0,
                dynamic_ncols=True,
            )
            queue = iter(todo)

            async def worker() -> None:
                nonlocal first_failure
                while not runner.abort.is_set():
                    req = next(queue, None)
                    if req is None:
                        return
                    try:
                        entry = await runner.send(req)
                    except _Aborted:
                        return
                    except _Failed as err:
                        usage.failed_requests += 1
                        what = "failed" if err.retryable else "failed with a non-retryable error"
                        message = (
                            f"LLM role '{role.name}' (model {role.model}) at {role.endpoint}: "
                            f"request {req.key[:12]} {what} after {err.attempts} attempt(s); "
                            f"last error: {err.detail}"
                        )
                        if not err.retryable and role.on_rejected == "drop":
                            # the server will refuse it on every rerun too: the row goes on
                            # without an answer instead of failing the shard forever
                            usage.rejected_requests += 1
                            errors[req.key] = message
                            log.warning("%s; dropped (on_rejected: drop)", message)
                            bar.update()
                            continue
                        if return_errors:
                            errors[req.key] = message
                            log.error("%s", message)
                            bar.update()
                            continue
                        if first_failure is None:
                            first_failure = LLMError(
                                message,
                                role=role.name,
                                base_url=role.endpoint,
                                attempts=err.attempts,
                            )
                        runner.abort.set()
                        return
                    done[req.key] = entry
                    usage.sent_requests += 1
                    usage.sent_prompt_tokens += entry["usage"]["prompt_tokens"]
                    usage.sent_completion_tokens += entry["usage"]["completion_tokens"]
                    bar.update()

            async with openai.AsyncOpenAI(
                base_url=role.base_url,
                api_key=secret,
                max_retries=0,
                timeout=role.timeout_s,
            ) as client:
                runner.client = client
                workers = min(role.max_concurrency, len(todo))
                watch = asyncio.ensure_future(_watch(runner, usage, len(todo)))
                try:
                    await asyncio.gather(*(worker() for _ in range(workers)))
                finally:
                    watch.cancel()
                    bar.close()
    usage.elapsed_s = time.monotonic() - start
    if first_failure is not None:
        log.error(
            "role %s: stopping; %d requests finished and are journaled for the rerun",
            role.name,
            usage.sent_requests,
        )
        raise first_failure
    sent = usage.sent_requests
    log.info(
        "role %s: done in %.1f s; sent %d (%.2f req/s, %d retries, %d tokens in, %d out), "
        "replayed %d, failed %d",
        role.name,
        usage.elapsed_s,
        sent,
        sent / usage.elapsed_s if usage.elapsed_s > 0 else 0.0,
        usage.retries,
        usage.sent_prompt_tokens,
        usage.sent_completion_tokens,
        usage.replayed_requests,
        usage.failed_requests,
    )
    out = Responses(usage=usage)
    for req in requests:
        if req.key in errors:
            out.append(Response(req, (), (), error=errors[req.key]))
        else:
            out.append(Response.from_entry(req, done[req.key], replayed=req.key in replayed))
    return out


class Responses(list[Response]):
    """The responses of one :func:`run_requests` call, in request order, plus its usage."""

    def __init__(self, items: Iterable[Response] = (), *, usage: RoleUsage):
        super().__init__(items)
        self.usage = usage


def run_requests(
    role: RoleConfig,
    requests: Sequence[Request],
    journal_path: str | os.PathLike[str] | Journal,
    *,
    progress: bool = True,
    return_errors: bool = False,
) -> Responses:
    """Send every request not yet in the journal; return all responses in request order.

    ``journal_path`` is a path, or a :class:`Journal` the caller holds open (it is left open).
    Requests with the same key are sent once. On a request that fails for good (retries spent,
    or a non-retryable 4xx) no new request starts, the ones in flight finish and are journaled,
    and an :class:`LLMError` naming the role and endpoint is raised; with ``return_errors`` the
    run goes on and that request's Response carries ``error`` instead (it is not journaled, so a
    rerun tries it again). ``.usage`` on the result holds the token and request counts.
    """
    return asyncio.run(
        arun_requests(role, requests, journal_path, progress=progress, return_errors=return_errors)
    )
