# Stovepipe developer commands. `make help` lists them.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# pytest-xdist workers for `make test`: one per core, at least 2 (the suite mostly
# waits on subprocesses and the broker), at most 4. Override: make test JOBS=1.
JOBS ?= $(shell $(PYTHON) -c "import os; print(min(4, max(2, len(os.sched_getaffinity(0)))))")
PYTEST_PARALLEL := $(if $(filter 1,$(JOBS)),,-n $(JOBS) --dist loadfile --no-loadscope-reorder)

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

test: $(STAMP)  ## Lint, type-check and run the whole test suite on JOBS workers (each starts a broker and PostgreSQL)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	@# The suite starts hundreds of stovepipe processes; with PYTHONDONTWRITEBYTECODE set
	@# (common in containers) each would compile the package again. Compile it once.
	$(BIN)/python -m compileall -q -j 0 services extensions > /dev/null
	$(BIN)/pytest $(PYTEST_PARALLEL)

lint: $(STAMP)  ## ruff and mypy (package, tests and benchmarks) only
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

proto: $(STAMP)  ## Regenerate the Python stubs from proto/
	$(BIN)/python scripts/gen_proto.py

fmt: $(STAMP)  ## Format and auto-fix
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: $(STAMP)  ## Run every benchmark (not part of the tests) and print one table of ratios vs goals (QUICK=1: smaller runs; ONLY="gate idle": titles containing a word)
	$(BIN)/python benchmarks/run_all.py $(if $(QUICK),--quick) $(foreach word,$(ONLY),--only $(word))

soak: $(STAMP)  ## Randomized fault soak, larger than CI's (SEED=, SCENARIOS=40, MINUTES=20)
	$(BIN)/python benchmarks/soak.py --scenarios $(or $(SCENARIOS),40) --minutes $(or $(MINUTES),20) $(if $(SEED),--seed $(SEED))

fuzz: $(STAMP)  ## Fuzz every API call on both backends with more inputs (EXAMPLES=5000 per backend)
	STOVEPIPE_FUZZ_EXAMPLES=$(or $(EXAMPLES),5000) $(BIN)/pytest tests/api/test_api_fuzz.py -s --timeout 0

clean:  ## Remove caches and build output (keeps .venv)
	rm -rf build dist .mypy_cache .ruff_cache .pytest_cache

.PHONY: help install demo test lint proto fmt bench soak fuzz clean
