"""What every LLM stage shares: its CLI options, getting an endpoint, running the requests.

A stage builds its requests from its input rows, calls :func:`run_stage_requests`, parses the
answers and writes its table. The endpoint is external (``base_url``) or a vLLM server this
job starts (``serve:``). The server is only started when the journal lacks some request, so a
rerun after a finished-but-killed job costs nothing.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from deepmath.fingerprint import claim, deep_merge, file_digest, served_identity
from deepmath.io import DeepmathError
from deepmath.llm import (
    NOT_STARTED_URL,
    Journal,
    Request,
    Responses,
    RoleConfig,
    make_request,
    role_config,
    run_requests,
    write_usage,
)
from deepmath.workflow import runtime_from_env

log = logging.getLogger("deepmath.llmstage")


def add_llm_args(parser: argparse.ArgumentParser) -> None:
    """The options every LLM stage CLI takes (the rules fill them from config)."""
    group = parser.add_argument_group("LLM endpoint")
    group.add_argument("--role", required=True, help="role name (config llm.<role>)")
    group.add_argument("--role-spec", required=True, help="config llm.<role>, as JSON")
    group.add_argument("--prompt", required=True, help="prompt template file")
    group.add_argument("--journal", required=True, help="resume journal (JSON lines)")
    group.add_argument("--usage", required=True, help="output usage JSON (tokens, cost)")
    group.add_argument("--model-dir", help="local model folder for a served role")
    group.add_argument("--server-dir", help="folder for this job's server log and caches")
    group.add_argument(
        "--server-registry",
        help="registry of servers shared by the jobs of a local run (share: workflow)",
    )
    group.add_argument(
        "--role-runtime",
        help="the role's keys that only decide how the job runs (concurrency, timeouts, "
        "retries, prices), as JSON, merged over --role-spec (default: what the workflow hands "
        "every job in $DEEPMATH_RUNTIME, else the defaults)",
    )


def stage_parser(module: str, description: str, input_help: str) -> argparse.ArgumentParser:
    """The CLI of a table-in, table-out LLM stage: --in/--spec/--out/--stats + LLM options."""
    parser = argparse.ArgumentParser(prog=f"python -m deepmath.{module}", description=description)
    parser.add_argument("--in", dest="inp", required=True, help=input_help)
    parser.add_argument("--spec", required=True, help="this step's config section, as JSON")
    parser.add_argument("--out", required=True, help="output parquet")
    parser.add_argument("--stats", required=True, help="output stats JSON")
    add_llm_args(parser)
    return parser


def user_requests(
    role: RoleConfig, prompt: Any, rows: Iterable[Mapping[str, Any]], samples: int = 1
) -> list[Request]:
    """One chat request per row and sample index, the prompt's slots filled from the row."""
    return [
        make_request(role, [{"role": "user", "content": prompt.render(row)}], sample=i)
        for row in rows
        for i in range(samples)
    ]


@dataclass(frozen=True)
class StageLLM:
    """Everything an LLM stage needs to reach its role, checked once when the job starts.

    Built from the CLI options of :func:`add_llm_args` (:func:`stage_llm`) or directly by a
    caller that has no CLI of its own (the evaluation's server engine).
    """

    role: RoleConfig  # for a served role, base_url is a stand-in until a server is up
    spec: Mapping[str, Any]  # the role's config block: `serve:` decides whether one starts
    journal: str
    usage: str
    model_dir: str | None = None
    server_dir: str | None = None
    server_registry: str | None = None
    # what else shapes the answers and is the same for every request of the job (the prompt
    # template's digest): part of the journal's fingerprint
    shapes: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def build(
        cls,
        name: str,
        spec: Mapping[str, Any],
        *,
        journal: str | os.PathLike[str],
        usage: str | os.PathLike[str],
        model_dir: str | None = None,
        server_dir: str | None = None,
        server_registry: str | None = None,
        runtime: Mapping[str, Any] | None = None,
        shapes: Mapping[str, Any] | None = None,
    ) -> StageLLM:
        """``spec``: the role's config block; ``runtime``: the keys that only decide how the
        job runs (concurrency, timeouts, prices...), which the rules pass apart so that editing
        them reruns no job (deepmath.fingerprint.ROLE_RUNTIME_KEYS)."""
        if runtime:
            spec = deep_merge(spec, runtime)
        served = spec.get("serve") is not None if isinstance(spec, Mapping) else False
        role = role_config(name, spec, base_url=NOT_STARTED_URL if served else None)
        if served and not (model_dir and server_dir):
            raise DeepmathError(
                f"llm.{name} is served: the rule must pass --model-dir and --server-dir"
            )
        if served:
            role = replace(role, identity=served_identity(model_dir, spec["serve"], role.model))
        return cls(
            role=role,
            spec=dict(spec),
            journal=str(journal),
            usage=str(usage),
            model_dir=model_dir,
            server_dir=server_dir,
            server_registry=server_registry,
            shapes=dict(shapes or {}),
        )

    @property
    def served(self) -> bool:
        return self.spec.get("serve") is not None


