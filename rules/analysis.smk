# Dataset analyses: this run's dataset ("ours") next to the datasets in analysis.compare
# (names and helpers in rules/common.smk). Every output lies under results/<run>/analysis/
# and can be rebuilt alone.


rule analysis_ours:
    input:
        OURS_FILES,
    output:
        res("analysis/datasets/ours.parquet"),
    log:
        logs("analysis/ours.log"),
    priority: LATE
    conda:
        "../envs/embed.yaml"
    resources:
        mem_mb=16000,
        runtime=30,
    shell:
        "python -m deepmath.analysis table --name ours --in {input:q} --out {output:q}"
        " 2> {log:q}"


rule pull_compare:
    input:
        hub=lambda w: load_stamp(COMPARE[w.dataset]["load"]),
    output:
        table=res("analysis/datasets/{dataset}.parquet"),
        stats=res("analysis/datasets/{dataset}.stats.json"),
    log:
        logs("pull_compare/{dataset}.log"),
    benchmark:
        timing("pull_compare/{dataset}")
    wildcard_constraints:
        dataset=COMPARE_PATTERN,
    priority: LATE
    conda:
        "../envs/data.yaml"
    resources:
        mem_mb=16000,
        runtime=120,
    params:
        kind=lambda w: COMPARE[w.dataset]["kind"],
        spec=lambda w: as_json(COMPARE[w.dataset]),
        seed=config["seed"],
    shell:
        "python -m deepmath.pull {params.kind:q} --name {wildcards.dataset:q}"
        " --spec {params.spec:q} --seed {params.seed:q} --out {output.table:q}"
        " --stats {output.stats:q} 2> {log:q}"


rule embed_compare:
    input:
        table=res("analysis/datasets/{dataset}.parquet"),
        model=model_dir(EMB["model"]),
    output:
        vectors=res("analysis/embeddings/{dataset}.npy"),
        stats=res("analysis/embeddings/{dataset}.stats.json"),
    log:
        logs("embed_compare/{dataset}.log"),
    benchmark:
        timing("embed_compare/{dataset}")
    priority: LATE
    conda:
        "../envs/embed.yaml"
    threads: 4
    resources:
        mem_mb=16000,
        runtime=120,
        gpus=EMB["gpus"],
    params:
        opts=EMBED_OPTS,
    shell:
        "python -m deepmath.embed --model {input.model:q} --in {input.table:q} --column question"
        " --out {output.vectors:q} --stats {output.stats:q} {params.opts} 2> {log:q}"


rule analysis_profile:
    input:
        analysis_tables(),
    output:
        table=res("analysis/answer_types.csv"),
        stats=res("analysis/answer_types.json"),
        png=report(
            res("analysis/answer_types.png"),
            caption="../report/answer_types.rst",
            category="Analyses",
            subcategory="Answer types",
            labels={"content": "answer types, figure"},
        ),
    log:
        logs("analysis/answer_types.log"),
    priority: LATE
    conda:
        "../envs/embed.yaml"
    resources:
        mem_mb=8000,
        runtime=30,
    params:
        names=shlex.join(ANALYSIS_SETS),
    shell:
        "python -m deepmath.analysis profile --names {params.names} --tables {input:q}"
        " --out {output.table:q} --stats {output.stats:q} --png {output.png:q} 2> {log:q}"


rule analysis_strings:
    input:
        tables=analysis_tables(),
        reference=res(f"benchmarks/{STRING_BENCH}.parquet"),
    output:
        table=res("analysis/string_check.csv"),
        hits=res("analysis/string_hits.parquet"),
    log:
        logs("analysis/string_check.log"),
    priority: LATE
    conda:
        "../envs/embed.yaml"
    threads: 4
    resources:
        mem_mb=8000,
        runtime=120,
    params:
        names=shlex.join(ANALYSIS_SETS),
        bench=STRING_BENCH,
        threshold=ANALYSIS["string_check"]["threshold"],
    shell:
        "python -m deepmath.analysis strings --names {params.names} --tables {input.tables:q}"
        " --reference {input.reference:q} --reference-name {params.bench:q}"
        " --threshold {params.threshold:q} --out {output.table:q} --hits {output.hits:q}"
        " 2> {log:q}"


rule analysis_novelty:
    input:
        analysis_embeddings(),
    output:
        table=res("analysis/novelty.csv"),
        matrix=res("analysis/novelty_matrix.csv"),
    log:
        logs("analysis/novelty.log"),
    priority: LATE
    conda:
        "../envs/embed.yaml"
    threads: 4
    resources:
        mem_mb=16000,
        runtime=60,
        gpus=ANALYSIS["gpus"],
    params:
        names=shlex.join(ANALYSIS_SETS),
        threshold=ANALYSIS["novelty"]["threshold"],
        search=ANALYSIS_SEARCH,
    shell:
        "python -m deepmath.analysis novelty --names {params.names} --embeddings {input:q}"
        " --threshold {params.threshold:q} {params.search} --out {output.table:q}"
        " --matrix {output.matrix:q} 2> {log:q}"


