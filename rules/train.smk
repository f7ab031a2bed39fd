# Training: verl-format RL data and GRPO with verl on Ray (multi-node Slurm) or TRL on CPU;
# SFT conversations and SFT with verl's SFT trainer (torchrun over Slurm nodes) or TRL;
# merged Hugging Face checkpoints. Trainer state lives in results/<run>/.train/<model>/,
# outside the declared outputs, so a failed or preempted job resumes instead of restarting.


rule prepare_rl_data:
    input:
        data=RL_DATA,
        val=RL_VAL_FILES,
    output:
        train=res("rl/{model}/train.parquet"),
        val=res("rl/{model}/val.parquet"),
        stats=res("rl/{model}/stats.json"),
    log:
        logs("prepare_rl_data/{model}.log"),
    benchmark:
        timing("prepare_rl_data/{model}")
    wildcard_constraints:
        model=one_of(GRPO_RUNS),
    conda:
        "../envs/data.yaml"
    resources:
        mem_mb=16000,
        runtime=30,
    params:
        spec=lambda w: rl_data_spec(w.model),
        val_bench=lambda w, input: (
            f"--val-bench {shlex.quote(input.val[0])}" if input.val else ""
        ),
    shell:
        "python -m deepmath.rldata --in {input.data:q} {params.val_bench} --spec {params.spec:q}"
        " --train-out {output.train:q} --val-out {output.val:q} --stats {output.stats:q} 2> {log:q}"


rule train_grpo:
    input:
        train=res("rl/{model}/train.parquet"),
        val=res("rl/{model}/val.parquet"),
        model=init_model,
        template=lambda w: chat_template(w.model),
        # the authors' interpreter, for a reward by the authors' scorer (reward_scorer)
        authors=lambda w: (
            [AUTHORS_PYTHON_RECORD]
            if RL_RUNS[w.model].get("reward_scorer", "authors") == "authors"
            else []
        ),
    output:
        done=res("checkpoints/{model}/verl.done.json"),
    log:
        logs("train_grpo/{model}.log"),
    benchmark:
        timing("train_grpo/{model}")
    wildcard_constraints:
        model=one_of(VERL_RUNS),
    conda:
        "../envs/train.yaml"
    threads: 16
    resources:
        mem_mb=512000,
        runtime=7 * 24 * 60,
        nodes=lambda w: RL_RUNS[w.model]["nodes"],
        # several nodes: one Slurm task per node under `srun` (the Slurm plugin refuses an MPI
        # job of one task): the rule's shell runs once, on the first node, and starts Ray /
        # torchrun on every node itself
        tasks=lambda w: RL_RUNS[w.model]["nodes"],
        mpi=lambda w: "srun" if RL_RUNS[w.model]["nodes"] > 1 else "",
        gpus=lambda w: RL_RUNS[w.model]["gpus_per_node"],
    params:
        spec=lambda w: rl_spec(w.model),
        work=lambda w: train_dir(w.model),
        reward=f"{SCRIPTS}/deepmath/reward.py",
        authors=lambda w, input: (
            f"--authors-record {shlex.quote(input.authors[0])}"
            if input.authors
            else ""
        ),
    shell:
        "python -m deepmath.train_verl --spec {params.spec:q} --model-dir {input.model:q}"
        " --train {input.train:q} --val {input.val:q} --reward {params.reward:q}"
        " {params.authors} --work-dir {params.work:q} --out {output.done:q} 2> {log:q}"


rule merge_checkpoint:
    input:
        done=res("checkpoints/{model}/verl.done.json"),
        template=lambda w: chat_template(w.model),
    output:
        directory(res("checkpoints/{model}/hf")),
    log:
        logs("merge_checkpoint/{model}.log"),
    benchmark:
        timing("merge_checkpoint/{model}")
    wildcard_constraints:
        model=one_of(MERGED_RUNS),
    conda:
        "../envs/train.yaml"
    resources:
        mem_mb=128000,
        runtime=120,
    params:
        work=lambda w: train_dir(w.model),
        template=lambda w, input: (
            f"--chat-template {shlex.quote(input.template[0])}"
            if input.template
            else ""
        ),
    shell:
        "python -m deepmath.merge --work-dir {params.work:q} --step latest --out {output:q}"
        " {params.template} 2> {log:q}"


