# Stovepipe developer commands. `make help` lists them.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.DEFAULT_GOAL := help

help:  ## List the targets
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	@touch $(STAMP)

install: $(STAMP)  ## Create .venv and install Stovepipe with its dev tools

demo: $(STAMP)  ## Run the embedded stack on a sample repository and print which commit is green
	$(BIN)/stovepipe demo

test: $(STAMP)  ## Lint, type-check and run the whole test suite (starts a broker and PostgreSQL)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/pytest

lint: $(STAMP)  ## ruff and mypy (package, tests and benchmarks) only
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

proto: $(STAMP)  ## Regenerate the Python stubs from proto/
	$(BIN)/python scripts/gen_proto.py

fmt: $(STAMP)  ## Format and auto-fix
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: $(STAMP)  ## Run the benchmarks (not part of the tests): pipeline latency, WatchEvents streams, redaction, scale-out
	$(BIN)/python benchmarks/pipeline_latency.py
	$(BIN)/python benchmarks/watch_streams.py
	$(BIN)/python benchmarks/redaction_linearity.py
	$(BIN)/python benchmarks/scale_out.py

soak: $(STAMP)  ## Randomized fault soak, larger than CI's (SEED=, SCENARIOS=40, MINUTES=20)
	$(BIN)/python benchmarks/soak.py --scenarios $(or $(SCENARIOS),40) --minutes $(or $(MINUTES),20) $(if $(SEED),--seed $(SEED))

fuzz: $(STAMP)  ## Fuzz every API call on both backends with more inputs (EXAMPLES=5000 per backend)
	STOVEPIPE_FUZZ_EXAMPLES=$(or $(EXAMPLES),5000) $(BIN)/pytest tests/api/test_api_fuzz.py -s --timeout 0

clean:  ## Remove caches and build output (keeps .venv)
	rm -rf build dist .mypy_cache .ruff_cache .pytest_cache

.PHONY: help install demo test lint proto fmt bench soak fuzz clean
