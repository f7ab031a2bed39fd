"""Load and validate the workflow config: config/schema.yaml, then what a schema cannot say.

The schema (:mod:`deepmath.schema`) holds every type, range, enum and allowed key; this module
adds the checks between sections (names that must exist elsewhere, files that must exist,
recipes as the training job will read them), so that every mistake stops the run before the
first job.
"""

from __future__ import annotations

import argparse
import difflib
import os
import re
import sys
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from deepmath.configfile import (  # re-exported: deepmath.config is where callers look
    ConfigError,
    deep_merge,
    load_config,
    read_yaml,
)

__all__ = [
    "ConfigError",
    "api_key_problems",
    "deep_merge",
    "load_config",
    "read_yaml",
    "validate_config",
]
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

# The rules that send requests to an `llm` role, and the (section, key) naming their role.
LLM_RULES: dict[str, tuple[str, str]] = {
    "judge_contamination": ("decontamination", "judge_role"),
    "judge_audit": ("decontamination", "judge_role"),
    "rate_difficulty": ("difficulty", "role"),
    "rate_supplement": ("difficulty", "role"),
    "rate_compare": ("difficulty", "role"),
    "rewrite_questions": ("rewrite", "role"),
    "solve": ("solve", "role"),
    "solve_supplement": ("solve", "role"),
    "classify_topic": ("topics", "role"),
    "topic_supplement": ("topics", "role"),
}
# The evaluation's generation: one job per model and benchmark, its endpoint the model's engine.
EVAL_RULE = "generate_eval"
CURATION_LLM_RULES = (
    "judge_contamination",
    "rate_difficulty",
    "rewrite_questions",
    "solve",
    "classify_topic",
)
SUPPLEMENT_LLM_RULES = ("rate_supplement", "solve_supplement", "topic_supplement")

# Snakemake's wildcard syntax, `{name}` or `{name,regex}` (WILDCARD_REGEX of
# snakemake_interface_storage_plugins.io, which the tests hold this copy to). Snakemake fills it
# in every string a rule is handed, file paths and parameters alike, and a name that is no
# wildcard of the rule stops the whole dry run with a WildcardError that names no config key.
WILDCARD = re.compile(
    r"""
    \{
        (?=(
            \s*(?P<name>[.\w]+)
            (\s*,\s*
                (?P<constraint>
                    ([^{}]+ | \{\d+(,\d+)?\})*
                )
            )?\s*
        ))\1
    \}
    """,
    re.VERBOSE,
)
# Config parts the rules receive only through functions, which Snakemake never formats, and
# whose values may hold braces of their own (verl's hydra overrides interpolate `${a.b}`):
# environment variables and the training section - except a run's chat template, an input path.
BRACES_ALLOWED = ("environment", "rl")


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
    from deepmath.evaluate.spec import eval_spec, length_problem

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
        scoring = entry.get("scoring")
        if isinstance(scoring, Mapping) and scoring.get("scorer") is not None:
            problems.append(
                f"{where}.scoring.scorer: one scorer's verdicts fill the whole results table "
                "(both scorers judge every model); set evaluation.scoring.scorer instead"
            )
        try:
            checked = eval_spec({**ev, **entry, "model_name": name})
        except DeepmathError as err:
            problems.append(f"{where}: {err}")
            continue
        folder = _eval_model_folder(config, entry)
        problem = length_problem(checked, folder) if folder else None
        if problem:
            problems.append(f"{where}: {problem}")
    return problems


def _eval_model_folder(config: Mapping[str, Any], entry: Mapping[str, Any]) -> str | None:
    """The folder an evaluated model is read from (the Snakefile's eval_model_dir)."""
    if "checkpoint" in entry:
        return f"results/{config.get('run')}/checkpoints/{entry['checkpoint']}/hf"
    if "model" in entry and config.get("models_dir"):
        return f"{config['models_dir']}/{entry['model']}"
    return None


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
    problems.extend(_average_problems(config))
    problems.extend(_topic_problems(config))
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


