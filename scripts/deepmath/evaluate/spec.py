"""The evaluation spec: the config's ``evaluation`` section merged with one model's entry.

One validation for every evaluation command, so a typo in a sampling parameter, an engine
block or a benchmark's scoring rule stops the job with the key, the value and what is
allowed, before a model is loaded. :data:`EVAL_KEYS` (and the ``*_KEYS`` tables) document
every key; the README's evaluation section explains the choices.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from deepmath import dtypes, schema
from deepmath.io import DeepmathError, load_spec
from deepmath.metrics import PASS_K

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
