# Evaluation: n samples per problem (vLLM), each scored by the authors' scorer and by our
# checker under each benchmark's rule; the results tables (one per model family) beside the
# paper's numbers, and the scorer-sensitivity table comparing the two scorers.


from deepmath.workflow import score_code


rule generate_eval:
    input:
        bench=res("benchmarks/{bench}.parquet"),
        model=eval_model_dir,
    output:
        table=res("eval/{model}/{bench}/responses.parquet"),
        usage=res("eval/{model}/{bench}/responses.usage.json"),
    log:
        logs("generate_eval/{model}/{bench}.log"),
    benchmark:
        timing("generate_eval/{model}/{bench}")
    conda:
        "../envs/eval.yaml"
    threads: 2
    resources:
        mem_mb=64000,
        runtime=24 * 60,
        gpus=eval_gpus,
    params:
        spec=lambda w: eval_spec(w.model, "generate"),
        journal=lambda w: f"{RESULTS}/.journal/generate_eval/{w.model}/{w.bench}.jsonl",
        registry=(
            f"--server-registry {shlex.quote(SERVER_REGISTRY)}"
            if SERVER_REGISTRY
            else ""
        ),
        servers=SERVERS,
    shell:
        "python -m deepmath.evaluate generate --bench {input.bench:q} --model-dir {input.model:q}"
        " --spec {params.spec:q} --journal {params.journal:q} --server-dir {params.servers:q}"
        " {params.registry} --out {output.table:q} --usage {output.usage:q} 2> {log:q}"


rule score_eval:
    input:
        responses=res("eval/{model}/{bench}/responses.parquet"),
        # the authors' interpreter (their pinned scorer environment), recorded by its own rule
        authors=AUTHORS_PYTHON_RECORD,
    output:
        metrics=res("eval/{model}/{bench}/metrics.json"),
        # per sample: the response, both scorers' extracted answers and verdicts, which branch
        # or comparator decided
        scored=res("eval/{model}/{bench}/generations.parquet"),
    log:
        logs("score_eval/{model}/{bench}.log"),
    benchmark:
        timing("score_eval/{model}/{bench}")
    conda:
        "../envs/eval.yaml"
    threads: 8
    resources:
        mem_mb=16000,
        runtime=120,
    params:
        spec=lambda w: eval_spec(w.model, "score", w.bench),
        # the checkers' and the scoring's code: a fix in either re-scores (not passed on)
        code=score_code(SCRIPTS),
    shell:
        "python -m deepmath.evaluate score --in {input.responses:q} --spec {params.spec:q}"
        " --authors-record {input.authors:q} --workers {threads}"
        " --out {output.metrics:q} --scored {output.scored:q} 2> {log:q}"


rule results_table:
    input:
        expand(
            res("eval/{model}/{bench}/metrics.json"),
            model=EVAL_MODELS,
            bench=EVAL_BENCHES,
        ),
    output:
        md=res("tables/main_results.md"),
        csv=report(
            res("tables/main_results.csv"),
            caption="../report/main_results.rst",
            category="Evaluation",
            labels={"content": "results table, CSV (download)"},
        ),
        # the same samples judged by the authors' scorer and by our checker
        sensitivity_md=res("tables/scorer_sensitivity.md"),
        sensitivity_csv=report(
            res("tables/scorer_sensitivity.csv"),
            caption="../report/scorer_sensitivity.rst",
            category="Evaluation",
            labels={"content": "scorer sensitivity, CSV (download)"},
        ),
        examples=report(
            res("tables/scorer_disagreements.md"),
            caption="../report/scorer_sensitivity.rst",
            category="Evaluation",
            labels={"content": "samples the scorers judge differently (download)"},
        ),
    log:
        logs("results_table.log"),
    benchmark:
        timing("results_table")
    conda:
        "../envs/data.yaml"
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        spec=as_json(eval_table_spec(EVAL)),
    shell:
        "python -m deepmath.evaluate table --metrics {input:q} --spec {params.spec:q}"
        " --out-md {output.md:q} --out-csv {output.csv:q}"
        " --out-sensitivity-md {output.sensitivity_md:q}"
        " --out-sensitivity-csv {output.sensitivity_csv:q}"
        " --out-examples {output.examples:q} 2> {log:q}"