rule analysis_map:
    input:
        analysis_embeddings(),
    output:
        table=res("analysis/map.parquet"),
        png=report(
            res("analysis/map.png"),
            caption="../report/embedding_map.rst",
            category="Analyses",
            subcategory="Embedding map",
            labels={"content": "embedding map, figure"},
        ),
    log:
        logs("analysis/map.log"),
    priority: LATE
    conda:
        "../envs/embed.yaml"
    threads: 4
    resources:
        mem_mb=16000,
        runtime=60,
    params:
        names=shlex.join(ANALYSIS_SETS),
        per_dataset=ANALYSIS["map"]["per_dataset"],
        perplexity=ANALYSIS["map"]["perplexity"],
        seed=config["seed"],
    shell:
        "python -m deepmath.analysis map --names {params.names} --embeddings {input:q}"
        " --per-dataset {params.per_dataset:q} --perplexity {params.perplexity:q}"
        " --seed {params.seed:q} --out {output.table:q} --png {output.png:q} 2> {log:q}"


rule analysis_contamination:
    input:
        judged=expand(res("decontam/shard-{shard}.judged.parquet"), shard=SHARDS),
        benchmarks=expand(res("benchmarks/{bench}.parquet"), bench=DECONTAM_BENCHMARKS),
        final=res("analysis/datasets/ours.parquet"),
        final_emb=res("analysis/embeddings/ours.npy"),
        bench_emb=res("embeddings/benchmarks.npy"),
        bench_index=res("embeddings/benchmarks.parquet"),
    output:
        table=res("analysis/contamination.csv"),
        png=report(
            res("analysis/contamination.png"),
            caption="../report/contamination_rates.rst",
            category="Analyses",
            subcategory="Contamination rates",
            labels={"content": "contamination rate per benchmark, figure"},
        ),
        stats=res("analysis/contamination.json"),
    log:
        logs("analysis/contamination.log"),
    priority: LATE
    conda:
        "../envs/embed.yaml"
    threads: 4
    resources:
        mem_mb=16000,
        runtime=60,
        gpus=ANALYSIS["gpus"],
    params:
        top_k=DECON["top_k"],
        threshold=DECON["precheck_threshold"],
        paper=as_json(ANALYSIS["contamination"]["paper"]),
        search=ANALYSIS_SEARCH,
    shell:
        "python -m deepmath.analysis contamination --judged {input.judged:q}"
        " --benchmarks {input.benchmarks:q} --final-table {input.final:q}"
        " --final-embeddings {input.final_emb:q} --bench-embeddings {input.bench_emb:q}"
        " --bench-index {input.bench_index:q} --top-k {params.top_k:q}"
        " --threshold {params.threshold:q} {params.search} --paper {params.paper:q}"
        " --out {output.table:q} --png {output.png:q} --stats {output.stats:q} 2> {log:q}"


rule report_analysis:
    input:
        novelty=res("analysis/novelty.csv"),
        matrix=res("analysis/novelty_matrix.csv"),
        types=res("analysis/answer_types.csv"),
        contamination=[] if FROM_PUBLISHED else res("analysis/contamination.csv"),
        strings=[] if STRING_BENCH is None else res("analysis/string_check.csv"),
        hits=[] if STRING_BENCH is None else res("analysis/string_hits.parquet"),
    output:
        report_analysis_pages(),
    log:
        logs("report_analysis.log"),
    priority: LATE
    conda:
        "../envs/embed.yaml"
    resources:
        mem_mb=4000,
        runtime=10,
    params:
        optional=lambda w, input: shlex.join(
            (["--contamination", input.contamination] if input.contamination else [])
            + (
                ["--strings", input.strings, "--hits", input.hits]
                if input.strings
                else []
            )
        ),
        bench=STRING_BENCH or "",
        threshold=ANALYSIS["novelty"]["threshold"],
        out=lambda w, output: os.path.dirname(output[0]),
    shell:
        "python -m deepmath.analysis report --novelty {input.novelty:q} --matrix {input.matrix:q}"
        " --threshold {params.threshold:q} --types {input.types:q} {params.optional}"
        " --benchmark {params.bench:q} --out-dir {params.out:q} 2> {log:q}"


