from snakemake.exceptions import WorkflowError

from deepmath.config import ConfigError, validate_config
from deepmath.workflow import (
    as_json,
    llm_cli,
    role_gpus,
    role_nodes,
    served_model,
    setup_environment,
)

try:
    validate_config(config)
except ConfigError as err:
    raise WorkflowError(str(err)) from None


setup_environment(SCRIPTS, config["environment"])

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


def llm_params(rule, role, prompt):
    """Params function giving the shared LLM options of a stage CLI."""

    def build(wildcards, output):
        return llm_cli(
            config,
            role,
            config["prompts"][prompt],
            journal(rule, getattr(wildcards, "shard", None) or wildcards.source),
            output.usage,
            SERVERS,
            served_model_dir(role),
            SERVER_REGISTRY,
        )

    return build


onsuccess:
    if SERVER_REGISTRY:
        shell("python -m deepmath.serve stop-all --registry {SERVER_REGISTRY}")


onerror:
    if SERVER_REGISTRY:
        shell("python -m deepmath.serve stop-all --registry {SERVER_REGISTRY}")
