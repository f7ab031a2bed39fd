from snakemake.exceptions import WorkflowError

from deepmath.config import ConfigError, validate_config
from deepmath.workflow import as_json, setup_environment

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
DECONTAM_BENCHMARKS = config["decontamination"]["benchmarks"]


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
