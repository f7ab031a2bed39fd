"""Sending requests: bounded concurrency, our own retries with backoff and a job-wide budget,
progress lines, stall warnings, the journal written as answers arrive.

Each failed attempt is classified by :mod:`deepmath.llm.refusals`: a transient one is retried,
a refusal of the request's own content may be dropped (``on_rejected: drop``) while such
refusals stay a minority of the job, and a refusal every request would meet (a wrong key, model
or route) fails the job at once; its stage then writes no output.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import sys
import time
from collections.abc import Iterable, Sequence
from typing import Any, TextIO

from deepmath.io import DeepmathError
from deepmath.llm.journal import Journal, journal_entry
from deepmath.llm.refusals import (
    Failed,
    Fault,
    endpoint_failure,
    failure_message,
    mostly_refused,
    refused_error,
    server_message,
    status_kind,
)
from deepmath.llm.request import Request, Response
from deepmath.llm.roles import NOT_STARTED_URL, LLMError, RoleConfig
from deepmath.llm.usage import RoleUsage

log = logging.getLogger("deepmath.llm")


# The openai/httpx DEBUG logs dump request options and response headers; keep them quiet so a
# verbose run cannot leak anything sensitive into a rule's log.
for _name in ("openai", "httpx", "httpcore", "httpx2", "httpcore2"):
    logging.getLogger(_name).setLevel(logging.WARNING)


_RETRY_WARNINGS = 10  # retries logged at WARNING per run; the rest at DEBUG


class _Aborted(Exception):
    """Another request failed for good; this one stops retrying quietly."""


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

    def describe(self, err: Exception) -> Fault:
        """What went wrong, in words (redacted), and which kind of failure it is."""
        import openai

        if isinstance(err, openai.APITimeoutError):
            return Fault(f"timed out after {self.role.timeout_s:g} s", "retry")
        if isinstance(err, openai.APIConnectionError):
            cause = err.__cause__ or err
            detail = f"connection error: {type(cause).__name__}: {cause}"
            return Fault(self.redact(detail), "retry")
        if isinstance(err, openai.APIStatusError):
            status = err.status_code
            said = self.redact(server_message(err.body if err.body is not None else err.message))
            retry_after = None
            header = err.response.headers.get("retry-after") if err.response is not None else None
            if header:
                try:
                    retry_after = max(0.0, float(header))
                except ValueError:
                    retry_after = None
            kind = status_kind(status)
            return Fault(f"HTTP {status}: {said[:500]}", kind, retry_after, status, said[:2000])
        return Fault(self.redact(f"{type(err).__name__}: {str(err)[:500]}"), "fatal")

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
            raise Failed(Fault("the server answered with no choices", "reject"), 0)
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
                fault = self.describe(err)
                if fault.kind != "retry":
                    raise Failed(fault, attempt) from None
                if attempt >= total:
                    progressing = self.successes > seen
                    if not progressing or self.budget_used >= self.budget:
                        break
                    self.budget_used += 1  # the job moves on: one more try from its budget
                    self.usage.budget_retries += 1
                    seen = self.successes  # the next one needs progress again
                wait = self.delay(min(attempt, total), fault.retry_after)
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
                    fault.detail[:200],
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
            except Failed as err:
                raise Failed(err.fault, attempt) from None
            entry = journal_entry(req, role.name, result, attempts=attempt, latency_s=latency)
            await self.journal.append(entry)
            self.successes += 1
            return entry
        raise Failed(fault, attempt)


def _same_file(a: TextIO, b: TextIO) -> bool:
    """Whether two streams write to one file (both to one terminal, say)."""
    try:
        sa, sb = os.fstat(a.fileno()), os.fstat(b.fileno())
    except (AttributeError, OSError, ValueError):
        return a is b
    return (sa.st_dev, sa.st_ino) == (sb.st_dev, sb.st_ino)


def _to_console(level: str, message: str) -> None:
    """Write a line to stdout as well as the log, where stdout is not the log's own stream.

    A rule sends a job's stderr, and so its log, to the job's log file (``2> {log}``) and
    leaves stdout alone, which Snakemake passes to the terminal it runs in (and a Slurm job
    to its output file): what needs the user's attention now must be seen there, not hours
    later in a log nobody is reading.
    """
    if _same_file(sys.stdout, sys.stderr):
        return
    with contextlib.suppress(OSError, ValueError):
        stamp = time.strftime("%H:%M:%S")
        print(f"{stamp} {level} {log.name}: {message}", file=sys.stdout, flush=True)


async def _watch(runner: _Runner, usage: RoleUsage, total: int) -> None:
    """Progress lines every ``progress_s`` (readable in a Slurm log, where no progress bar
    draws), and a warning when nothing has finished for ``stall_s``: a server that accepts
    requests and never answers is noticed in minutes, not after every retry timed out. The
    warning (and, after one, the news that requests finish again) also goes to the console."""
    role = runner.role
    start = time.monotonic()
    warned_at = 0.0
    stalled = False
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
            warned_at, stalled = now, True
            message = (
                f"role {role.name}: no request has finished for {quiet:.0f} s "
                f"({runner.in_flight} in flight) at {role.endpoint}; the endpoint may be hung "
                f"or overloaded (each attempt times out after {role.timeout_s:g} s, "
                f"{role.max_retries} retries each; details in this job's log)"
            )
            log.warning("%s", message)
            _to_console("WARNING", message)
        elif stalled and quiet < role.stall_s:
            stalled = False
            message = f"role {role.name}: requests finish again at {role.endpoint} ({done}/{total})"
            log.info("%s", message)
            _to_console("INFO", message)


async def _served_models(runner: _Runner, client: Any) -> tuple[list[str] | None, str]:
    """The model names the endpoint lists at /models, or None and why they could not be read
    (a short timeout: this only explains a refusal of the endpoint, see
    :func:`~deepmath.llm.refusals.endpoint_failure`)."""
    try:
        page = await client.with_options(timeout=min(runner.role.timeout_s, 10.0)).models.list()
        return [str(m.id) for m in page.data], ""
    except Exception as err:  # noqa: BLE001 - any failure here only shortens the explanation
        return None, runner.describe(err).detail[:300]


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
    refusal: tuple[Request, Failed] | None = None  # the first refusal of the endpoint itself
    example = ""  # the first refusal of a request's content, as the server said it
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

            def stop(error: LLMError) -> None:
                nonlocal first_failure
                if first_failure is None and refusal is None:
                    first_failure = error
                runner.abort.set()

            async def worker() -> None:
                nonlocal refusal, example
                while not runner.abort.is_set():
                    req = next(queue, None)
                    if req is None:
                        return
                    try:
                        entry = await runner.send(req)
                    except _Aborted:
                        return
                    except Failed as err:
                        usage.failed_requests += 1
                        message = failure_message(role, req, err)
                        kind = err.fault.kind
                        if kind == "fatal":
                            # every request would meet it: no table from this endpoint
                            if first_failure is None and refusal is None:
                                refusal = (req, err)
                            runner.abort.set()
                            return
                        if kind == "reject" and role.on_rejected == "drop":
                            # the server will refuse it on every rerun too: the row goes on
                            # without an answer instead of failing the shard forever
                            usage.count_rejection(err.fault.reason)
                            example = example or err.detail
                            errors[req.key] = message
                            log.warning("%s; dropped (on_rejected: drop)", message)
                            bar.update()
                            if mostly_refused(usage, running=True):
                                stop(refused_error(role, usage, example))
                                return
                            continue
                        if return_errors:
                            errors[req.key] = message
                            log.error("%s", message)
                            bar.update()
                            continue
                        stop(
                            LLMError(
                                message,
                                role=role.name,
                                base_url=role.endpoint,
                                attempts=err.attempts,
                            )
                        )
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
                if refusal is not None:
                    refused, failed = refusal
                    models, unread = (
                        await _served_models(runner, client)
                        if failed.fault.status == 404  # a wrong model name, or a wrong URL?
                        else (None, "")
                    )
                    first_failure = endpoint_failure(role, refused, failed, models, unread)
    usage.elapsed_s = time.monotonic() - start
    if first_failure is None and mostly_refused(usage, running=False):
        first_failure = refused_error(role, usage, example)
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
        "replayed %d, failed %d, refused and dropped %d",
        role.name,
        usage.elapsed_s,
        sent,
        sent / usage.elapsed_s if usage.elapsed_s > 0 else 0.0,
        usage.retries,
        usage.sent_prompt_tokens,
        usage.sent_completion_tokens,
        usage.replayed_requests,
        usage.failed_requests,
        usage.rejected_requests,
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
    rerun tries it again). Two failures raise whatever ``return_errors`` and ``on_rejected``
    say: an endpoint refusing every request (a wrong key, model or route: HTTP 401, 403, 404
    and any 4xx but 400/413/422), and a job whose requests are mostly refused for their
    content (more than :data:`MAX_REFUSED_SHARE` of them). ``.usage`` on the result holds the
    token and request counts, and the refusals dropped under ``on_rejected: drop`` with their
    reasons.
    """
    return asyncio.run(
        arun_requests(role, requests, journal_path, progress=progress, return_errors=return_errors)
    )
