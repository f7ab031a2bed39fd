"""The evaluation spec: the config's ``evaluation`` section merged with one model's entry.

One validation for every evaluation command, so a typo in a sampling parameter, an engine
block or a benchmark's scoring rule stops the job with the key, the value and what is
allowed, before a model is loaded. :data:`EVAL_KEYS` (and the ``*_KEYS`` tables) document
every key; the README's evaluation section explains the choices.
"""

from __future__ import annotations

import math
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
    "scoring": "how samples are scored: policy, text, rules per benchmark, ... (SCORING_KEYS)",
    "benchmarks": "benchmarks to evaluate, in table order (used by the rules and the table)",
    "models": "models to evaluate, in table order (used by the rules and the table)",
    "paper_results": "published pass@1 of models without an entry, {model: {bench: value}}",
    "paper": "the published pass@1 of this model, {bench: value} (a missing number stays out)",
    "family": "the table this model is printed in (a key of families)",
    "families": "the results tables, in order, {family: title} (default: one table)",
    "average": "benchmarks the Avg. column averages (default: all configured benchmarks)",
    "labels": "display names of models and benchmarks in the table, {name: text}",
}
# The engine's keys and their rules live in config/schema.yaml ($defs/engine, offline_engine).
ENGINE_KEYS: dict[str, str] = schema.descriptions("engine")
OFFLINE_KEYS: dict[str, str] = schema.descriptions("offline_engine")
SCORING_KEYS: dict[str, str] = {
    "policy": "the shared checker's policy for evaluation (deepmath.answers.policy; default eval)",
    "text": (
        "part of the response searched: whole (thinking included, the authors' rule) or "
        "after_think (after the last </think>, the whole response when there is none)"
    ),
    "rules": "per-benchmark scoring rules over these defaults, {bench: RULE_KEYS}",
    "pass_k": "k values of the unbiased pass@k, those <= n are reported (default [1, 2, 4, 8])",
    "timeout_s": "seconds per answer check, after which it counts as wrong (default 5)",
    "workers": "checker processes (default: all cores this job may use)",
    "memory_mb": "address-space cap per checker process (default 4096)",
    "maj_equivalence": "merge maj@n answer groups the checker finds equivalent (default true)",
}
RULE_KEYS: dict[str, str] = {
    "text": "as scoring.text, for this benchmark",
    "judges": (
        "benchmark judges OR-ed after the checker's own forms: olympiad (OlympiadBench's "
        "judge on the text after </think>), polymath (PolyMath's first-box extraction)"
    ),
    "choice": "answers are choice letters (multiple choice): the response's letter decides",
    "precision": (
        "absolute numeric tolerance of the olympiad judge where the problem gives none "
        "(default 1e-8)"
    ),
}
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
        _check_rules(problems, scoring, f"{where}.scoring")
    _check_table_keys(problems, spec, where)
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


def _check_rule(problems: list[str], rule: Mapping[str, Any], where: str) -> None:
    """One scoring rule (the scoring block's defaults or a benchmark's override)."""
    text = rule.get("text")
    if text is not None and text not in TEXTS:
        problems.append(f"{where}.text = {text!r} is not allowed; allowed: {', '.join(TEXTS)}")
    judges = rule.get("judges")
    if judges is not None and (
        not isinstance(judges, list) or not all(isinstance(j, str) for j in judges)
    ):
        problems.append(f"{where}.judges = {judges!r} must be a list of judge names")
    elif judges:
        for j in judges:
            if j not in JUDGES:
                problems.append(
                    f"{where}.judges: {j!r} is not a judge; allowed: {', '.join(JUDGES)}"
                )
    if rule.get("choice") is not None and not isinstance(rule["choice"], bool):
        problems.append(f"{where}.choice = {rule['choice']!r} must be true or false")
    prec = rule.get("precision")
    if prec is not None and (
        isinstance(prec, bool) or not isinstance(prec, int | float) or not 0 < prec < math.inf
    ):
        problems.append(f"{where}.precision = {prec!r} must be a number > 0")


def _check_rules(problems: list[str], scoring: Mapping[str, Any], where: str) -> None:
    from deepmath.answers import POLICIES

    if scoring["policy"] not in POLICIES:
        problems.append(
            f"{where}.policy = {scoring['policy']!r} is not a checker policy; allowed: "
            + ", ".join(POLICIES)
        )
    _check_rule(problems, {"text": scoring["text"]}, where)
    rules = scoring["rules"]
    if not isinstance(rules, Mapping):
        problems.append(f"{where}.rules must be a mapping {{benchmark: rule}}")
        return
    for bench, rule in rules.items():
        at = f"{where}.rules.{bench}"
        if not isinstance(rule, Mapping):
            problems.append(f"{at} must be a mapping ({', '.join(RULE_KEYS)})")
            continue
        _unknown(problems, rule, RULE_KEYS, at)
        _check_rule(problems, rule, at)


def _check_table_keys(problems: list[str], spec: Mapping[str, Any], where: str) -> None:
    paper = spec.get("paper")
    if paper is not None and (
        not isinstance(paper, Mapping)
        or not all(isinstance(v, int | float) and not isinstance(v, bool) for v in paper.values())
    ):
        problems.append(f"{where}.paper must be {{benchmark: pass@1}} with numbers, got {paper!r}")
    families = spec.get("families")
    if families is not None and not isinstance(families, Mapping):
        problems.append(f"{where}.families must be a mapping {{family: title}}")
    family = spec.get("family")
    if family is not None and isinstance(families, Mapping) and family not in families:
        problems.append(
            f"{where}.family = {family!r} is not a family; allowed: {', '.join(families)}"
        )
    average = spec.get("average")
    if average is not None and (
        not isinstance(average, list) or not all(isinstance(b, str) for b in average)
    ):
        problems.append(f"{where}.average must be a list of benchmark names")


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