rule sample_compare:
    input:
        res("analysis/datasets/{dataset}.parquet"),
    output:
        res("analysis/difficulty/{dataset}.sample.parquet"),
    log:
        logs("sample_compare/{dataset}.log"),
    wildcard_constraints:
        dataset=COMPARE_PATTERN,
    priority: LATE
    conda:
        "../envs/embed.yaml"
    resources:
        mem_mb=8000,
        runtime=10,
    params:
        n=ANALYSIS["difficulty"]["sample"],
        seed=config["seed"],
    shell:
        "python -m deepmath.analysis sample --name {wildcards.dataset:q} --in {input:q}"
        " --n {params.n:q} --seed {params.seed:q} --out {output:q} 2> {log:q}"


rule sample_ours:
    input:
        res("analysis/datasets/ours.parquet"),
    output:
        res("analysis/difficulty/ours.rated.parquet"),
    log:
        logs("sample_compare/ours.log"),
    priority: LATE
    conda:
        "../envs/embed.yaml"
    resources:
        mem_mb=8000,
        runtime=10,
    params:
        n=ANALYSIS["difficulty"]["sample"],
        seed=config["seed"],
    shell:
        "python -m deepmath.analysis sample --name ours --in {input:q} --n {params.n:q}"
        " --seed {params.seed:q} --out {output:q} 2> {log:q}"


rule rate_compare:
    input:
        table=res("analysis/difficulty/{dataset}.sample.parquet"),
        model=llm_inputs(RATER),
    output:
        table=res("analysis/difficulty/{dataset}.rated.parquet"),
        stats=res("analysis/difficulty/{dataset}.stats.json"),
        usage=res("analysis/difficulty/{dataset}.usage.json"),
    log:
        logs("rate_compare/{dataset}.log"),
    benchmark:
        timing("rate_compare/{dataset}")
    wildcard_constraints:
        dataset=COMPARE_PATTERN,
    priority: LATE
    conda:
        "../envs/llm.yaml"
    threads: 2
    resources:
        mem_mb=32000,
        runtime=240,
        gpus=role_gpus(config, RATER),
        nodes=role_nodes(config, RATER),
    params:
        # curation's ratings per item; every rated item is kept (no difficulty filter here)
        spec=as_json(
            {
                "samples": config["difficulty"]["samples"],
                "threshold": 0,
                "unrated": "keep",
            }
        ),
        llm=llm_params("rate_compare", RATER, "difficulty"),
    shell:
        "python -m deepmath.difficulty --in {input.table:q} --spec {params.spec:q}"
        " --out {output.table:q} --stats {output.stats:q} {params.llm} 2> {log:q}"


rule analysis_difficulty:
    input:
        expand(
            res("analysis/difficulty/{dataset}.rated.parquet"), dataset=ANALYSIS_SETS
        ),
    output:
        table=res("analysis/difficulty_comparison.csv"),
        png=report(
            res("analysis/difficulty_comparison.png"),
            caption="../report/difficulty_comparison.rst",
            category="Analyses",
            subcategory="Difficulty",
            labels={"content": "difficulty per dataset, figure"},
        ),
    log:
        logs("analysis/difficulty_comparison.log"),
    priority: LATE
    conda:
        "../envs/embed.yaml"
    resources:
        mem_mb=4000,
        runtime=10,
    params:
        names=shlex.join(ANALYSIS_SETS),
    shell:
        "python -m deepmath.analysis difficulty --names {params.names} --tables {input:q}"
        " --out {output.table:q} --png {output.png:q} 2> {log:q}"


rule analysis_summary:
    input:
        novelty=res("analysis/novelty.csv"),
        types=res("analysis/answer_types.csv"),
        difficulty=res("analysis/difficulty_comparison.csv"),
        contamination=[] if FROM_PUBLISHED else res("analysis/contamination.csv"),
        strings=[] if STRING_BENCH is None else res("analysis/string_check.csv"),
    output:
        table=res("analysis/summary.csv"),
        markdown=res("analysis/summary.md"),
    log:
        logs("analysis/summary.log"),
    priority: LATE
    conda:
        "../envs/embed.yaml"
    resources:
        mem_mb=4000,
        runtime=10,
    params:
        optional=lambda w, input: shlex.join(
            (["--contamination", input.contamination] if input.contamination else [])
            + (["--strings", input.strings] if input.strings else [])
        ),
        labels=as_json(
            {"ours": "this run's dataset"}
            | {name: entry.get("label") or name for name, entry in COMPARE.items()}
        ),
        bench=STRING_BENCH or "",
        threshold=ANALYSIS["novelty"]["threshold"],
    shell:
        "python -m deepmath.analysis summary --novelty {input.novelty:q} --types {input.types:q}"
        " --difficulty {input.difficulty:q} {params.optional} --labels {params.labels:q}"
        " --benchmark {params.bench:q} --threshold {params.threshold:q}"
        " --out {output.table:q} --markdown {output.markdown:q} 2> {log:q}"
