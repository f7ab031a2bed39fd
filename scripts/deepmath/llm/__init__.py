"""One resumable client for every LLM step.

The package, bottom up: :mod:`~deepmath.llm.roles` (a validated role),
:mod:`~deepmath.llm.request` (requests, their keys, answers), :mod:`~deepmath.llm.usage`
(tokens and cost), :mod:`~deepmath.llm.journal` (the resume journal) and
:mod:`~deepmath.llm.client` (sending, retries, progress). Stages use them through
:mod:`deepmath.llmstage`.

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

from deepmath.llm.client import (
    RETRYABLE_STATUS,
    Responses,
    arun_requests,
    run_requests,
)
from deepmath.llm.journal import (
    JOURNAL_VERSION,
    Journal,
    entry_problem,
    journal_entry,
    read_journal,
)
from deepmath.llm.request import (
    Request,
    Response,
    full_text,
    make_request,
    request_key,
)
from deepmath.llm.roles import (
    FLOAT_PARAMS,
    NOT_STARTED_URL,
    ROLE_DEFAULTS,
    ROLE_KEYS,
    LLMError,
    RoleConfig,
    default_timeout_s,
    load_role,
    normalize_params,
    role_config,
    safe_url,
)
from deepmath.llm.usage import (
    RoleUsage,
    cost_usd,
    usage_summary,
    write_usage,
)

__all__ = [
    "FLOAT_PARAMS",
    "JOURNAL_VERSION",
    "Journal",
    "LLMError",
    "NOT_STARTED_URL",
    "RETRYABLE_STATUS",
    "ROLE_DEFAULTS",
    "ROLE_KEYS",
    "Request",
    "Response",
    "Responses",
    "RoleConfig",
    "RoleUsage",
    "arun_requests",
    "cost_usd",
    "default_timeout_s",
    "entry_problem",
    "full_text",
    "journal_entry",
    "load_role",
    "make_request",
    "normalize_params",
    "read_journal",
    "request_key",
    "role_config",
    "run_requests",
    "safe_url",
    "usage_summary",
    "write_usage",
]
