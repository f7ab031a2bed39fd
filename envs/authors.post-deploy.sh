#!/usr/bin/env bash
# Run by Snakemake (--sdm conda) right after it creates envs/authors.yaml, inside that env.
# PolyMath's judge needs its LaTeX parser (latex2sympy2-llmmath, whose parser is the one the
# authors bundled); its metadata pins antlr 4.11.1 while the authors' grader needs 4.11.0 (the
# parser runs under 4.11.0), so it is installed without dependencies, which a conda pip section
# cannot do. The authors_python job then checks the env is the authors' exactly.
set -euo pipefail
pip install --no-deps latex2sympy2-llmmath==1.9.1  # as in requirements/authors.txt