rule train_trl:
    input:
        train=res("rl/{model}/train.parquet"),
        val=res("rl/{model}/val.parquet"),
        model=init_model,
        template=lambda w: chat_template(w.model),
        # the authors' interpreter, for a reward by the authors' scorer (reward_scorer)
        authors=lambda w: (
            [AUTHORS_PYTHON_RECORD]
            if RL_RUNS[w.model].get("reward_scorer", "authors") == "authors"
            else []
        ),
    output:
        directory(res("checkpoints/{model}/hf")),
    log:
        logs("train_trl/{model}.log"),
    benchmark:
        timing("train_trl/{model}")
    wildcard_constraints:
        model=one_of(TRL_RUNS),
    conda:
        "../envs/train.yaml"
    threads: 2
    resources:
        mem_mb=16000,
        runtime=24 * 60,
        gpus=lambda w: RL_RUNS[w.model]["gpus_per_node"],
    params:
        spec=lambda w: rl_spec(w.model),
        work=lambda w: train_dir(w.model),
        authors=lambda w, input: (
            f"--authors-record {shlex.quote(input.authors[0])}"
            if input.authors
            else ""
        ),
    shell:
        "OMP_NUM_THREADS={threads} python -m deepmath.train_trl --spec {params.spec:q}"
        " --model-dir {input.model:q} {params.authors}"
        " --train {input.train:q} --val {input.val:q} --work-dir {params.work:q} --out {output:q}"
        " 2> {log:q}"


rule prepare_sft_data:
    input:
        RL_DATA,
    output:
        train=res("sft/{model}/train.parquet"),
        val=res("sft/{model}/val.parquet"),
        stats=res("sft/{model}/stats.json"),
    log:
        logs("prepare_sft_data/{model}.log"),
    benchmark:
        timing("prepare_sft_data/{model}")
    wildcard_constraints:
        model=one_of(SFT_RUNS),
    conda:
        "../envs/data.yaml"
    resources:
        mem_mb=16000,
        runtime=30,
    params:
        spec=lambda w: rl_data_spec(w.model),
    shell:
        "python -m deepmath.sftdata --in {input:q} --spec {params.spec:q}"
        " --train-out {output.train:q} --val-out {output.val:q} --stats {output.stats:q} 2> {log:q}"


rule train_sft:
    input:
        train=res("sft/{model}/train.parquet"),
        val=res("sft/{model}/val.parquet"),
        model=init_model,
        template=lambda w: chat_template(w.model),
    output:
        done=res("checkpoints/{model}/verl.done.json"),
    log:
        logs("train_sft/{model}.log"),
    benchmark:
        timing("train_sft/{model}")
    wildcard_constraints:
        model=one_of(SFT_VERL_RUNS),
    conda:
        "../envs/train.yaml"
    threads: 16
    resources:
        mem_mb=512000,
        runtime=3 * 24 * 60,
        nodes=lambda w: RL_RUNS[w.model]["nodes"],
        # several nodes: one Slurm task per node under `srun` (the Slurm plugin refuses an MPI
        # job of one task): the rule's shell runs once, on the first node, and starts Ray /
        # torchrun on every node itself
        tasks=lambda w: RL_RUNS[w.model]["nodes"],
        mpi=lambda w: "srun" if RL_RUNS[w.model]["nodes"] > 1 else "",
        gpus=lambda w: RL_RUNS[w.model]["gpus_per_node"],
    params:
        spec=lambda w: rl_spec(w.model),
        work=lambda w: train_dir(w.model),
    shell:
        "python -m deepmath.train_sft_verl --spec {params.spec:q} --model-dir {input.model:q}"
        " --train {input.train:q} --val {input.val:q} --work-dir {params.work:q}"
        " --out {output.done:q} 2> {log:q}"


rule train_sft_trl:
    input:
        train=res("sft/{model}/train.parquet"),
        val=res("sft/{model}/val.parquet"),
        model=init_model,
        template=lambda w: chat_template(w.model),
    output:
        directory(res("checkpoints/{model}/hf")),
    log:
        logs("train_sft_trl/{model}.log"),
    benchmark:
        timing("train_sft_trl/{model}")
    wildcard_constraints:
        model=one_of(SFT_TRL_RUNS),
    conda:
        "../envs/train.yaml"
    threads: 2
    resources:
        mem_mb=16000,
        runtime=24 * 60,
        gpus=lambda w: RL_RUNS[w.model]["gpus_per_node"],
    params:
        spec=lambda w: rl_spec(w.model),
        work=lambda w: train_dir(w.model),
    shell:
        "OMP_NUM_THREADS={threads} python -m deepmath.train_sft_trl --spec {params.spec:q}"
        " --model-dir {input.model:q} --train {input.train:q} --val {input.val:q}"
        " --work-dir {params.work:q} --out {output:q} 2> {log:q}"
