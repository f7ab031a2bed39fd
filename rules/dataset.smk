# The published dataset: the supplement set (the paper's SimpleRL level 3-5 problems, whose
# answers are ground truth) gets difficulty, solutions and topics with the same rules, then
# everything is assembled into the DeepMath-103K schema with a dataset card.


use rule rate_difficulty as rate_supplement with:
    input:
        table=res("raw/{source}.parquet"),
        model=llm_inputs(RATER),
    output:
        table=res("supplement/{source}.difficulty.parquet"),
        stats=res("supplement/{source}.difficulty.stats.json"),
        usage=res("supplement/{source}.difficulty.usage.json"),
    log:
        logs("rate_supplement/{source}.log"),
    benchmark:
        timing("rate_supplement/{source}")
    params:
        spec=as_json({**config["difficulty"], "threshold": 0, "unrated": "keep"}),
        llm=llm_params("rate_supplement", RATER, "difficulty"),


use rule solve as solve_supplement with:
    input:
        table=res("supplement/{source}.difficulty.parquet"),
        model=llm_inputs(SOLVER),
    output:
        table=res("supplement/{source}.solutions.parquet"),
        stats=res("supplement/{source}.solutions.stats.json"),
        usage=res("supplement/{source}.solutions.usage.json"),
    log:
        logs("solve_supplement/{source}.log"),
    benchmark:
        timing("solve_supplement/{source}")
    params:
        spec=as_json(config["solve"]),
        llm=llm_params("solve_supplement", SOLVER, "solve"),


use rule classify_topic as topic_supplement with:
    input:
        table=res("supplement/{source}.solutions.parquet"),
        model=llm_inputs(TOPIC),
    output:
        table=res("supplement/{source}.topics.parquet"),
        stats=res("supplement/{source}.topics.stats.json"),
        usage=res("supplement/{source}.topics.usage.json"),
    log:
        logs("topic_supplement/{source}.log"),
    benchmark:
        timing("topic_supplement/{source}")
    params:
        spec=as_json(config["topics"]),
        llm=llm_params("topic_supplement", TOPIC, "topic"),


rule assemble_dataset:
    input:
        main=expand(res("topics/shard-{shard}.parquet"), shard=SHARDS),
        supplement=expand(
            res("supplement/{source}.topics.parquet"), source=SUPPLEMENT_SOURCES
        ),
        stats=[f for files in stage_stats().values() for f in files],
    output:
        data=DATASET_FILES,
        card=res("dataset/README.md"),
    log:
        logs("assemble_dataset.log"),
    benchmark:
        timing("assemble_dataset")
    priority: FIRST
    conda:
        "../envs/data.yaml"
    resources:
        mem_mb=32000,
        runtime=60,
    params:
        stats=as_json(stage_stats()),
        config=as_json(curation_config(config)),
        shards=DATASET["num_shards"],
        name=DATASET["name"],
        out=lambda w, output: os.path.dirname(output.card),
    shell:
        "python -m deepmath.dataset --main {input.main:q} --supplement {input.supplement:q}"
        " --stats {params.stats:q} --config {params.config:q}"
        " --num-shards {params.shards:q} --name {params.name:q} --out-dir {params.out:q} 2> {log:q}"


# The cost page the card links: tokens of every LLM job at the config's prices. A rule of its
# own, so that editing a price reruns this page only (prices are not the dataset's params).
rule dataset_cost:
    input:
        usage_files(),
    output:
        res("dataset/cost.md"),
    log:
        logs("dataset_cost.log"),
    benchmark:
        timing("dataset_cost")
    conda:
        "../envs/data.yaml"
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        prices=as_json(role_prices()),
    shell:
        "python -m deepmath.dataset cost --usage {input:q} --prices {params.prices:q}"
        " --out {output:q} 2> {log:q}"
