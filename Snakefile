"""DeepMath-103K, end to end: raw pulls -> decontamination -> ... -> dataset -> RL -> eval.

Run the embedded default with `snakemake --profile profiles/demo`; the paper recipe with
`snakemake --profile profiles/slurm-h20`. See README.md.
"""

import os
import re
import sys

from snakemake.utils import min_version

min_version("9.0")

# The `deepmath` package lives in scripts/; rules run `python -m deepmath.<stage>`.
SCRIPTS = os.path.join(workflow.basedir, "scripts")
sys.path.insert(0, SCRIPTS)


# A --configfile on the command line (or in a profile) replaces the paper config instead of
# being merged into it.
if not config:

    configfile: "config/config.yaml"


include: "rules/common.smk"
include: "rules/pull.smk"
include: "rules/decontaminate.smk"
include: "rules/label.smk"
include: "rules/solve.smk"
include: "rules/verify.smk"
include: "rules/dataset.smk"
include: "rules/authors.smk"
include: "rules/train.smk"
include: "rules/evaluate.smk"
include: "rules/analysis.smk"
include: "rules/audit.smk"
include: "rules/report.smk"


# `snakemake --report report.html`: this text opens the report; results come from report().
report: "report/workflow.rst"


rule all:
    default_target: True
    input:
        # training from the published dataset (rl.dataset: published) builds none of ours
        [] if FROM_PUBLISHED else DATASET_FILES,
        [] if FROM_PUBLISHED else res("dataset/README.md"),
        [] if FROM_PUBLISHED else res("dataset/cost.md"),
        res("tables/main_results.md") if EVAL_MODELS else [],
        # every trained model, evaluated or not
        expand(res("checkpoints/{model}/hf"), model=RL_RUNS),
        [] if FROM_PUBLISHED else rules.report_dataset.output,
        [] if FROM_PUBLISHED else rules.report_cost.output,
        rules.report_results.output if EVAL_MODELS else [],
        ANALYSIS_OUTPUTS,
        rules.report_analysis.output,
        AUDIT_OUTPUTS,