def stage_llm(args: argparse.Namespace) -> StageLLM:
    """The stage's LLM entry from its parsed CLI options (see :func:`add_llm_args`)."""
    return StageLLM.build(
        args.role,
        json.loads(args.role_spec),
        journal=args.journal,
        usage=args.usage,
        model_dir=args.model_dir,
        server_dir=args.server_dir,
        server_registry=args.server_registry,
        runtime=(
            json.loads(args.role_runtime)
            if args.role_runtime
            else runtime_from_env("llm", args.role)
        ),
        shapes={"prompt": file_digest(args.prompt)} if Path(args.prompt).is_file() else {},
    )


def journal_fingerprint(role: RoleConfig, shapes: Mapping[str, Any]) -> dict[str, Any]:
    """What shapes every answer in a stage's journal: the role's model and its identity (the
    served weights, tokenizer, template, dtype), the sampling params and the prompt template.
    Request keys carry the same, so a journal of other inputs holds nothing this job could
    replay: it is moved aside, named in the log, instead of growing forever."""
    return {
        "role": role.name,
        "model": role.model,
        "identity": role.identity,
        "params": dict(role.params),
        **dict(shapes),
    }


@contextlib.contextmanager
def endpoint(llm: StageLLM) -> Iterator[RoleConfig]:
    """The role with a live base_url: as configured, or a vLLM server started for this job."""
    if not llm.served:
        yield llm.role
        return
    from deepmath.serve import role_serve_config, serving

    cfg = role_serve_config(llm.role.name, llm.spec)
    state = Path(llm.server_dir or ".") / f"{llm.role.name}-{os.getpid()}"
    with serving(cfg, llm.model_dir, state_dir=state, registry=llm.server_registry) as url:
        yield replace(llm.role, base_url=url)


def claim_journal(
    path: str | os.PathLike[str], role: RoleConfig, shapes: Mapping[str, Any]
) -> None:
    """Check a journal's fingerprint before replaying it (deepmath.fingerprint.claim): one of
    other inputs is moved aside and named in the log; one from before fingerprints is adopted."""
    fingerprint = journal_fingerprint(role, shapes)
    claim(path, fingerprint, f"role {role.name}", folder=False, adopt_unrecorded=True)


def run_stage_requests(llm: StageLLM, requests: Sequence[Request]) -> Responses:
    """Replay the journal (read once, and held locked), start the endpoint only if something
    is missing, send the rest."""
    role = llm.role
    claim_journal(llm.journal, role, llm.shapes)
    with Journal(llm.journal) as journal:
        done = journal.entries
        missing = sum(1 for key in {r.key for r in requests} if key not in done)
        log.info(
            "role %s (%s): %d requests, %d in the journal, %d to send",
            role.name,
            role.model,
            len(requests),
            len(requests) - missing,
            missing,
        )
        if missing == 0:
            responses = run_requests(role, requests, journal, progress=False)
        else:
            with endpoint(llm) as live:
                responses = run_requests(live, requests, journal)
    write_usage(llm.usage, [responses.usage])
    return responses


def first_text(response: Any) -> str | None:
    """The text of the first choice, or None when the request failed."""
    texts = getattr(response, "texts", None)
    return texts[0] if texts else None
