"""Load and validate the workflow config: config/schema.yaml, then what a schema cannot say.

The schema (:mod:`deepmath.schema`) holds every type, range, enum and allowed key; this module
adds the checks between sections (names that must exist elsewhere, files that must exist,
recipes as the training job will read them), so that every mistake stops the run before the
first job.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from deepmath.configfile import (  # re-exported: deepmath.config is where callers look
    ConfigError,
    deep_merge,
    load_config,
    read_yaml,
)

__all__ = ["ConfigError", "deep_merge", "load_config", "read_yaml", "validate_config"]
from deepmath.io import DeepmathError, run_cli
from deepmath.schema import load_schema
from deepmath.schema import problems as schema_problems

# Keys that name an `llm` role: (section, key).
ROLE_REFERENCES = (
    ("decontamination", "judge_role"),
    ("difficulty", "role"),
    ("rewrite", "role"),
    ("solve", "role"),
    ("topics", "role"),
)


def _llm_problems(config: Mapping[str, Any]) -> list[str]:
    """Each LLM role and its serve block as the jobs will read them, and the role references.

    Checked here so that a typo in a sampling parameter or a serve block stops the workflow
    before any job, not inside one after its GPUs were granted.
    """
    from deepmath.llm import NOT_STARTED_URL, role_config
    from deepmath.serve import role_serve_config

    problems: list[str] = []
    roles = config.get("llm") or {}
    for name, role in roles.items():
        served = isinstance(role, Mapping) and role.get("serve") is not None
        try:
            role_config(name, role, base_url=NOT_STARTED_URL if served else None)
            if served:
                role_serve_config(name, role, models=config.get("models") or {})
        except DeepmathError as err:
            problems.extend(_lines(err))
    for section, key in ROLE_REFERENCES:
        ref = (config.get(section) or {}).get(key)
        if ref is not None and ref not in roles:
            problems.append(
                f"{section}.{key} = {ref!r} is not an llm role; allowed values: "
                f"{', '.join(sorted(roles)) or '(no roles defined)'}"
            )
    return problems


def _lines(err: Exception) -> list[str]:
    """The problems of a multi-line validation error, one per item (its header dropped)."""
    items = [ln.strip()[2:] for ln in str(err).splitlines() if ln.strip().startswith("- ")]
    return items or [str(err)]


def _file_problems(config: Mapping[str, Any]) -> list[str]:
    """Files the config names that must exist before any job: prompts and local data files."""
    from deepmath.io import resolve_path

    problems: list[str] = []
    for name, path in (config.get("prompts") or {}).items():
        if isinstance(path, str) and not _exists(resolve_path, path):
            problems.append(f"prompts.{name} = {path!r}: no such file")
    blocks = [("sources", n, s) for n, s in (config.get("sources") or {}).items()]
    blocks += [("benchmarks", n, s) for n, s in (config.get("benchmarks") or {}).items()]
    for section, name, spec in blocks:
        load = (spec.get("load") or {}) if isinstance(spec, Mapping) else {}
        files = load.get("data_files")
        if load.get("path") not in ("json", "csv", "parquet", "text", "arrow") or not files:
            continue  # hub files are checked by the pull job, where the hub is reachable
        for path in [files] if isinstance(files, str) else list(files):
            if not any(ch in path for ch in "*?[") and not _exists(resolve_path, path):
                problems.append(f"{section}.{name}.load.data_files = {path!r}: no such file")
    return problems


def _exists(resolve: Any, path: str) -> bool:
    try:
        return Path(resolve(path)).exists()
    except DeepmathError:  # a pkg:// path whose package is not installed
        return False


def _evaluation_problems(config: Mapping[str, Any]) -> list[str]:
    """Every evaluated model's spec as the evaluation jobs will read it, and its references."""
    ev = config.get("evaluation") or {}
    if not ev.get("models"):
        return []
    from deepmath.evaluate.spec import eval_spec

    problems: list[str] = []
    benches = set(config.get("benchmarks", {}))
    models = set(config.get("models", {}))
    runs = set((config.get("rl") or {}).get("runs") or {})
    for bench in (
        ((ev.get("scoring") or {}).get("rules") or {})
        if isinstance(ev.get("scoring"), Mapping)
        else ()
    ):
        if bench not in benches:
            problems.append(
                f"evaluation.scoring.rules.{bench}: {bench!r} is not a benchmark; allowed "
                f"values: {', '.join(sorted(benches))}"
            )
    for name, entry in ev["models"].items():
        where = f"evaluation.models.{name}"
        if not isinstance(entry, Mapping):
            problems.append(f"{where} must be a mapping (model: or checkpoint:, label, ...)")
            continue
        kinds = [k for k in ("model", "checkpoint") if k in entry]
        if len(kinds) != 1:
            problems.append(f"{where} needs exactly one of model:, checkpoint: (has: {kinds})")
        elif "model" in entry and entry["model"] not in models:
            problems.append(
                f"{where}.model = {entry['model']!r} is not in models; allowed values: "
                f"{', '.join(sorted(models))}"
            )
        elif "checkpoint" in entry and entry["checkpoint"] not in runs:
            problems.append(
                f"{where}.checkpoint = {entry['checkpoint']!r} is not an rl run; allowed "
                f"values: {', '.join(sorted(runs)) or '(no runs defined)'}"
            )
        try:
            eval_spec({**ev, **entry, "model_name": name})
        except DeepmathError as err:
            problems.append(f"{where}: {err}")
    return problems


