# Two commands matter: `make reproduce` (the main job: every notebook, every figure, resumable)
# and `make test` (ruff + pytest, then the whole reproduce chain with minimal budgets).
#   make reproduce [TIER=tiny|gpu|paper] [JOBS=N (default: one per core or GPU)] [QUICK=1] [MODEL=<hf id or folder>] [OUT=dir]
# QUICK=1 writes to build/quick unless OUT is given, so a smoke run never overwrites figures/.
# Everything installs into .venv from scratch; torch is pinned first so pip never pulls CUDA.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export TRL_EXPERIMENTAL_SILENCE := 1
export TRANSFORMERS_VERBOSITY := error

TIER ?= tiny
JOBS ?=
QUICK ?=
MODEL ?=
OUT ?= $(if $(QUICK),build/quick,figures)

.PHONY: install test reproduce lint format bench browser-test clean

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
	rm -rf build/quick
	$(MAKE) --no-print-directory reproduce QUICK=1 JOBS=2 TIER=tiny MODEL= OUT=build/quick

reproduce: $(STAMP)
	$(BIN)/sftvrl reproduce --tier $(TIER) $(if $(JOBS),--jobs $(JOBS)) --out $(OUT) $(if $(QUICK),--quick) $(if $(MODEL),--model $(MODEL))

lint: $(STAMP)
	$(BIN)/ruff check sftvrl tests benchmarks

format: $(STAMP)
	$(BIN)/ruff format sftvrl tests benchmarks
	$(BIN)/ruff check --fix sftvrl tests benchmarks

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_gp.py --write-readme README.md
	$(BIN)/python benchmarks/bench_virl.py --write-readme README.md
	$(BIN)/python benchmarks/bench_ppo.py --write-readme README.md
	$(BIN)/python benchmarks/bench_rollout.py --write-readme README.md

# A real JupyterLab in headless Chromium plays the GeneralPoints widget (tests marked `browser`).
CHROMIUM := /usr/bin/chromium
CHROMEDRIVER := /usr/bin/chromedriver
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

browser-test: $(STAMP)
	@if [ ! -x $(CHROMIUM) ] || [ ! -x $(CHROMEDRIVER) ]; then \
		$(SUDO) apt-get update && $(SUDO) apt-get install -y chromium chromium-driver; fi
	$(BIN)/pip install --quiet -e ".[dev,browser]"
	$(BIN)/python -m pytest -m browser

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache build *.egg-info
