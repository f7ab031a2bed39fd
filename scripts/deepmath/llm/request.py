"""One chat or completion request and its answer. A request's key hashes what decides the answer
(model, messages, effective params, sample index), never its position or URL.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from deepmath.io import DeepmathError
from deepmath.llm.roles import RoleConfig, normalize_params


def _canonical(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, ensure_ascii=False, separators=(",", ":"))


def request_key(
    model: str,
    messages: Sequence[Mapping[str, Any]] | None,
    prompt: str | None,
    params: Mapping[str, Any],
    sample: int,
    identity: str | None = None,
) -> str:
    """sha256 of (model, its identity when known, messages or prompt, effective params, sample
    index). Without an identity the key is what it was before identities existed."""
    body: dict[str, Any] = {"model": model, "params": dict(params), "sample": sample}
    if identity is not None:
        body["identity"] = identity
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
    identity: str | None = None  # the served model's identity (RoleConfig.identity)
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
        key = request_key(
            self.model, self.messages, self.prompt, self.params, self.sample, self.identity
        )
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
    return Request(role.model, msgs, prompt, merged, sample, meta, role.identity)


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


def full_text(response: object) -> str | None:
    """A response as one text: the reasoning (when the server split it off) and the answer,
    joined as R1 writes them (``<think>...</think>`` then the answer)."""
    texts = getattr(response, "texts", None)
    if not texts:
        return None
    reasoning = (getattr(response, "reasoning", None) or [None])[0]
    return f"<think>\n{reasoning}\n</think>\n{texts[0]}" if reasoning else texts[0]
