"""Helpers the Snakefile uses at parse time (kept here so the .smk files hold no logic)."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping
from typing import Any

from deepmath.fingerprint import shaping_role, split_role

# The environment variable that carries, to every job, the keys of the LLM roles and of the
# evaluation engine that decide how a job runs but never what it answers (concurrency,
# timeouts, retries, prices, ports, server placement; deepmath.fingerprint.ROLE_RUNTIME_KEYS
# and SERVE_RUNTIME_KEYS say which and why). They reach jobs here and not through rule params,
# because Snakemake reruns a job whose params changed: editing a timeout must not rerun a
# dataset, a training run or an evaluation.
RUNTIME_ENV = "DEEPMATH_RUNTIME"


def setup_environment(scripts_dir: str, extra: Mapping[str, Any]) -> None:
    """Make `python -m deepmath.<stage>` work in every job and apply config.environment.

    Jobs inherit the environment of the Snakemake process that starts them (locally, or the
    Slurm job step, which re-reads the Snakefile), so setting it here reaches every rule.
    Values the user already exported win over the config.

    `python` in a rule is the interpreter Snakemake itself runs under (its folder goes first on
    PATH), so `.venv/bin/snakemake` works without an activated venv. With `--sdm conda` the
    job's env is activated after this and puts its own `python` in front.
    """
    parts = [scripts_dir, *[p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]]
    os.environ["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(parts))
    os.environ["PATH"] = interpreter_first(os.environ.get("PATH", ""), sys.executable)
    for name, value in extra.items():
        if isinstance(value, bool):
            value = int(value)
        os.environ.setdefault(name, str(value))


def runtime_settings(config: Mapping[str, Any]) -> dict[str, Any]:
    """The run-only keys of every LLM role and of the evaluation engine (see RUNTIME_ENV)."""
    roles = {name: split_role(spec)[1] for name, spec in (config.get("llm") or {}).items()}
    engine = (config.get("evaluation") or {}).get("engine") or {}
    return {"llm": roles, "engine": split_role(engine, engine=True)[1]}


def export_runtime(config: Mapping[str, Any]) -> None:
    """Hand the run-only keys to every job of this run through the environment."""
    os.environ[RUNTIME_ENV] = as_json(runtime_settings(config))


def runtime_from_env(section: str, name: str | None = None) -> dict[str, Any]:
    """A job's run-only keys (``section`` llm with a role ``name``, or engine); {} outside a
    workflow run (a stage CLI run by hand takes the defaults)."""
    try:
        settings = json.loads(os.environ.get(RUNTIME_ENV) or "{}")
    except ValueError:
        return {}
    found = settings.get(section) or {}
    if name is not None:
        found = found.get(name) or {}
    return dict(found) if isinstance(found, Mapping) else {}


def interpreter_first(path: str, python: str) -> str:
    """PATH on which `python` is the interpreter ``python`` (e.g. Snakemake's own).

    Unchanged when the first `python` on PATH already lives in that interpreter's folder (an
    activated venv or conda env); otherwise the folder goes in front, as activating it would.
    Folders are compared, not symlink targets: a venv's bin/python links to the base
    interpreter, which lacks the venv's packages.
    """
    import shutil

    folder = os.path.dirname(os.path.abspath(python))
    found = shutil.which("python", path=path) if path else None
    if found and os.path.dirname(os.path.abspath(found)) == folder:
        return path
    parts = [folder, *[p for p in path.split(os.pathsep) if p]]
    return os.pathsep.join(dict.fromkeys(parts))


def as_json(value: Any) -> str:
    """A config entry as one JSON argument for a stage CLI (quote it with {params.x:q})."""
    return json.dumps(value, sort_keys=True)


def model_spec(spec: Mapping[str, Any]) -> dict[str, Any]:
    """A ``models:`` entry as prepare_model's rule parameter.

    ``dtype`` only changes the folder of a GGUF conversion; elsewhere it is dropped, so that
    its default (filled in by the schema) never reruns a hub download of a 70B model.
    """
    return {k: v for k, v in spec.items() if k != "dtype" or "gguf" in spec}


def rl_run_spec(rl: Mapping[str, Any], name: str, seed: int) -> dict[str, Any]:
    """One ``rl.runs`` entry with the shared ``rl`` keys, as the training rules' parameter.

    ``dtype`` is a TRL setting (verl takes its precision from the recipe): dropped for runs on
    verl, so that it never reruns a multi-node training job.
    """
    run = dict(rl["runs"][name])
    on_trl = run.get("backend") == "trl" or run.get("trainer") == "trl"
    if not on_trl:
        run.pop("dtype", None)
    # where the rows come from is the data rule's business: changing it must not rerun training
    # by itself (the new data does, through the train file)
    common = {k: v for k, v in rl.items() if k not in ("runs", "dataset", "published")}
    return {**common, **run, "seed": seed, "name": name}


# What the data rules read of a run (deepmath.rldata / deepmath.sftdata DEFAULTS, and the
# validation set's size): their params hold only these, so a learning-rate edit reruns the
# training, not the data preparation.
RL_DATA_KEYS = (
    "data_source",
    "system_prompt",
    "system_text",
    "reward_gate",
    "seed",
    "max_train_rows",
    "validation",
)
SFT_DATA_KEYS = ("solutions", "system_prompt", "system_text", "seed", "max_rows")


def data_spec(rl: Mapping[str, Any], name: str, seed: int) -> dict[str, Any]:
    """What prepare_rl_data / prepare_sft_data of run ``name`` read of its spec."""
    spec = rl_run_spec(rl, name, seed)
    keys = SFT_DATA_KEYS if spec.get("backend") == "sft" else RL_DATA_KEYS
    out = {k: spec[k] for k in keys if k in spec}
    if isinstance(out.get("validation"), Mapping):  # `every` is the trainer's, not the data's
        out["validation"] = {k: v for k, v in out["validation"].items() if k != "every"}
    return out


def served_model(config: Mapping[str, Any], role: str) -> str | None:
    """The `models:` entry a served role runs, or None for an external endpoint."""
    serve = (config.get("llm", {}).get(role) or {}).get("serve")
    return serve.get("model") if serve else None


def role_gpus(config: Mapping[str, Any], role: str) -> int:
    """GPUs per node a served role needs (tensor x pipeline parallel spread over its nodes)."""
    serve = (config.get("llm", {}).get(role) or {}).get("serve") or {}
    if not serve:
        return 0
    total = int(serve.get("tensor_parallel", 1)) * int(serve.get("pipeline_parallel", 1))
    nodes = max(1, int(serve.get("nodes", 1)))
    if "gpus" in serve:
        return int(serve["gpus"])
    return max(1, total // nodes)


def role_nodes(config: Mapping[str, Any], role: str) -> int:
    serve = (config.get("llm", {}).get(role) or {}).get("serve") or {}
    return max(1, int(serve.get("nodes", 1))) if serve else 1


def llm_cli(
    config: Mapping[str, Any],
    role: str,
    prompt: str,
    journal: str,
    usage: str,
    server_dir: str,
    model_dir: str | None,
    registry: str | None = None,
) -> str:
    """The shared LLM options of a stage CLI, shell-quoted (see deepmath.llmstage)."""
    import shlex

    args = [
        "--role",
        role,
        "--role-spec",
        as_json(shaping_role(config["llm"][role])),
        "--prompt",
        prompt,
        "--journal",
        journal,
        "--usage",
        usage,
        "--server-dir",
        server_dir,
    ]
    if model_dir:
        args += ["--model-dir", model_dir]
    if registry:
        args += ["--server-registry", registry]
    return " ".join(shlex.quote(a) for a in args)


# What each evaluation job reads from `evaluation` + the model's entry: a job's params hold only
# these, so editing a label, a published number or another benchmark's rule reruns nothing
# (Snakemake reruns a job whose params changed).
EVAL_GENERATE_KEYS = (
    "system_prompt",
    "system_text",
    "prompt_prefix",
    "prompt_suffix",
    "sampling",
    "engine",
    "limit",
)


def eval_job_spec(
    evaluation: Mapping[str, Any], model: str, stage: str, bench: str | None = None
) -> dict[str, Any]:
    """The spec of one evaluation job (``generate`` or ``score``) of one model and benchmark.

    ``generate`` gets what the samples depend on (prompt, sampling, engine, limit); ``score``
    gets the scoring block with only ``bench``'s rule. The label, family and published numbers
    reach the results table only.
    """
    entry = {**evaluation, **(evaluation.get("models") or {}).get(model, {})}
    if stage == "generate":
        spec = {k: entry[k] for k in EVAL_GENERATE_KEYS if k in entry}
        if isinstance(spec.get("engine"), Mapping):  # run-only keys go by RUNTIME_ENV
            spec["engine"] = shaping_role(spec["engine"], engine=True)
    elif stage == "score":
        scoring = dict(entry.get("scoring") or {})
        rules = scoring.get("rules") or {}
        scoring["rules"] = {bench: rules[bench]} if bench in rules else {}
        scoring.pop("scorer", None)  # both scorers always run: the table picks whose to print
        spec = {"scoring": scoring}
    else:
        raise ValueError(f"stage {stage!r}: generate or score")
    return {**spec, "model_name": model}


# The code a score_eval verdict depends on, under scripts/deepmath/: both checkers (ours and,
# in answers/authors/, the authors') and the scoring itself.
SCORE_CODE = ("answers", "evaluate/score.py")


def score_code(scripts_dir: str | os.PathLike[str]) -> str:
    """Digest of the scoring code, score_eval's ``code`` param: a fix in a checker or in the
    scoring re-scores every benchmark (Snakemake reruns a job whose params changed), and an
    unchanged tree gives the same digest in every process (content only, in sorted order)."""
    from deepmath.fingerprint import source_digest

    package = os.path.join(scripts_dir, "deepmath")
    return source_digest(os.path.join(package, part) for part in SCORE_CODE)


# What the results table reads of `evaluation` (deepmath.evaluate.table): the engine, sampling
# and scoring reach it through the metrics files, so editing them reruns the jobs that use
# them and, through their outputs, the table; not the table by itself.
EVAL_TABLE_KEYS = ("benchmarks", "average", "models", "families", "labels", "paper_results")


def eval_table_spec(evaluation: Mapping[str, Any]) -> dict[str, Any]:
    """The results table's params: the keys it reads, each model entry without its engine, and
    ``scoring.scorer`` (whose verdicts it prints)."""
    spec = {k: evaluation[k] for k in EVAL_TABLE_KEYS if k in evaluation}
    scoring = evaluation.get("scoring")
    if isinstance(scoring, Mapping) and scoring.get("scorer") is not None:
        spec["scoring"] = {"scorer": scoring["scorer"]}
    if isinstance(spec.get("models"), Mapping):
        spec["models"] = {
            name: {k: v for k, v in (entry or {}).items() if k != "engine"}
            for name, entry in spec["models"].items()
        }
    return spec


# Sections that shape the curated dataset (and so its card's "exact config"); evaluation,
# training and report settings do not, and must not rerun the dataset (and with it training).
CURATION_SECTIONS = (
    "run",
    "seed",
    "shards",
    "sources",
    "pool",
    "embedding",
    "decontamination",
    "llm",
    "prompts",
    "difficulty",
    "rewrite",
    "solve",
    "verify",
    "topics",
    "dataset",
)


def curation_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """The part of the config the dataset depends on: the curation sections, the benchmarks it
    was decontaminated against and the models its stages run (not the evaluated ones)."""
    out = {k: config[k] for k in CURATION_SECTIONS if k in config}
    # the roles without their run-only keys (a timeout or a price never changes the dataset)
    out["llm"] = {name: shaping_role(spec) for name, spec in (config.get("llm") or {}).items()}
    benches = (config.get("decontamination") or {}).get("benchmarks") or []
    out["benchmarks"] = {b: config["benchmarks"][b] for b in benches if b in config["benchmarks"]}
    used = {(config.get("embedding") or {}).get("model")}
    used |= {served_model(config, role) for role in config.get("llm") or {}}
    out["models"] = {m: s for m, s in (config.get("models") or {}).items() if m in used}
    return out
