# Answer verification: the consistency filter between solutions and reference answers.


rule verify_answers:
    input:
        res("solutions/shard-{shard}.parquet"),
    output:
        table=res("verified/shard-{shard}.parquet"),
        rejected=res("verified/shard-{shard}.rejected.parquet"),
        stats=res("verified/shard-{shard}.stats.json"),
    log:
        logs("verify_answers/shard-{shard}.log"),
    benchmark:
        timing("verify_answers/shard-{shard}")
    priority: FIRST
    conda:
        "../envs/data.yaml"
    threads: 8
    resources:
        mem_mb=16000,
        runtime=120,
    params:
        spec=as_json(config["verify"]),
    shell:
        "python -m deepmath.verify --in {input:q} --spec {params.spec:q} --workers {threads}"
        " --out {output.table:q} --rejected {output.rejected:q} --stats {output.stats:q} 2> {log:q}"