def _reference_problems(config: Mapping[str, Any]) -> list[str]:
    """Cross-key checks the schema cannot express (names that must exist elsewhere)."""
    problems: list[str] = []
    benches = set(config.get("benchmarks", {}))
    models = set(config.get("models", {}))
    for section in ("decontamination", "evaluation"):
        for i, name in enumerate(config.get(section, {}).get("benchmarks", []) or []):
            if name not in benches:
                problems.append(
                    f"{section}.benchmarks.{i} = {name!r} is not a benchmark; "
                    f"allowed values: {', '.join(sorted(benches))}"
                )
    for name, entry in ((config.get("audit") or {}).get("datasets") or {}).items():
        if isinstance(entry, Mapping) and bool(entry.get("load")) == bool(entry.get("release")):
            problems.append(
                f"audit.datasets.{name} needs exactly one of load: (a dataset to load) or "
                "release: true (this run's own dataset)"
            )
    for i, name in enumerate((config.get("audit") or {}).get("extra_benchmarks") or []):
        if name not in benches:
            problems.append(
                f"audit.extra_benchmarks.{i} = {name!r} is not a benchmark; "
                f"allowed values: {', '.join(sorted(benches))}"
            )
    emb = config.get("embedding", {}).get("model")
    if emb is not None and emb not in models:
        problems.append(
            f"embedding.model = {emb!r} is not in models; allowed values: "
            f"{', '.join(sorted(models)) or '(no models defined)'}"
        )
    for name, spec in (config.get("models") or {}).items():
        kinds = [k for k in ("hub", "gguf", "local") if k in spec]
        if len(kinds) != 1:
            problems.append(
                f"models.{name} must have exactly one of hub, gguf, local (has: "
                f"{', '.join(kinds) or 'none'})"
            )
    problems.extend(_evaluation_problems(config))
    problems.extend(_llm_problems(config))
    problems.extend(_file_problems(config))
    string_bench = ((config.get("analysis") or {}).get("string_check") or {}).get("benchmark")
    if string_bench is not None and string_bench not in benches:
        problems.append(
            f"analysis.string_check.benchmark = {string_bench!r} is not a benchmark; allowed "
            f"values: {', '.join(sorted(benches))}"
        )
    paper_rates = ((config.get("analysis") or {}).get("contamination") or {}).get("paper", {})
    for name in paper_rates:
        if name not in benches:
            problems.append(
                f"analysis.contamination.paper.{name}: {name!r} is not a benchmark; allowed "
                f"values: {', '.join(sorted(benches))}"
            )
    rl = config.get("rl") or {}
    val_bench = (rl.get("validation") or {}).get("benchmark")
    if val_bench is not None and val_bench not in benches:
        problems.append(
            f"rl.validation.benchmark = {val_bench!r} is not a benchmark; allowed values: "
            f"{', '.join(sorted(benches))}"
        )
    for name, run in (rl.get("runs") or {}).items():
        if run.get("backend") in ("verl", "sft"):
            problems.extend(_recipe_problems(rl, name))
        if run.get("backend") in ("verl", "trl") and "steps" not in run:
            problems.append(f"missing key 'rl.runs.{name}.steps' (required for GRPO runs)")
        if run.get("init") not in models:
            problems.append(
                f"rl.runs.{name}.init = {run.get('init')!r} is not in models; allowed values: "
                f"{', '.join(sorted(models)) or '(no models defined)'}"
            )
        template = run.get("chat_template")
        if template and not Path(template).is_file():
            problems.append(
                f"rl.runs.{name}.chat_template = {template!r}: no such file (paths are relative "
                "to the workflow directory)"
            )
    for section, answer_keys, solution_keys in (
        ("sources", ("reference_answer",), ("reference_solution",)),
        ("benchmarks", ("answer",), ("solution",)),
    ):
        for name, spec in (config.get(section) or {}).items():
            fields = spec.get("fields", {})
            method = spec.get("answer", "none")
            needs = {
                "column": answer_keys,
                "choice_index": answer_keys,
                "boxed": solution_keys,
                "gsm8k": solution_keys + answer_keys,
            }.get(method, ())
            if needs and not any(fields.get(k) for k in needs):
                problems.append(
                    f"{section}.{name}.answer = {method!r} needs fields.{' or fields.'.join(needs)}"
                )
    return problems