def _recipe_keys(spec: Mapping[str, Any]) -> tuple[Sequence[str], Sequence[str], Sequence[str]]:
    """(required, optional, accepted but skipped) items of a run's recipe, as its trainer has
    them: the training modules own the lists, so the two checks can never drift apart.

    A trl run accepts the verl recipe's items too (it skips them with a warning in its log), so
    that one recipe can serve both backends; anything else is a typo that would otherwise only
    be a warning inside the training job.
    """
    from deepmath import sft_recipe, train_trl, verl_recipe

    if spec.get("backend") == "sft":
        return sft_recipe.REQUIRED, tuple(sft_recipe.OPTIONAL), ()
    if spec.get("backend") == "trl":
        own = {*train_trl.RECIPE_REQUIRED, *train_trl.RECIPE_OPTIONAL}
        verl = (*verl_recipe.REQUIRED, *verl_recipe.OPTIONAL, *train_trl.NOT_IN_TRL)
        skipped = tuple(k for k in dict.fromkeys(verl) if k not in own)
        return train_trl.RECIPE_REQUIRED, tuple(train_trl.RECIPE_OPTIONAL), skipped
    return verl_recipe.REQUIRED, tuple(verl_recipe.OPTIONAL), ()


def _trainer(spec: Mapping[str, Any]) -> str:
    """The backend (and SFT trainer) of a run, as the messages name it."""
    if spec.get("backend") == "sft":
        return f"backend sft, trainer {spec.get('trainer', 'verl')}"
    return f"backend {spec.get('backend')}"


def _unknown_recipe_items(spec: Mapping[str, Any], name: str) -> list[str]:
    """Each recipe item the run's trainer does not know, with what it does know."""
    required, optional, skipped = _recipe_keys(spec)
    allowed = [*required, *optional]
    problems = []
    for key in spec["recipe"]:
        if key in allowed or key in skipped:
            continue
        close = difflib.get_close_matches(str(key), [*allowed, *skipped], n=1)
        guess = f" (did you mean '{close[0]}'?)" if close else ""
        also = " (and the verl recipe's items, which trl skips)" if skipped else ""
        problems.append(
            f"unknown key 'rl.runs.{name}.recipe.{key}'{guess}; allowed keys for "
            f"{_trainer(spec)}: {', '.join(sorted(allowed))}{also}"
        )
    return problems


def _recipe_problems(rl: Mapping[str, Any], name: str) -> list[str]:
    """A run's recipe checked as its training job will check it, before any job.

    Unknown items first, for every backend (a misspelt ``learning_rate`` for ``lr``); then the
    recipe without them goes through the trainer's own checks, so one run says all at once.
    """
    from deepmath import sft_recipe, train_trl, verl_recipe
    from deepmath.workflow import rl_run_spec

    spec = rl_run_spec(rl, name, 0)
    if not isinstance(spec.get("recipe"), Mapping):
        return [f"rl.runs.{name}.recipe must be a mapping of the recipe's items"]
    problems = _unknown_recipe_items(spec, name)
    required, optional, skipped = _recipe_keys(spec)
    known = {k: v for k, v in spec["recipe"].items() if k in {*required, *optional, *skipped}}
    spec = {**spec, "recipe": known}
    try:
        if spec["backend"] == "verl":
            verl_recipe.recipe(spec)
        elif spec["backend"] == "sft":
            sft_recipe.check_shape(spec, sft_recipe.recipe(spec))
        else:
            problems.extend(
                f"missing key 'rl.runs.{name}.recipe.{key}' (required for {_trainer(spec)})"
                for key in required
                if known.get(key) is None
            )
            train_trl.kl_beta(known.get("kl"))
    except DeepmathError as err:
        problems.append(f"rl.runs.{name}: {err}")
    except (TypeError, ValueError) as err:  # a number the trainer cannot read, e.g. kl.coef
        problems.append(f"rl.runs.{name}.recipe: a value of the wrong type ({err})")
    return problems


