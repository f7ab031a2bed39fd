import shlex

from snakemake.exceptions import WorkflowError
from snakemake.logging import logger

from deepmath.config import ConfigError, api_key_problems, read_yaml, validate_config
from deepmath.hublock import (
    LOCK_ENV,
    config_refs,
    dataset_ref,
    model_ref,
    sync_stamps,
    unlocked_warnings,
)
from deepmath.workflow import (
    as_json,
    curation_config,
    data_spec,
    eval_job_spec,
    eval_table_spec,
    export_runtime,
    llm_cli,
    model_spec,
    rl_run_spec,
    role_gpus,
    role_nodes,
    served_model,
    setup_environment,
)

try:
    # Snakemake's YAML reader keeps the last of two equal keys; ours refuses them
    for path in workflow.configfiles:
        read_yaml(path)
    validate_config(config)
except ConfigError as err:
    raise WorkflowError(str(err)) from None

# An API key variable the LLM jobs send but the environment lacks: said now, not by the first
# LLM job hours later. Here a warning (a dry run goes on; Snakemake tells no dry run from a
# real one while it reads the workflow), before a real run's first job an error (onstart).
if workflow.is_main_process:
    for problem in api_key_problems(config):
        logger.warning(
            f"Warning: {problem} (a real run that needs it stops before its first job)"
        )


onstart:
    # the LLM jobs this run is about to start, not those of the whole workflow
    jobs = [
        (job.rule.name, job.wildcards_dict) for job in workflow.dag.needrun_jobs()
    ]
    problems = [] if workflow.touch else api_key_problems(config, jobs)
    if problems:
        raise WorkflowError(
            f"missing API key ({len(problems)} problem(s)):\n"
            + "\n".join(f"  - {p}" for p in problems)
        )


setup_environment(SCRIPTS, config["environment"])
export_runtime(config)


# Hub revisions that stay put (deepmath.hublock has the design): a job of a floating revision
# (`main`, a branch, a tag) locks the commit it downloads in config["hub_lock"] (the path
# reaches the jobs through the environment, so no params change with the lock) and reads one
# stamp that mirrors its lock entry: a first lock reruns nothing, a changed entry reruns the
# jobs that read it.
HUB_LOCK = config["hub_lock"]
os.environ[LOCK_ENV] = HUB_LOCK
HUB_REFS = config_refs(config)
try:
    # the main process keeps the stamps; a cluster job re-reading the Snakefile only names them
    HUB_STAMPS = sync_stamps(
        HUB_LOCK, HUB_REFS.values(), write=workflow.is_main_process
    )
    if workflow.is_main_process:
        for line in unlocked_warnings(HUB_LOCK, HUB_REFS):
            logger.warning(f"hub lock: {line}")
except ConfigError as err:
    raise WorkflowError(str(err)) from None


def hub_stamp(ref):
    """The stamp a job of a floating hub revision reads (none for local files or commits)."""
    return [HUB_STAMPS[ref]] if ref in HUB_STAMPS else []


def load_stamp(load):
    """The hub stamp of a `load` block (input of the job that pulls it)."""
    return hub_stamp(dataset_ref(load)) if load else []


def model_stamp(name):
    """The hub stamp of a `models:` entry (input of its prepare_model job)."""
    return hub_stamp(model_ref(config["models"][name]))


RUN = config["run"]
RESULTS = f"results/{RUN}"
SHARDS = [f"{i:04d}" for i in range(config["shards"])]
MODELS_DIR = config["models_dir"]
POOL_SOURCES = [n for n, s in config["sources"].items() if s["role"] == "pool"]
SUPPLEMENT_SOURCES = [
    n for n, s in config["sources"].items() if s["role"] == "supplement"
]
DECONTAM_BENCHMARKS = config["decontamination"]["benchmarks"]
SERVERS = f"{RESULTS}/.servers"
# Jobs of a local run may share one server per model (serve.share: workflow); on a cluster
# every job starts its own.
SERVER_REGISTRY = (
    f"{SERVERS}/registry" if workflow.local_exec and not workflow.remote_exec else None
)


wildcard_constraints:
    shard=r"\d{4}",
    source=r"[A-Za-z0-9_.-]+",
    bench=r"[A-Za-z0-9_.-]+",
    model=r"[A-Za-z0-9_.-]+",


def res(path):
    """Path of an artifact of this run."""
    return f"{RESULTS}/{path}"


def logs(path):
    """Log file of a job (stderr of the stage CLI)."""
    return f"{RESULTS}/logs/{path}"


