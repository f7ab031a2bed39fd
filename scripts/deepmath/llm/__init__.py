"""One resumable client for every LLM step.

The package, bottom up: :mod:`~deepmath.llm.roles` (a validated role),
:mod:`~deepmath.llm.request` (requests, their keys, answers), :mod:`~deepmath.llm.usage`
(tokens and cost), :mod:`~deepmath.llm.journal` (the resume journal),
:mod:`~deepmath.llm.refusals` (what a failed request means: retry, drop or fail the job, and
the error that says so) and :mod:`~deepmath.llm.client` (sending, retries, progress). Stages
use them through :mod:`deepmath.llmstage`.

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

Why an endpoint that refuses fails the job: a wrong key, model name or URL makes the server
refuse every request (HTTP 401, 403, 404). Dropping those as "rejected" would let the job end
well with no answers, and downstream read the missing answers as verdicts. So only a refusal of
one request's own content (400, 413, 422: a prompt longer than the context) may be dropped
(``on_rejected: drop``, counted with its reason in the usage file), and only while such
refusals stay under :data:`MAX_REFUSED_SHARE` of the job; anything else fails the job at once,
saying what the server said (for a 404, which models it serves), and the stage writes nothing.

Why stall warnings reach the console: a rule sends a job's stderr (its log) to a file; a hung
endpoint would be silent on the terminal for as long as the timeouts allow. The warning is also
written to the job's stdout, which Snakemake shows (and Slurm keeps in the job's output file).
"""

from deepmath.llm.client import (
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
from deepmath.llm.refusals import (
    CONTENT_REFUSALS,
    MAX_REFUSED_SHARE,
    RETRYABLE_STATUS,
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
    "CONTENT_REFUSALS",
    "FLOAT_PARAMS",
    "JOURNAL_VERSION",
    "Journal",
    "LLMError",
    "MAX_REFUSED_SHARE",
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
