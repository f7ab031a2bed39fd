"""What a failed request means for the job: retry it, drop it, or fail the job; and the error
that says so.

Every failed attempt is one of three kinds. Transient (429, 5xx, timeouts, dropped
connections): retried. Refused for the request's own content (400, 413, 422: a prompt longer
than the context, a value the server will not take for this prompt): retrying is pointless, and
under ``on_rejected: drop`` the row goes on without an answer, counted with its reason, as long
as such refusals stay a minority of the job. Anything else (a wrong key, a model or route the
endpoint lacks, any other 4xx): every request would meet it, so the job fails at once, naming
the role, the endpoint and what the server said, and its stage writes no output.

This module only classifies and words; :mod:`deepmath.llm.client` sends, retries and decides
when to stop. Nothing here does I/O: the models an endpoint serves (to explain a 404) are
listed by the client and handed in.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from deepmath.llm.request import Request
from deepmath.llm.roles import LLMError, RoleConfig
from deepmath.llm.usage import RoleUsage

RETRYABLE_STATUS = {408, 409, 425, 429} | set(range(500, 600))

# Refusals of one request for what it asks (too long for the context, a value out of range for
# this prompt, a body too large): the only failures `on_rejected: drop` may drop.
CONTENT_REFUSALS = {400, 413, 422}

# Past this share of a job's requests refused for their content, the role is at fault (say,
# max_tokens above the model's context), not a few odd rows: the job fails even under drop.
MAX_REFUSED_SHARE = 0.5
_REFUSED_EARLY = 20  # refusals with not one answer that stop a job early (refuses all)

# What each kind of request asks for, below the base URL (for a 404's explanation).
_ROUTES = {True: "/chat/completions", False: "/completions"}

_NO_OUTPUT = "no request can succeed, so the job stops without writing its output"


def status_kind(status: int) -> str:
    """The kind of failure an HTTP status is: "retry" (transient), "reject" (this request's
    content; may be dropped) or "fatal" (the endpoint would refuse every request)."""
    if status in RETRYABLE_STATUS:
        return "retry"
    return "reject" if status in CONTENT_REFUSALS else "fatal"


@dataclass(frozen=True)
class Fault:
    """One failed attempt, classified.

    ``kind``: "retry" (transient), "reject" (refused for this request's content; may be
    dropped) or "fatal" (the endpoint would refuse every request: fail the job now).
    ``said`` is the server's own message; ``reason`` the refusal as counted in the usage file.
    """

    detail: str
    kind: str
    retry_after: float | None = None
    status: int | None = None
    said: str = ""

    @property
    def reason(self) -> str:
        """The refusal with its numbers blanked, so that "2311 tokens" and "2400 tokens"
        count as one reason."""
        if self.status is None:
            return re.sub(r"\d+", "<n>", self.detail)[:300]
        return f"HTTP {self.status}: " + re.sub(r"\d+", "<n>", self.said)[:300]


class Failed(Exception):
    """A request that failed for good: its last fault and how many attempts it took."""

    def __init__(self, fault: Fault, attempts: int):
        super().__init__(fault.detail)
        self.fault, self.detail, self.attempts = fault, fault.detail, attempts

    @property
    def retryable(self) -> bool:
        return self.fault.kind == "retry"


def server_message(body: object) -> str:
    """The message in an error body: OpenAI's ``{"error": {"message"}}``, vLLM's flat
    ``{"message"}``, else the body as text."""
    error = body.get("error", body) if isinstance(body, dict) else None
    message = error.get("message") if isinstance(error, dict) else None
    if isinstance(message, str) and message:
        return message
    return body if isinstance(body, str) else json.dumps(body, default=str)


def failure_message(role: RoleConfig, req: Request, err: Failed) -> str:
    """A request that failed for good, in words: role, model, endpoint, attempts, last error."""
    what = "failed" if err.retryable else "failed with a non-retryable error"
    return (
        f"LLM role '{role.name}' (model {role.model}) at {role.endpoint}: request "
        f"{req.key[:12]} {what} after {err.attempts} attempt(s); last error: {err.detail}"
    )


def _key_hint(role: RoleConfig) -> str:
    """Where the key comes from, to fix a refused one: the variable, or that there is none."""
    if role.api_key_env:
        return f"check the key in ${role.api_key_env} (named by llm.{role.name}.api_key_env)"
    return (
        f"the role sends no API key: set llm.{role.name}.api_key_env to the name of the "
        "environment variable that holds one"
    )


def endpoint_failure(
    role: RoleConfig,
    req: Request,
    err: Failed,
    models: list[str] | None = None,
    unread: str = "",
) -> LLMError:
    """The error for a refusal that every request would meet: what the server said, what it
    means for this role, and which config key to fix.

    ``models`` are the names the endpoint lists at /models (for a 404: a wrong model name or a
    wrong URL), or None where they could not be read, ``unread`` saying why.
    """
    fault = err.fault
    head = f"LLM role '{role.name}' (model {role.model}) at {role.endpoint}"
    said = f"HTTP {fault.status}: {fault.said[:500]}"
    if fault.status == 401:
        why = f"the endpoint refused the API key ({said}); {_key_hint(role)}"
    elif fault.status == 403:
        if role.api_key_env:
            fix = (
                f"the key in ${role.api_key_env} (named by llm.{role.name}.api_key_env) may not "
                f"use this model (llm.{role.name}.model): check both"
            )
        else:
            fix = (
                f"the role sends no API key: set llm.{role.name}.api_key_env to the name of the "
                "environment variable that holds one allowed to use this model"
            )
        why = f"the endpoint refused access to model '{role.model}' ({said}); {fix}"
    elif fault.status == 404:
        route = _ROUTES[req.messages is not None]
        if models is None:
            why = (
                f"{route} is not found there ({said}), and {role.endpoint}/models could not be "
                f"listed either ({unread}): check llm.{role.name}.base_url (an OpenAI-compatible "
                "endpoint's URL usually ends in /v1)"
            )
        elif role.model in models:
            why = (
                f"the endpoint serves model '{role.model}' but answers 404 for {route} "
                f"({said}): check llm.{role.name}.base_url, and whether this endpoint offers "
                f"{route}"
            )
        else:
            shown = models[:20] + (["..."] if len(models) > 20 else [])
            why = (
                f"model '{role.model}' is not served at {role.endpoint}; it serves: {shown!r} "
                f"(llm.{role.name}.model must be one of them; the server said {said})"
            )
    else:
        why = (
            ". The endpoint refuses whatever a request asks (only a refusal of one request's "
            f"content, HTTP 400/413/422, may be dropped): {_NO_OUTPUT}"
            if fault.status is not None
            else ""  # not an answer of the server: say what it was, claim nothing more
        )
        return LLMError(
            f"{failure_message(role, req, err)}{why}",
            role=role.name,
            base_url=role.endpoint,
            attempts=err.attempts,
        )
    return LLMError(
        f"{head}: {why}; {_NO_OUTPUT}", role=role.name, base_url=role.endpoint, attempts=1
    )


def mostly_refused(usage: RoleUsage, *, running: bool) -> bool:
    """Whether the job's requests are mostly refused for their content.

    The share counts every request with an outcome, replayed answers included, so a rerun
    that sends only the few refused ones again is judged like the first run. While the job
    runs it stops early only when the outcome is already sure (more than the share of all its
    requests refused) or when nothing at all has been answered after a good number of
    refusals (a server that refuses everything).
    """
    refused = usage.rejected_requests
    answered = usage.sent_requests + usage.replayed_requests
    if not running:
        return refused > MAX_REFUSED_SHARE * (refused + answered)
    if refused > MAX_REFUSED_SHARE * usage.unique_requests:
        return True
    return refused >= _REFUSED_EARLY and answered == 0


def refused_error(role: RoleConfig, usage: RoleUsage, example: str) -> LLMError:
    """The error of a job whose requests are mostly refused: how many, the server's words."""
    refused = usage.rejected_requests
    answered = usage.sent_requests + usage.replayed_requests
    reasons = "; ".join(
        f"{count} x {reason}"
        for reason, count in sorted(usage.rejected_reasons.items(), key=lambda kv: -kv[1])[:3]
    )
    return LLMError(
        f"LLM role '{role.name}' (model {role.model}) at {role.endpoint}: {refused} of "
        f"{usage.unique_requests} requests were refused for their content, "
        f"{'and not one was answered' if answered == 0 else 'more than half'} (e.g. {example}; "
        f"reasons: {reasons}). Refusals that many say the role's settings are at fault, not a "
        f"few long prompts (e.g. llm.{role.name}.params.max_tokens above the model's context, "
        "or a parameter the server does not take), so the job stops without writing its "
        "output; the answers it got are journaled for the rerun",
        role=role.name,
        base_url=role.endpoint,
    )