def timing(path):
    """Where Snakemake's `benchmark:` records wall time and memory of a job."""
    return f"{RESULTS}/timings/{path}.tsv"


def model_dir(name):
    return f"{MODELS_DIR}/{name}"


def journal(rule, shard):
    """Resume journal of an LLM job: outside the declared outputs, so never deleted."""
    return f"{RESULTS}/.journal/{rule}/{shard}.jsonl"


def served_model_dir(role):
    """Local folder of the model a served role runs (None for an external endpoint)."""
    name = served_model(config, role)
    return model_dir(name) if name else None


def llm_inputs(role):
    """The model folder a served role needs as input (prepare_model makes it)."""
    path = served_model_dir(role)
    return [path] if path else []


def job_key(wildcards):
    """The journal name of an LLM job: its shard, source, compared or audited dataset."""
    for key in ("shard", "source", "dataset", "audit"):
        if hasattr(wildcards, key):
            return getattr(wildcards, key)
    raise ValueError(
        f"an LLM job needs a shard, source, dataset or audit wildcard: {wildcards}"
    )


def llm_params(rule, role, prompt):
    """Params function giving the shared LLM options of a stage CLI."""

    def build(wildcards, output):
        return llm_cli(
            config,
            role,
            config["prompts"][prompt],
            journal(rule, job_key(wildcards)),
            output.usage,
            SERVERS,
            served_model_dir(role),
            SERVER_REGISTRY,
        )

    return build


onsuccess:
    if SERVER_REGISTRY:
        shell("python -m deepmath.serve stop-all --registry {SERVER_REGISTRY:q}")


onerror:
    if SERVER_REGISTRY:
        shell("python -m deepmath.serve stop-all --registry {SERVER_REGISTRY:q}")


# Job priorities where cores are scarce (a laptop, the 2-core demo): the chain the dataset
# waits for (embeddings -> decontamination -> labels -> solutions -> verification -> dataset)
# first, then training and evaluation, and the analyses and audits last, so that they never
# take cores (or the shared LLM server) from curation. On a cluster they only set queue order.
FIRST = 10
LATE = -10


# --- dataset (rules/dataset.smk)

DATASET = config["dataset"]
DATASET_FILES = [
    res(f"dataset/data/train-{i:05d}-of-{DATASET['num_shards']:05d}.parquet")
    for i in range(DATASET["num_shards"])
]


def stage_stats():
    """The stats files the dataset card's funnel is computed from."""
    per_shard = {
        "decontam": "decontam/shard-{shard}.stats.json",
        "difficulty": "difficulty/shard-{shard}.stats.json",
        "rewrite": "rewrite/shard-{shard}.stats.json",
        "verified": "verified/shard-{shard}.stats.json",
        "topics": "topics/shard-{shard}.stats.json",
    }
    stats = {k: expand(res(v), shard=SHARDS) for k, v in per_shard.items()}
    stats["raw"] = expand(res("raw/{source}.stats.json"), source=POOL_SOURCES)
    stats["pool"] = [res("pool/stats.json")]
    # the hub inputs whose commits the card names besides the pool's (none: no key, so that a
    # run from local files keeps its params)
    hub = [
        res(f"raw/{s}.stats.json")
        for s in SUPPLEMENT_SOURCES
        if is_hub(config["sources"][s])
    ]
    hub += [
        res(f"benchmarks/{b}.stats.json")
        for b in DECONTAM_BENCHMARKS
        if is_hub(config["benchmarks"][b])
    ]
    used = curation_config(config)["models"]
    models = [model_dir(m) for m, spec in used.items() if model_ref(spec)]
    if hub:
        stats["hub"] = hub
    if models:
        stats["hub_models"] = models  # folders: the card reads their provenance
    return stats


def is_hub(entry):
    """Whether a sources/benchmarks entry loads from the hub."""
    return dataset_ref(entry["load"]) is not None


def role_prices():
    """Each LLM role's price table (the cost pages price tokens with it; nothing else does)."""
    return {name: spec.get("prices") for name, spec in config["llm"].items()}


