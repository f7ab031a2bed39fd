"""The evaluation spec: the config's ``evaluation`` section merged with one model's entry.

One validation for every evaluation command, so a typo in a sampling parameter, an engine
block or a benchmark's scoring rule stops the job with the key, the value and what is
allowed, before a model is loaded. :data:`EVAL_KEYS` (and the ``*_KEYS`` tables) document
every key; the README's evaluation section explains the choices.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from deepmath import dtypes, schema
from deepmath.io import DeepmathError, load_spec
from deepmath.metrics import PASS_K

log = logging.getLogger("deepmath.evaluate")

ROLE = "eval"  # the llm role name in journals and usage files
ENGINES = ("server", "offline")
DEFAULT_SYSTEM_TEXT = "Please reason step by step, and put your final answer within \\boxed{}."
BENCH_COLUMNS = ("bench", "id", "problem", "answer", "category")
# Optional benchmark columns kept when present: a per-problem numeric tolerance (OlympiadBench).
BENCH_OPTIONAL = ("precision",)

# The keys of a spec and their rules live in config/schema.yaml ($defs/eval_spec, scoring,
# scoring_rule, engine, offline_engine); these tables are their documentation.
EVAL_KEYS: dict[str, str] = schema.descriptions("eval_spec")
# The engine's keys and their rules live in config/schema.yaml ($defs/engine, offline_engine).
ENGINE_KEYS: dict[str, str] = schema.descriptions("engine")
OFFLINE_KEYS: dict[str, str] = schema.descriptions("offline_engine")
SCORING_KEYS: dict[str, str] = schema.descriptions("scoring")
RULE_KEYS: dict[str, str] = schema.descriptions("scoring_rule")
TEXTS = {"whole": "whole", "after_think": "prefer"}  # scoring.text -> the checker's think mode
JUDGES = ("olympiad", "polymath")
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
    "policy": "eval",
    "text": "whole",
    "rules": {},
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
    # the engine's context length once known (:func:`with_length`); None: not resolved
    max_model_len: int | None = None


def load_spec_arg(text: str) -> dict[str, Any]:
    """``--spec``: JSON text, or the path of a JSON file."""
    return load_spec(text, "config evaluation + model entry")


def eval_spec(spec: Mapping[str, Any], *, need_engine: bool = True) -> EvalSpec:
    """Validate a spec; every problem is reported, each naming its dotted key.

    ``need_engine=False`` (scoring, tables) skips the engine block.
    """
    from deepmath.llm import normalize_params

    where = "evaluation"
    problems = schema.check(spec, "eval_spec", where)
    if problems:
        raise DeepmathError(f"invalid {where} spec:\n  - " + "\n  - ".join(problems))
    name = spec.get("model_name") or ""
    if not name:
        problems.append(f"missing key '{where}.model_name' (required): {EVAL_KEYS['model_name']}")
    label = spec.get("label") or name
    system_prompt = spec.get("system_prompt", False)
    limit = spec.get("limit")
    sampling = dict(spec.get("sampling") or {})
    n = sampling.pop("n", None) or 1
    sampling.setdefault("seed", 42)
    params = normalize_params(sampling, f"{where}.sampling")
    kind, role_spec, offline = "server", {}, {}
    if need_engine:
        kind, role_spec, offline = _engine(problems, spec.get("engine") or {}, name, params, where)
    scoring = dict(SCORING_DEFAULTS)
    scoring.update({k: v for k, v in (spec.get("scoring") or {}).items() if v is not None})
    family, families = spec.get("family"), spec.get("families")
    if family is not None and families is not None and family not in families:
        problems.append(
            f"{where}.family = {family!r} is not a family; allowed: {', '.join(families)}"
        )
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


def scoring_rule(scoring: Mapping[str, Any], bench: str) -> dict[str, Any]:
    """The scoring rule of one benchmark: the scoring block's defaults, then its override.

    Keys: ``text`` (whole | after_think), ``judges`` (tuple), ``choice`` (bool) and
    ``precision`` (the olympiad judge's default tolerance).
    """
    rule = {"text": scoring.get("text", "whole"), "judges": (), "choice": False, "precision": None}
    override = (scoring.get("rules") or {}).get(bench) or {}
    rule.update({k: v for k, v in override.items() if v is not None})
    rule["judges"] = tuple(rule["judges"])
    return rule


def _engine(
    problems: list[str], block: Any, name: str, params: Mapping[str, Any], where: str
) -> tuple[str, dict[str, Any], dict[str, Any]]:
    where = f"{where}.engine"
    found = schema.check(block, "engine", where)
    if found:
        problems.extend(found)
        return "server", {}, {}
    kind = block.get("kind", "server")
    if kind == "offline":
        off = block.get("offline") or {}
        values = {**OFFLINE_DEFAULTS, **{k: v for k, v in off.items() if v is not None}}
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
        role["serve"] = {"model": name, **block["serve"]}
    if block.get("base_url") is not None:
        role["base_url"] = block["base_url"]
    if block.get("api_key_env") is not None:
        role["api_key_env"] = block["api_key_env"]
    from deepmath.llm import NOT_STARTED_URL, role_config

    try:
        role_config(ROLE, role, base_url=NOT_STARTED_URL if "serve" in role else None)
        if "serve" in role:
            from deepmath.serve import role_serve_config

            role_serve_config(ROLE, role)
    except DeepmathError as err:
        problems.append(str(err).replace(f"llm.{ROLE}", where))
    return kind, role, {}


# --------------------------------------------------------------------------- engine length

# vLLM refuses a max_model_len above the model's own unless this variable is set (then it warns:
# positions past the trained ones give garbage); we follow the same rule.
LONG_LENGTH_ENV = "VLLM_ALLOW_LONG_MAX_MODEL_LEN"


@dataclass(frozen=True)
class EngineLength:
    """The context length an evaluation engine runs a model with.

    ``max_model_len``: what the engine uses; ``model_len``: the model's own (vLLM's reading of
    its config.json); ``source``: where ``max_model_len`` came from (a config key or the model).
    """

    max_model_len: int
    model_len: int
    source: str


def engine_length(spec: EvalSpec, model_dir: str | os.PathLike[str]) -> EngineLength:
    """The engine length of ``spec``'s model: the model's own context length, as the authors'
    engine (vLLM started without ``max_model_len``) used it, unless the engine block sets one.

    A set length above the model's own stops here, naming the model and both numbers, before
    any engine starts (vLLM would refuse it, or with ``VLLM_ALLOW_LONG_MAX_MODEL_LEN`` run
    positions the model was never trained on).
    """
    from deepmath.models import context_length

    asked, key = _asked_length(spec)
    own, source = context_length(model_dir, disable_sliding_window=_no_window(spec))
    if asked is None:
        return EngineLength(own, own, f"the model's config.json ({source})")
    if asked > own:
        where = f"{model_dir}/config.json {source}"
        if not _long_allowed(spec):
            raise DeepmathError(
                f"{key} = {asked} is above model {spec.model_name!r}'s context length {own} "
                f"({where}); allowed: at most {own}, or null for the model's own length "
                f"(or set {LONG_LENGTH_ENV}=1 in the engine's env to run past it, as vLLM allows)"
            )
        log.warning(
            "%s = %d is above model %r's context length %d (%s); running it because %s is set",
            key, asked, spec.model_name, own, where, LONG_LENGTH_ENV,
        )  # fmt: skip
    return EngineLength(int(asked), own, key)


def with_length(spec: EvalSpec, length: EngineLength) -> EvalSpec:
    """``spec`` with its engine length resolved: the offline engine starts with it, and the
    evaluated checkpoint's identity (journal, request keys) carries it."""
    offline = dict(spec.offline)
    if spec.engine == "offline":
        offline["max_model_len"] = length.max_model_len
    return replace(spec, offline=offline, max_model_len=length.max_model_len)


