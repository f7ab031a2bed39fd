# Solutions: k per question from the solver role (paper: 3 from DeepSeek-R1).

SOLVER = config["solve"]["role"]


rule solve:
    input:
        table=res("rewrite/shard-{shard}.parquet"),
        model=llm_inputs(SOLVER),
    output:
        table=res("solutions/shard-{shard}.parquet"),
        stats=res("solutions/shard-{shard}.stats.json"),
        usage=res("solutions/shard-{shard}.usage.json"),
    log:
        logs("solve/shard-{shard}.log"),
    benchmark:
        timing("solve/shard-{shard}")
    priority: FIRST
    conda:
        "../envs/llm.yaml"
    threads: 2
    resources:
        mem_mb=64000,
        runtime=2880,
        gpus=role_gpus(config, SOLVER),
        nodes=role_nodes(config, SOLVER),
    params:
        spec=as_json(config["solve"]),
        llm=llm_params("solve", SOLVER, "solve"),
    shell:
        "python -m deepmath.solve --in {input.table:q} --spec {params.spec:q}"
        " --out {output.table:q} --stats {output.stats:q} {params.llm} 2> {log:q}"