def usage_files():
    """Every usage file of the run's LLM jobs (the dataset card sums their cost)."""
    per_shard = [
        "decontam/shard-{shard}.judged.usage.json",
        "difficulty/shard-{shard}.usage.json",
        "rewrite/shard-{shard}.usage.json",
        "solutions/shard-{shard}.usage.json",
        "topics/shard-{shard}.usage.json",
    ]
    per_source = [
        "supplement/{source}.difficulty.usage.json",
        "supplement/{source}.solutions.usage.json",
        "supplement/{source}.topics.usage.json",
    ]
    files = [f for p in per_shard for f in expand(res(p), shard=SHARDS)]
    return files + [
        f for p in per_source for f in expand(res(p), source=SUPPLEMENT_SOURCES)
    ]


# --- training (rules/train.smk)

RL = config["rl"]
RL_RUNS = RL["runs"]
VERL_RUNS = [n for n, r in RL_RUNS.items() if r["backend"] == "verl"]
TRL_RUNS = [n for n, r in RL_RUNS.items() if r["backend"] == "trl"]
SFT_RUNS = [n for n, r in RL_RUNS.items() if r["backend"] == "sft"]
SFT_VERL_RUNS = [n for n in SFT_RUNS if RL_RUNS[n].get("trainer", "verl") == "verl"]
SFT_TRL_RUNS = [n for n in SFT_RUNS if RL_RUNS[n].get("trainer", "verl") == "trl"]
GRPO_RUNS = VERL_RUNS + TRL_RUNS
# runs whose FSDP checkpoints merge_checkpoint turns into a HF folder
MERGED_RUNS = VERL_RUNS + SFT_VERL_RUNS
# Training from the released dataset needs no curation job at all.
FROM_PUBLISHED = RL.get("dataset", "ours") == "published"
PUBLISHED_FILE = res("published/deepmath-103k.parquet")
RL_DATA = [PUBLISHED_FILE] if FROM_PUBLISHED else DATASET_FILES
RL_VAL_BENCH = (RL.get("validation") or {}).get("benchmark")
RL_VAL_FILES = [res(f"benchmarks/{RL_VAL_BENCH}.parquet")] if RL_VAL_BENCH else []


def one_of(names):
    """Wildcard regex matching exactly these names (nothing when the list is empty)."""
    return "|".join(re.escape(n) for n in names) if names else "(?!)"


def rl_spec(model):
    return as_json(rl_run_spec(RL, model, config["seed"]))


def rl_data_spec(model):
    """What the data rule of a run reads (a recipe edit does not rerun it)."""
    return as_json(data_spec(RL, model, config["seed"]))


def init_model(wildcards):
    return model_dir(RL_RUNS[wildcards.model]["init"])


def chat_template(model):
    """The run's chat template file as a list (an input when set; empty otherwise)."""
    path = RL_RUNS[model].get("chat_template")
    return [path] if path else []


def train_dir(model):
    return f"{RESULTS}/.train/{model}"


# --- evaluation (rules/evaluate.smk)

EVAL = config["evaluation"]
EVAL_MODELS = EVAL.get("models", {})
EVAL_BENCHES = EVAL.get("benchmarks", [])


def eval_model_dir(wildcards):
    """The folder evaluated: a prepared `models:` entry or one of our merged checkpoints."""
    entry = EVAL_MODELS[wildcards.model]
    if "checkpoint" in entry:
        return res(f"checkpoints/{entry['checkpoint']}/hf")
    return model_dir(entry["model"])


def eval_spec(model, stage, bench=None):
    """What one evaluation job depends on, as JSON (its params: a change reruns only it)."""
    return as_json(eval_job_spec(EVAL, model, stage, bench))


def eval_gpus(wildcards):
    return int((EVAL.get("engine") or {}).get("gpus", 0))


# --- report (rules/report.smk)


def eval_usage_files():
    """Usage files of the evaluation generations (the report's cost table adds them)."""
    return expand(
        res("eval/{model}/{bench}/responses.usage.json"),
        model=EVAL_MODELS,
        bench=EVAL_BENCHES,
    )


# --- dataset analyses (rules/analysis.smk)


ANALYSIS = config["analysis"]
COMPARE = ANALYSIS["compare"]
ANALYSIS_SETS = ["ours", *COMPARE]
# The `dataset` wildcard of the compared sets' rules (never matches "ours"; nothing if none).
COMPARE_PATTERN = "|".join(re.escape(name) for name in COMPARE) or "(?!)"
STRING_BENCH = ANALYSIS["string_check"]["benchmark"]
# Our dataset: the one this run builds, or the published one when training starts from it.
OURS_FILES = [PUBLISHED_FILE] if FROM_PUBLISHED else DATASET_FILES
ANALYSIS_SEARCH = shlex.join(
    ["--memory-mb", str(ANALYSIS["memory_mb"]), "--device", str(ANALYSIS["device"])]
)


