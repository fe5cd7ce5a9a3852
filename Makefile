# Two commands matter: `make test` (tests) and, once it lands, `make reproduce` (the main job).
# Everything installs into .venv from scratch; torch is pinned first so pip never pulls CUDA.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export TRL_EXPERIMENTAL_SILENCE := 1
export TRANSFORMERS_VERBOSITY := error

.PHONY: install test lint format bench clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e ".[dev]"
	touch $(STAMP)

test: $(STAMP)
	$(BIN)/ruff check sftvrl tests benchmarks
	$(BIN)/ruff format --check sftvrl tests benchmarks
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check sftvrl tests benchmarks

format: $(STAMP)
	$(BIN)/ruff format sftvrl tests benchmarks
	$(BIN)/ruff check --fix sftvrl tests benchmarks

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_gp.py --write-readme README.md
	$(BIN)/python benchmarks/bench_virl.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache build *.egg-info
