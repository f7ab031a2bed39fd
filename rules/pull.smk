# Raw data and model assets: the only rules that may need the internet. On clusters whose
# compute nodes are offline, run them first on a login node:
#   snakemake --until pull_source pull_benchmark pull_published prepare_model --cores 4
# A floating hub revision (`main`) is locked to the commit the job downloads (hub_lock).


rule pull_source:
    input:
        # the hub stamp of a floating revision (rules/common.smk): a changed lock entry reruns
        hub=lambda w: load_stamp(config["sources"][w.source]["load"]),
    output:
        table=res("raw/{source}.parquet"),
        stats=res("raw/{source}.stats.json"),
    log:
        logs("pull_source/{source}.log"),
    benchmark:
        timing("pull_source/{source}")
    conda:
        "../envs/data.yaml"
    resources:
        mem_mb=16000,
        runtime=120,
    params:
        spec=lambda w: as_json(config["sources"][w.source]),
        seed=config["seed"],
    shell:
        "python -m deepmath.pull source --name {wildcards.source:q} --spec {params.spec:q}"
        " --seed {params.seed:q} --out {output.table:q} --stats {output.stats:q} 2> {log:q}"


rule build_pool:
    input:
        expand(res("raw/{source}.parquet"), source=POOL_SOURCES),
    output:
        shards=expand(res("pool/shard-{shard}.parquet"), shard=SHARDS),
        stats=res("pool/stats.json"),
    log:
        logs("build_pool.log"),
    benchmark:
        timing("build_pool")
    conda:
        "../envs/data.yaml"
    resources:
        mem_mb=32000,
        runtime=120,
    params:
        max_chars=config["pool"]["max_chars"] or 0,
    shell:
        "python -m deepmath.pool --in {input:q} --out {output.shards:q} --stats {output.stats:q}"
        " --max-chars {params.max_chars:q} 2> {log:q}"


rule pull_published:
    input:
        hub=lambda w: load_stamp(RL["published"]["load"]),
    output:
        table=PUBLISHED_FILE,
        stats=res("published/deepmath-103k.stats.json"),
    log:
        logs("pull_published.log"),
    benchmark:
        timing("pull_published")
    conda:
        "../envs/data.yaml"
    resources:
        mem_mb=16000,
        runtime=60,
    params:
        spec=lambda w: as_json(RL["published"]),
    shell:
        "python -m deepmath.pull published --name deepmath-103k --spec {params.spec:q}"
        " --out {output.table:q} --stats {output.stats:q} 2> {log:q}"


rule pull_benchmark:
    input:
        hub=lambda w: load_stamp(config["benchmarks"][w.bench]["load"]),
    output:
        table=res("benchmarks/{bench}.parquet"),
        stats=res("benchmarks/{bench}.stats.json"),
    log:
        logs("pull_benchmark/{bench}.log"),
    benchmark:
        timing("pull_benchmark/{bench}")
    conda:
        "../envs/data.yaml"
    resources:
        mem_mb=4000,
        runtime=30,
    params:
        spec=lambda w: as_json(config["benchmarks"][w.bench]),
        seed=config["seed"],
    shell:
        "python -m deepmath.pull benchmark --name {wildcards.bench:q} --spec {params.spec:q}"
        " --seed {params.seed:q} --out {output.table:q} --stats {output.stats:q} 2> {log:q}"


rule prepare_model:
    input:
        hub=lambda w: model_stamp(w.model),
    output:
        directory(model_dir("{model}")),
    log:
        logs("prepare_model/{model}.log"),
    benchmark:
        timing("prepare_model/{model}")
    conda:
        "../envs/llm.yaml"
    resources:
        mem_mb=8000,
        runtime=240,
    params:
        spec=lambda w: as_json(model_spec(config["models"][w.model])),
    shell:
        "python -m deepmath.models --spec {params.spec:q} --out {output:q} 2> {log:q}"
