# Semantic decontamination, retrieval half: embed benchmarks and pool, then the exact top-k
# benchmark neighbours of every pool question with a string pre-check.

EMB = config["embedding"]
DECON = config["decontamination"]
JUDGE = DECON["judge_role"]
# The embedding options of every embedding job (pool, benchmarks, compared datasets).
EMBED_OPTS = shlex.join(
    ["--batch-size", str(EMB["batch_size"]), "--max-seq-length"]
    + [str(EMB["max_seq_length"]), "--dtype", str(EMB["dtype"])]
    + ["--device", str(EMB["device"])]
)
# The neighbour-search options of curation's retrieval and of the audit's.
NEIGHBOR_OPTS = shlex.join(
    ["--top-k", str(DECON["top_k"]), "--threshold"]
    + [str(DECON["precheck_threshold"]), "--memory-mb"]
    + [str(DECON["search_memory_mb"]), "--device", str(DECON["device"])]
)


rule embed_benchmarks:
    input:
        tables=expand(res("benchmarks/{bench}.parquet"), bench=DECONTAM_BENCHMARKS),
        model=model_dir(EMB["model"]),
    output:
        vectors=res("embeddings/benchmarks.npy"),
        index=res("embeddings/benchmarks.parquet"),
        stats=res("embeddings/benchmarks.stats.json"),
    log:
        logs("embed_benchmarks.log"),
    benchmark:
        timing("embed_benchmarks")
    priority: FIRST
    conda:
        "../envs/embed.yaml"
    threads: 4
    resources:
        mem_mb=16000,
        runtime=60,
        gpus=EMB["gpus"],
    params:
        opts=EMBED_OPTS,
    shell:
        "python -m deepmath.embed --model {input.model:q} --in {input.tables:q} --column problem"
        " --out {output.vectors:q} --index {output.index:q} --stats {output.stats:q} {params.opts}"
        " 2> {log:q}"


rule embed_pool:
    input:
        table=res("pool/shard-{shard}.parquet"),
        model=model_dir(EMB["model"]),
    output:
        vectors=res("embeddings/shard-{shard}.npy"),
        stats=res("embeddings/shard-{shard}.stats.json"),
    log:
        logs("embed_pool/shard-{shard}.log"),
    benchmark:
        timing("embed_pool/shard-{shard}")
    priority: FIRST
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


rule retrieve_neighbors:
    input:
        pool=res("pool/shard-{shard}.parquet"),
        pool_emb=res("embeddings/shard-{shard}.npy"),
        bench=res("embeddings/benchmarks.parquet"),
        bench_emb=res("embeddings/benchmarks.npy"),
    output:
        table=res("decontam/shard-{shard}.neighbors.parquet"),
        stats=res("decontam/shard-{shard}.neighbors.stats.json"),
    log:
        logs("retrieve_neighbors/shard-{shard}.log"),
    benchmark:
        timing("retrieve_neighbors/shard-{shard}")
    priority: FIRST
    conda:
        "../envs/embed.yaml"
    threads: 4
    resources:
        mem_mb=16000,
        runtime=60,
    params:
        opts=NEIGHBOR_OPTS,
    shell:
        "python -m deepmath.neighbors --pool {input.pool:q} --pool-emb {input.pool_emb:q}"
        " --bench {input.bench:q} --bench-emb {input.bench_emb:q} {params.opts}"
        " --out {output.table:q} --stats {output.stats:q} 2> {log:q}"


rule judge_contamination:
    input:
        neighbors=res("decontam/shard-{shard}.neighbors.parquet"),
        model=llm_inputs(JUDGE),
    output:
        table=res("decontam/shard-{shard}.judged.parquet"),
        usage=res("decontam/shard-{shard}.judged.usage.json"),
    log:
        logs("judge_contamination/shard-{shard}.log"),
    benchmark:
        timing("judge_contamination/shard-{shard}")
    priority: FIRST
    conda:
        "../envs/llm.yaml"
    threads: 2
    resources:
        mem_mb=32000,
        runtime=720,
        gpus=role_gpus(config, JUDGE),
        nodes=role_nodes(config, JUDGE),
    params:
        spec=as_json(DECON),
        llm=llm_params("judge_contamination", JUDGE, "judge"),
    shell:
        "python -m deepmath.decontaminate judge --neighbors {input.neighbors:q}"
        " --spec {params.spec:q} --out {output.table:q} {params.llm} 2> {log:q}"


rule decontaminate:
    input:
        pool=res("pool/shard-{shard}.parquet"),
        judged=res("decontam/shard-{shard}.judged.parquet"),
    output:
        table=res("decontam/shard-{shard}.parquet"),
        report=res("decontam/shard-{shard}.contaminated.parquet"),
        stats=res("decontam/shard-{shard}.stats.json"),
    log:
        logs("decontaminate/shard-{shard}.log"),
    benchmark:
        timing("decontaminate/shard-{shard}")
    priority: FIRST
    conda:
        "../envs/data.yaml"
    resources:
        mem_mb=4000,
        runtime=30,
    shell:
        "python -m deepmath.decontaminate apply --pool {input.pool:q} --judged {input.judged:q}"
        " --out {output.table:q} --report {output.report:q} --stats {output.stats:q} 2> {log:q}"