def analysis_tables():
    return expand(res("analysis/datasets/{dataset}.parquet"), dataset=ANALYSIS_SETS)


def analysis_embeddings():
    return expand(res("analysis/embeddings/{dataset}.npy"), dataset=ANALYSIS_SETS)


def report_analysis_pages():
    """The analyses' HTML tables in the report, one page each (captions in report/)."""
    pages = [
        ("novelty", "novelty", "Novelty", "novelty, table"),
        ("answer_types", "answer_types", "Answer types", "answer types, table"),
    ]
    if not FROM_PUBLISHED:
        pages.append(
            (
                "contamination_rates",
                "contamination_rates",
                "Contamination rates",
                "rates, table",
            )
        )
    if STRING_BENCH is not None:
        pages.append(
            ("string_check", "string_check", "String check", "string check, table")
        )
    mark = report  # Snakemake's report(): the page goes into the HTML report
    return [
        mark(
            res(f"report/analysis/{name}.html"),
            caption=f"../report/{caption}.rst",
            category="Analyses",
            subcategory=sub,
            labels={"content": content},
        )
        for name, caption, sub, content in pages
    ]


ANALYSIS_OUTPUTS = [
    res("analysis/answer_types.csv"),
    res("analysis/novelty.csv"),
    res("analysis/map.png"),
    [] if STRING_BENCH is None else res("analysis/string_check.csv"),
    [] if FROM_PUBLISHED else res("analysis/contamination.csv"),
    res("analysis/difficulty_comparison.csv"),
    res("analysis/summary.md"),
]


# --- audits of published-schema datasets (rules/audit.smk)

AUDIT = config["audit"]
AUDITS = list(AUDIT["datasets"])
# The `audit` wildcard: one of the configured names (nothing if none).
AUDIT_PATTERN = "|".join(re.escape(name) for name in AUDITS) or "(?!)"
# Benchmarks the audit checks besides curation's.
AUDIT_EXTRA = [b for b in AUDIT["extra_benchmarks"] if b not in DECONTAM_BENCHMARKS]
# The audit embeds only those and reuses curation's benchmark embeddings - unless training
# starts from the published dataset, when no curation job runs and it embeds them all.
AUDIT_EMBED = [*DECONTAM_BENCHMARKS, *AUDIT_EXTRA] if FROM_PUBLISHED else AUDIT_EXTRA
AUDIT_BENCH_FILES = {
    suffix: ([] if FROM_PUBLISHED else [res(f"embeddings/benchmarks.{suffix}")])
    + ([res(f"audit/benchmarks.{suffix}")] if AUDIT_EMBED else [])
    for suffix in ("parquet", "npy")
}


def audit_load(name):
    """How an audited dataset loads: its `load`, or this run's own parquet shards (the release,
    or the published copy it trains from) through the same parquet loader."""
    entry = AUDIT["datasets"][name]
    if entry.get("load"):
        return entry["load"]
    return {"path": "parquet", "data_files": OURS_FILES, "split": "train"}


def audit_local_inputs(wildcards):
    """Files of an audited dataset that this run builds (its own release, say): inputs, so
    Snakemake makes them before loading them; and the hub stamp of one from the hub."""
    load = audit_load(wildcards.audit)
    files = load.get("data_files") or []
    files = [files] if isinstance(files, str) else files
    return [f for f in files if str(f).startswith(f"{RESULTS}/")] + load_stamp(load)


def audit_spec(name):
    """What an audit's card records and its cleaned copy depends on."""
    entry = AUDIT["datasets"][name]
    return {
        "name": name,
        "label": entry.get("label") or name,
        "load": audit_load(name),
        "benchmarks": [*DECONTAM_BENCHMARKS, *AUDIT_EXTRA],
        "drop": AUDIT["drop"],
        "answer_check_timeout_s": AUDIT["timeout_s"],
        "decontamination": {
            k: config["decontamination"].get(k)
            for k in ("top_k", "precheck_threshold", "judge_min_score", "unparseable")
            + ("judge_role",)
        },
    }


def report_audit_page():
    return report(
        res("report/audit/{audit}.html"),
        caption="../report/audit.rst",
        category="Audits",
        subcategory="{audit}",
        labels={"dataset": "{audit}", "content": "audit"},
    )


AUDIT_OUTPUTS = expand(
    [res("audit/{audit}/card.md"), res("report/audit/{audit}.html")], audit=AUDITS
)
