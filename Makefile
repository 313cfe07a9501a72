# Two commands do all the set-up on a fresh machine (Python >= 3.10):
#   make demo   creates .venv, installs nbflow, runs the sample notebook
#   make test   creates .venv, installs nbflow with its dev tools, runs lint, types and tests
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: demo test lint typecheck pytest bench clean

$(BIN)/nbflow: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $@

demo: $(BIN)/nbflow
	$(BIN)/nbflow run sample_notebooks/hello.py -p name=nbflow
	$(BIN)/nbflow run sample_notebooks/workflow.py

test: $(BIN)/nbflow lint typecheck pytest

lint: $(BIN)/nbflow
	$(BIN)/ruff check nbflow tests bench

typecheck: $(BIN)/nbflow
	$(BIN)/mypy

pytest: $(BIN)/nbflow
	$(BIN)/pytest $(PYTEST_ARGS)

bench: $(BIN)/nbflow
	$(BIN)/python bench/bench_cold_run.py

clean:
	rm -rf $(VENV) processed .nbflow .pytest_cache .mypy_cache .ruff_cache