def _topic_problems(config: Mapping[str, Any]) -> list[str]:
    """The topic tree a topic job picks from, and the fallback it gives when no path fits.

    A fallback outside the tree would put a topic in the dataset that the tree does not have;
    a curation without a tree fails in its first topic job.
    """
    topics = config.get("topics") or {}
    tree, fallback = topics.get("tree"), topics.get("fallback")
    if not tree:
        if _curation_runs(config):
            return [
                "missing key 'topics.tree' (required: the topic jobs give each question one of "
                "its paths)"
            ]
        return []
    if fallback is None or fallback in tree:
        return []
    close = difflib.get_close_matches(str(fallback), [str(t) for t in tree], n=3)
    closest = f"; closest: {', '.join(repr(c) for c in close)}" if close else ""
    return [
        f"topics.fallback = {fallback!r} is not in topics.tree; allowed values: one of the "
        f"tree's {len(tree)} paths{closest}"
    ]


def _average_problems(config: Mapping[str, Any]) -> list[str]:
    """evaluation.average may only name evaluated benchmarks: a row's Avg. is given when it has
    every averaged benchmark, so one that is never evaluated leaves the whole column empty."""
    ev = config.get("evaluation") or {}
    evaluated = list(ev.get("benchmarks") or [])
    return [
        f"evaluation.average.{i} = {name!r} is not evaluated (not in evaluation.benchmarks), so "
        f"the Avg. column would stay empty; allowed values: "
        f"{', '.join(evaluated) or '(no benchmarks evaluated)'}"
        for i, name in enumerate(ev.get("average") or [])
        if name not in evaluated
    ]


def _strings(node: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], str, bool]]:
    """Every string of the config with its key path; mapping keys too (flagged True)."""
    if isinstance(node, Mapping):
        for key, value in node.items():
            if isinstance(key, str):
                yield path, key, True
            yield from _strings(value, (*path, str(key)))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _strings(value, (*path, str(i)))
    elif isinstance(node, str):
        yield path, node, False


def _braces_allowed(path: Sequence[str]) -> bool:
    """Whether the value at ``path`` reaches the jobs only through functions (BRACES_ALLOWED)."""
    if not path or path[0] not in BRACES_ALLOWED:
        return False
    is_template = tuple(path[:2]) == ("rl", "runs") and tuple(path[3:4]) == ("chat_template",)
    return not is_template  # an input path of the training rules


def _wildcard_problems(config: Mapping[str, Any]) -> list[str]:
    """Config text that Snakemake would read as a wildcard: names, labels, paths, prompts.

    Config values become parts of output paths (``models_dir``), inputs (a chat template) and
    rule parameters (the curation sections in the dataset card's, the evaluation section in
    the results table's), and Snakemake fills ``{name}`` in all of them.
    """
    problems = []
    for path, text, is_key in _strings(config):
        found = WILDCARD.search(text)
        if found is None or _braces_allowed(path):
            continue
        what = f"{'.'.join(path) or '(top level)'}: key {text!r}" if is_key else None
        what = what or f"{'.'.join(path)} = {text!r}"
        problems.append(
            f"{what} holds {found.group(0)!r}, which Snakemake reads as a wildcard (config "
            "values reach the rules' file paths and parameters); leave out the braces or the "
            "name inside them"
        )
    return problems


def _curation_runs(config: Mapping[str, Any]) -> bool:
    """Whether the workflow curates a dataset (not when training starts from the published one)."""
    return (config.get("rl") or {}).get("dataset", "ours") != "published"