def _recipe_problems(rl: Mapping[str, Any], name: str) -> list[str]:
    """A verl or sft run's recipe checked as the training job will check it, before any job."""
    from deepmath import sft_recipe, verl_recipe
    from deepmath.io import DeepmathError
    from deepmath.workflow import rl_run_spec

    spec = rl_run_spec(rl, name, 0)
    try:
        if spec["backend"] == "verl":
            verl_recipe.recipe(spec)
        else:
            sft_recipe.check_shape(spec, sft_recipe.recipe(spec))
    except DeepmathError as err:
        return [f"rl.runs.{name}: {err}"]
    return []


def _drop_unset_servers(config: dict[str, Any]) -> None:
    """Remove ``llm.<role>.serve: null``: an overlay's way to say "no server for this role".

    Config files merge key by key, so an overlay cannot delete the ``serve:`` block it inherits;
    it sets it to null instead (and gives ``base_url``). Every later reader then sees a role
    without ``serve``, exactly as if the block had never been there.
    """
    for role in (config.get("llm") or {}).values():
        if isinstance(role, dict) and "serve" in role and role["serve"] is None:
            del role["serve"]


def validate_config(config: dict[str, Any], schema: Mapping[str, Any] | None = None) -> None:
    """Validate in place (filling defaults); raise ConfigError listing every problem."""
    problems = schema_problems(config, schema or load_schema(), defaults=True)
    if not problems:
        _drop_unset_servers(config)
        problems = _reference_problems(config)
    if problems:
        lines = "\n".join(f"  - {p}" for p in problems)
        raise ConfigError(f"invalid config ({len(problems)} problem(s)):\n{lines}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m deepmath.config",
        description="Check config files (merged in order) against config/schema.yaml.",
    )
    parser.add_argument("configs", nargs="+", help="YAML config files, later ones override")
    args = parser.parse_args(argv)
    config = load_config(args.configs)
    validate_config(config)
    print(f"config OK: run={config['run']} shards={config['shards']}")


if __name__ == "__main__":
    run_cli(main)
