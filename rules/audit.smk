# Audits of datasets in the DeepMath-103K schema (audit.datasets): answers against their own
# solutions, decontamination with curation's code against its benchmarks and newer ones,
# flags, a cleaned copy and an audit card, under results/<run>/audit/<name>/. Helpers in
# rules/common.smk.


rule pull_audit:
    input:
        audit_local_inputs,
    output:
        table=res("audit/{audit}/dataset.parquet"),
        stats=res("audit/{audit}/dataset.stats.json"),
    log:
        logs("audit/{audit}/pull.log"),
    benchmark:
        timing("audit/{audit}/pull")
    wildcard_constraints:
        audit=AUDIT_PATTERN,
    priority: LATE
    conda:
        "../envs/data.yaml"
    resources:
        mem_mb=16000,
        runtime=60,
    params:
        spec=lambda w: as_json({"load": audit_load(w.audit)}),
    shell:
        "python -m deepmath.pull published --name {wildcards.audit:q} --spec {params.spec:q}"
        " --out {output.table:q} --stats {output.stats:q} 2> {log:q}"


rule audit_answers:
    input:
        res("audit/{audit}/dataset.parquet"),
    output:
        table=res("audit/{audit}/answers.parquet"),
        disagreements=res("audit/{audit}/disagreements.csv"),
        stats=res("audit/{audit}/answers.json"),
    log:
        logs("audit/{audit}/answers.log"),
    benchmark:
        timing("audit/{audit}/answers")
    priority: LATE
    conda:
        "../envs/embed.yaml"
    threads: 8
    resources:
        mem_mb=16000,
        runtime=120,
    params:
        timeout=AUDIT["timeout_s"],
    shell:
        "python -m deepmath.analysis audit-answers --name {wildcards.audit:q} --in {input:q}"
        " --timeout-s {params.timeout:q} --workers {threads} --out {output.table:q}"
        " --disagreements {output.disagreements:q} --stats {output.stats:q} 2> {log:q}"


# The audit's embedding, retrieval, judge and decontamination jobs are curation's rules with
# the audit's files (same commands, same options).
use rule embed_compare as embed_audit with:
    input:
        table=res("audit/{audit}/dataset.parquet"),
        model=model_dir(EMB["model"]),
    output:
        vectors=res("audit/{audit}/embeddings.npy"),
        stats=res("audit/{audit}/embeddings.stats.json"),
    log:
        logs("audit/{audit}/embed.log"),
    benchmark:
        timing("audit/{audit}/embed")
    wildcard_constraints:
        audit=AUDIT_PATTERN,
    priority: LATE


use rule embed_benchmarks as embed_audit_benchmarks with:
    input:
        tables=expand(res("benchmarks/{bench}.parquet"), bench=AUDIT_EMBED),
        model=model_dir(EMB["model"]),
    output:
        vectors=res("audit/benchmarks.npy"),
        index=res("audit/benchmarks.parquet"),
        stats=res("audit/benchmarks.stats.json"),
    log:
        logs("audit/embed_benchmarks.log"),
    benchmark:
        timing("audit/embed_benchmarks")
    priority: LATE


use rule retrieve_neighbors as retrieve_audit with:
    input:
        pool=res("audit/{audit}/answers.parquet"),
        pool_emb=res("audit/{audit}/embeddings.npy"),
        bench=AUDIT_BENCH_FILES["parquet"],
        bench_emb=AUDIT_BENCH_FILES["npy"],
    output:
        table=res("audit/{audit}/neighbors.parquet"),
        stats=res("audit/{audit}/neighbors.stats.json"),
    log:
        logs("audit/{audit}/neighbors.log"),
    benchmark:
        timing("audit/{audit}/neighbors")
    priority: LATE


use rule judge_contamination as judge_audit with:
    input:
        neighbors=res("audit/{audit}/neighbors.parquet"),
        model=llm_inputs(JUDGE),
    output:
        table=res("audit/{audit}/judged.parquet"),
        usage=res("audit/{audit}/judged.usage.json"),
    log:
        logs("audit/{audit}/judge.log"),
    benchmark:
        timing("audit/{audit}/judge")
    priority: LATE
    params:
        spec=as_json(DECON),
        llm=llm_params("judge_audit", JUDGE, "judge"),


use rule decontaminate as decontaminate_audit with:
    input:
        pool=res("audit/{audit}/answers.parquet"),
        judged=res("audit/{audit}/judged.parquet"),
    output:
        table=temp(res("audit/{audit}/decontaminated.parquet")),
        report=res("audit/{audit}/contaminated.parquet"),
        stats=res("audit/{audit}/decontam.json"),
    log:
        logs("audit/{audit}/decontaminate.log"),
    benchmark:
        timing("audit/{audit}/decontaminate")
    priority: LATE


rule audit_card:
    input:
        dataset=res("audit/{audit}/dataset.parquet"),
        answers=res("audit/{audit}/answers.parquet"),
        answer_stats=res("audit/{audit}/answers.json"),
        disagreements=res("audit/{audit}/disagreements.csv"),
        contaminated=res("audit/{audit}/contaminated.parquet"),
        decontam=res("audit/{audit}/decontam.json"),
    output:
        data=res("audit/{audit}/clean/data/train-00000-of-00001.parquet"),
        flags=res("audit/{audit}/flags.parquet"),
        card=res("audit/{audit}/card.md"),
        stats=res("audit/{audit}/audit.json"),
        page=report_audit_page(),
    log:
        logs("audit/{audit}/card.log"),
    priority: LATE
    conda:
        "../envs/embed.yaml"
    resources:
        mem_mb=8000,
        runtime=30,
    params:
        spec=lambda w: as_json(audit_spec(w.audit)),
        examples=AUDIT["examples"],
        data_dir=lambda w, output: os.path.dirname(output.data),
    shell:
        "python -m deepmath.analysis audit-card --dataset {input.dataset:q}"
        " --answers {input.answers:q} --answer-stats {input.answer_stats:q}"
        " --disagreements {input.disagreements:q} --contaminated {input.contaminated:q}"
        " --decontam-stats {input.decontam:q} --spec {params.spec:q}"
        " --examples {params.examples:q} --data-dir {params.data_dir:q} --flags {output.flags:q}"
        " --card {output.card:q} --stats {output.stats:q} --page {output.page:q} 2> {log:q}"
