# LLM labelling: difficulty rating (with the difficulty filter), rewriting into verifiable
# questions, and topic classification.

RATER = config["difficulty"]["role"]
REWRITER = config["rewrite"]["role"]
TOPIC = config["topics"]["role"]


rule rate_difficulty:
    input:
        table=res("decontam/shard-{shard}.parquet"),
        model=llm_inputs(RATER),
    output:
        table=res("difficulty/shard-{shard}.parquet"),
        stats=res("difficulty/shard-{shard}.stats.json"),
        usage=res("difficulty/shard-{shard}.usage.json"),
    log:
        logs("rate_difficulty/shard-{shard}.log"),
    benchmark:
        timing("rate_difficulty/shard-{shard}")
    priority: FIRST
    conda:
        "../envs/llm.yaml"
    threads: 2
    resources:
        mem_mb=32000,
        runtime=720,
        gpus=role_gpus(config, RATER),
        nodes=role_nodes(config, RATER),
    params:
        spec=as_json(config["difficulty"]),
        llm=llm_params("rate_difficulty", RATER, "difficulty"),
    shell:
        "python -m deepmath.difficulty --in {input.table:q} --spec {params.spec:q}"
        " --out {output.table:q} --stats {output.stats:q} {params.llm} 2> {log:q}"


rule rewrite_questions:
    input:
        table=res("difficulty/shard-{shard}.parquet"),
        model=llm_inputs(REWRITER),
    output:
        table=res("rewrite/shard-{shard}.parquet"),
        stats=res("rewrite/shard-{shard}.stats.json"),
        usage=res("rewrite/shard-{shard}.usage.json"),
    log:
        logs("rewrite_questions/shard-{shard}.log"),
    benchmark:
        timing("rewrite_questions/shard-{shard}")
    priority: FIRST
    conda:
        "../envs/llm.yaml"
    threads: 2
    resources:
        mem_mb=32000,
        runtime=720,
        gpus=role_gpus(config, REWRITER),
        nodes=role_nodes(config, REWRITER),
    params:
        spec=as_json(config["rewrite"]),
        llm=llm_params("rewrite_questions", REWRITER, "rewrite"),
    shell:
        "python -m deepmath.rewrite --in {input.table:q} --spec {params.spec:q}"
        " --out {output.table:q} --stats {output.stats:q} {params.llm} 2> {log:q}"


rule classify_topic:
    input:
        table=res("verified/shard-{shard}.parquet"),
        model=llm_inputs(TOPIC),
    output:
        table=res("topics/shard-{shard}.parquet"),
        stats=res("topics/shard-{shard}.stats.json"),
        usage=res("topics/shard-{shard}.usage.json"),
    log:
        logs("classify_topic/shard-{shard}.log"),
    benchmark:
        timing("classify_topic/shard-{shard}")
    priority: FIRST
    conda:
        "../envs/llm.yaml"
    threads: 2
    resources:
        mem_mb=32000,
        runtime=360,
        gpus=role_gpus(config, TOPIC),
        nodes=role_nodes(config, TOPIC),
    params:
        spec=as_json(config["topics"]),
        llm=llm_params("classify_topic", TOPIC, "topic"),
    shell:
        "python -m deepmath.topics --in {input.table:q} --spec {params.spec:q}"
        " --out {output.table:q} --stats {output.stats:q} {params.llm} 2> {log:q}"
