# The DeepMath authors' scorer runs in its own interpreter (deepmath.answers.authors: their
# grader needs antlr 4.11.0 and math-verify 0.7.0). This job finds that interpreter - its own
# conda env when the versions are exact, else (a local run without conda) $DEEPMATH_AUTHORS_PYTHON
# or .venv-authors - starts a scorer worker with it, and records {python, environment}. The GRPO
# training jobs (their reward) and the evaluation scoring take the record as input.

AUTHORS_PYTHON_RECORD = res("authors/python.json")


rule authors_python:
    output:
        AUTHORS_PYTHON_RECORD,
    log:
        logs("authors_python.log"),
    benchmark:
        timing("authors_python")
    conda:
        "../envs/authors.yaml"
    priority: FIRST
    resources:
        mem_mb=4000,
        runtime=15,
    shell:
        "python -m deepmath.answers.authors.pool where --out {output:q} 2> {log:q}"


def uses_authors_scorer(model):
    """Whether a GRPO run's reward is the authors' scorer (its default)."""
    return RL_RUNS[model].get("reward_scorer", "authors") == "authors"


def authors_record(model):
    """The record as an input of a GRPO run whose reward needs it (empty otherwise)."""
    return [AUTHORS_PYTHON_RECORD] if uses_authors_scorer(model) else []


def authors_flag(wildcards, input):
    """The training CLI's flag naming the record (empty for a run scored by our checker)."""
    return f"--authors-record {shlex.quote(input.authors[0])}" if input.authors else ""
