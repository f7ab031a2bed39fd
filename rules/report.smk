# The `snakemake --report` HTML report: figures and tables made from the run's own artifacts,
# each marked with report() and a caption from report/ (the workflow description is
# report/workflow.rst). The rules take seconds, so `rule all` builds them and
# `snakemake --report report.html` works right after a run.


rule report_dataset:
    input:
        main=expand(res("topics/shard-{shard}.parquet"), shard=SHARDS),
        supplement=expand(
            res("supplement/{source}.topics.parquet"), source=SUPPLEMENT_SOURCES
        ),
        dataset=DATASET_FILES,
        contaminated=expand(
            res("decontam/shard-{shard}.contaminated.parquet"), shard=SHARDS
        ),
        stats=[f for files in stage_stats().values() for f in files],
    output:
        funnel=report(
            res("report/funnel.png"),
            caption="../report/funnel.rst",
            category="Dataset",
            subcategory="Funnel",
            labels={"content": "funnel, figure"},
        ),
        funnel_table=report(
            res("report/funnel.html"),
            caption="../report/funnel.rst",
            category="Dataset",
            subcategory="Funnel",
            labels={"content": "funnel, table"},
        ),
        difficulty=report(
            res("report/difficulty.png"),
            caption="../report/difficulty.rst",
            category="Dataset",
            subcategory="Difficulty",
            labels={"content": "difficulty histogram, figure"},
        ),
        difficulty_table=report(
            res("report/difficulty.html"),
            caption="../report/difficulty.rst",
            category="Dataset",
            subcategory="Difficulty",
            labels={"content": "difficulty histogram, table"},
        ),
        topics=report(
            res("report/topics.png"),
            caption="../report/topics.rst",
            category="Dataset",
            subcategory="Topics",
            labels={"content": "topic areas, figure"},
        ),
        topics_table=report(
            res("report/topics.html"),
            caption="../report/topics.rst",
            category="Dataset",
            subcategory="Topics",
            labels={"content": "topics, table"},
        ),
        contamination=report(
            res("report/contamination.html"),
            caption="../report/contamination.rst",
            category="Dataset",
            subcategory="Contamination",
            labels={"content": "contamination per benchmark, examples"},
        ),
    log:
        logs("report_dataset.log"),
    benchmark:
        timing("report_dataset")
    conda:
        "../envs/data.yaml"
    resources:
        mem_mb=8000,
        runtime=30,
    params:
        stats=as_json(stage_stats()),
        threshold=config["difficulty"]["threshold"],
        out=lambda w, output: os.path.dirname(output.funnel),
    shell:
        "python -m deepmath.report dataset --stats {params.stats:q} --main {input.main:q}"
        " --supplement {input.supplement:q} --dataset {input.dataset:q}"
        " --contaminated {input.contaminated:q} --threshold {params.threshold:q}"
        " --out-dir {params.out:q} 2> {log:q}"


rule report_cost:
    input:
        usage_files() + eval_usage_files(),
    output:
        report(
            res("report/cost.html"),
            caption="../report/cost.rst",
            category="Cost",
            labels={"content": "cost per role (tokens, requests, USD)"},
        ),
    log:
        logs("report_cost.log"),
    benchmark:
        timing("report_cost")
    conda:
        "../envs/data.yaml"
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        prices=as_json(role_prices()),
    shell:
        "python -m deepmath.report cost --usage {input:q} --prices {params.prices:q}"
        " --out {output:q} 2> {log:q}"


# The results page: the results table, beside it the scorer-sensitivity table (the same
# samples judged by the authors' scorer and by ours), and the samples they judge differently
# attached (the Markdown pages stay downloads too, from results_table).
rule report_results:
    input:
        md=res("tables/main_results.md"),
        csv=res("tables/main_results.csv"),
        sensitivity=res("tables/scorer_sensitivity.md"),
        examples=res("tables/scorer_disagreements.md"),
    output:
        report(
            res("report/main_results.html"),
            caption="../report/main_results.rst",
            category="Evaluation",
            labels={"content": "results table, scorer sensitivity"},
        ),
    log:
        logs("report_results.log"),
    benchmark:
        timing("report_results")
    conda:
        "../envs/data.yaml"
    resources:
        mem_mb=2000,
        runtime=10,
    shell:
        "python -m deepmath.report results --md {input.md:q} --csv {input.csv:q}"
        " --sensitivity {input.sensitivity:q} --examples {input.examples:q}"
        " --out {output:q} 2> {log:q}"