def token_budget(max_tokens: int | None, prompt_tokens: int, max_model_len: int, where: str) -> int:
    """The max_tokens sent with a prompt: the configured one where prompt + it fits the engine,
    else what is left of the engine length (None: all of it).

    The authors' offline engine took max_tokens 32768 with every prompt and stopped a sample at
    the engine length (finish reason "length"); a vLLM server refuses such a request instead
    (400), so both engines are sent what fits, which is the same generation.
    """
    room = max_model_len - prompt_tokens
    if room < 1:
        raise DeepmathError(
            f"{where}: the prompt has {prompt_tokens} tokens, the engine length is "
            f"{max_model_len}: no room for an answer (vLLM refuses such a prompt); raise the "
            f"engine's max_model_len (at most the model's own) or shorten the prompt"
        )
    return room if max_tokens is None else min(int(max_tokens), room)


def length_problem(spec: EvalSpec, model_dir: str | os.PathLike[str]) -> str | None:
    """What :func:`engine_length` would stop on, for a model folder that exists already (the
    workflow's start-up check; a folder a job has yet to build is checked by that job)."""
    if not (Path(model_dir) / "config.json").is_file():
        return None
    try:
        engine_length(spec, model_dir)
    except DeepmathError as err:
        return str(err)
    return None


def _asked_length(spec: EvalSpec) -> tuple[int | None, str]:
    """The engine length the config sets, and its key (None: the model's own)."""
    if spec.engine == "offline":
        return spec.offline.get("max_model_len"), "evaluation.engine.offline.max_model_len"
    serve = spec.role_spec.get("serve") or {}
    return serve.get("max_model_len"), "evaluation.engine.serve.max_model_len"


def _engine_env(spec: EvalSpec) -> Mapping[str, Any]:
    if spec.engine == "offline":
        return spec.offline.get("env") or {}
    return (spec.role_spec.get("serve") or {}).get("env") or {}


def _long_allowed(spec: EvalSpec) -> bool:
    """vLLM's reading of VLLM_ALLOW_LONG_MAX_MODEL_LEN, in the engine's env or the job's."""
    value = _engine_env(spec).get(LONG_LENGTH_ENV, os.environ.get(LONG_LENGTH_ENV, "0"))
    return str(value).strip().lower() in ("1", "true")


def _no_window(spec: EvalSpec) -> bool:
    """Whether the engine runs with vLLM's disable_sliding_window."""
    if spec.engine == "offline":
        return bool((spec.offline.get("llm_kwargs") or {}).get("disable_sliding_window"))
    args = (spec.role_spec.get("serve") or {}).get("extra_args") or []
    return "--disable-sliding-window" in [str(a) for a in args]
