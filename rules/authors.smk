# The DeepMath authors' scorer runs in its own interpreter (deepmath.answers.authors: their
# grader needs antlr 4.11.0 and math-verify 0.7.0). This job finds that interpreter - its own
# conda env when the versions are exact, else (a local run without conda) $DEEPMATH_AUTHORS_PYTHON
# or .venv-authors - starts a scorer worker with it, and records {python, environment}. The GRPO
# training jobs (their reward) and the evaluation scoring take the record as input.

AUTHORS_PYTHON_RECORD = res("authors/python.json")


rule authors_python:
    input:
        # the pins of that env (.venv-authors, or the conda env): new pins re-record it, and
        # so re-score the evaluations and rerun the trainings that use it
        os.path.join(workflow.basedir, "requirements", "authors.txt"),
        os.path.join(workflow.basedir, "envs", "authors.yaml"),
    output:
        AUTHORS_PYTHON_RECORD,
    log:
        logs("authors_python.log"),
    benchmark:
        timing("authors_python")
    priority: FIRST
    conda:
        "../envs/authors.yaml"
    resources:
        mem_mb=4000,
        runtime=15,
    shell:
        "python -m deepmath.answers.authors.pool where --out {output:q} 2> {log:q}"