def workflow_llm_jobs(config: Mapping[str, Any]) -> list[tuple[str, dict[str, str]]]:
    """The LLM jobs of the whole workflow (rule all) as (rule, wildcards), from the config.

    Curation's stages unless training starts from the published dataset, the supplement's with
    a supplement source, the audit's judge with an audit, the compared sets' rating with a
    compared set, and the evaluation's generation of each evaluated model.
    """
    rules: list[str] = []
    if _curation_runs(config):
        rules += CURATION_LLM_RULES
        sources = (config.get("sources") or {}).values()
        if any(isinstance(s, Mapping) and s.get("role") == "supplement" for s in sources):
            rules += SUPPLEMENT_LLM_RULES
    if (config.get("audit") or {}).get("datasets"):
        rules.append("judge_audit")
    if (config.get("analysis") or {}).get("compare"):
        rules.append("rate_compare")
    jobs: list[tuple[str, dict[str, str]]] = [(rule, {}) for rule in rules]
    ev = config.get("evaluation") or {}
    if ev.get("benchmarks"):
        jobs += [(EVAL_RULE, {"model": str(m)}) for m in ev.get("models") or {}]
    return jobs


def _api_key_env(
    config: Mapping[str, Any], rule: str, wildcards: Mapping[str, str]
) -> tuple[str, str] | None:
    """(dotted key, variable name) of the API key a job of ``rule`` sends; None for none."""
    if rule in LLM_RULES:
        section, key = LLM_RULES[rule]
        role = (config.get(section) or {}).get(key)
        block = (config.get("llm") or {}).get(role)
        where = f"llm.{role}.api_key_env"
    elif rule == EVAL_RULE:
        ev = config.get("evaluation") or {}
        model = str(wildcards.get("model"))
        entry = (ev.get("models") or {}).get(model) or {}
        if "engine" in entry:
            block, where = entry["engine"], f"evaluation.models.{model}.engine.api_key_env"
        else:
            block, where = ev.get("engine"), "evaluation.engine.api_key_env"
        if isinstance(block, Mapping) and block.get("kind") == "offline":
            return None  # vllm.LLM in the job: no endpoint, no key
    else:
        return None
    var = block.get("api_key_env") if isinstance(block, Mapping) else None
    return (where, str(var)) if var else None


def api_key_problems(
    config: Mapping[str, Any],
    jobs: Iterable[tuple[str, Mapping[str, str]]] | None = None,
    environ: Mapping[str, str] | None = None,
) -> list[str]:
    """Each API key variable that LLM jobs send and the environment does not hold (or holds
    empty), with the jobs' rules.

    ``jobs`` are (rule, wildcards) of the jobs to run (default: every LLM job of the whole
    workflow); the config's ``environment`` counts, as every job gets it. Said before the first
    job: otherwise the first LLM job finds out, hours of embedding later.
    """
    env = {str(k): str(v) for k, v in (config.get("environment") or {}).items()}
    env.update(os.environ if environ is None else environ)
    keys: dict[str, dict[str, None]] = {}  # variable -> the keys naming it
    rules: dict[str, dict[str, None]] = {}  # variable -> the rules sending it
    for rule, wildcards in workflow_llm_jobs(config) if jobs is None else jobs:
        found = _api_key_env(config, rule, wildcards)
        if found is None or env.get(found[1]):
            continue
        where, var = found
        keys.setdefault(var, {})[where] = None  # dicts: first-seen order, no repeats
        rules.setdefault(var, {})[rule] = None
    return [
        f"environment variable {var} is not set ({', '.join(keys[var])} = {var!r}); the LLM "
        f"jobs of {', '.join(rules[var])} send it as their API key: export {var} before the run"
        for var in keys
    ]


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
        problems = _reference_problems(config) + _wildcard_problems(config)
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
    for problem in api_key_problems(config):
        print(
            f"warning: {problem} (a real run whose jobs need it stops before its first job)",
            file=sys.stderr,
        )
    print(f"config OK: run={config['run']} shards={config['shards']}")


if __name__ == "__main__":
    run_cli(main)
