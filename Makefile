# Two commands do all the set-up on a fresh machine (Python >= 3.10):
#   make demo   creates .venv, installs nbflow, runs the sample scenario (setup + five workers)
#   make test   creates .venv, installs nbflow with its dev tools, runs lint, types and tests
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

LAB_EXTENSION := nbflow/jupyter/labextensions/nbflow-lab/package.json

.PHONY: demo test test-fast lint typecheck pytest bench docker-check clean

$(BIN)/nbflow: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@# An editable install compiles nothing, and where PYTHONDONTWRITEBYTECODE is set (CI images
	@# often set it) every command would compile nbflow again: a tenth of a second each.
	$(BIN)/python -m compileall -q nbflow
	@touch $@

# JupyterLab's half of `nbflow lab`: a double-click opens a Databricks source notebook as a
# notebook (labextension/, TypeScript), built against the JupyterLab installed above with node and
# npm (about 40 s the first time). Without npm nbflow lab still runs; such notebooks open as text.
$(LAB_EXTENSION): $(BIN)/nbflow labextension/package.json labextension/package-lock.json labextension/src/index.ts
	@if command -v npm >/dev/null 2>&1; then \
	  cd labextension && npm ci --no-audit --no-fund --loglevel=error && npx tsc && \
	  node node_modules/@jupyterlab/builder/lib/build-labextension.js \
	    --core-path "$$($(abspath $(BIN))/python -c 'import jupyterlab, os; print(os.path.dirname(jupyterlab.__file__))')/staging" . \
	    > build.log && touch ../$@; \
	else echo "nbflow: npm not found: JupyterLab extension not built (source notebooks open as text in nbflow lab)"; fi

# The mission's scenario on the local cluster, twice: (1) notebooks orchestrating notebooks with
# dbutils.notebook.run (setup, then the five workers sequentially and from a thread pool);
# (2) the same job as a plan, compared sequential against parallel. Then the cluster stops.
# ENGINE=spark runs it on the JVM engine with delta-spark (ENGINE=sail: Sail; auto: Sail when
# installed). A named engine restarts the project's cluster on it; the plan's tasks, on auto,
# attach to whichever runs.
ENGINE ?= auto
demo: $(BIN)/nbflow $(LAB_EXTENSION)
	$(BIN)/nbflow run sample_notebooks/demo.py --log-output --engine $(ENGINE) \
		$(if $(filter-out auto,$(ENGINE)),--fresh-cluster)
	$(BIN)/nbflow compare sample_notebooks/plan.yaml
	$(BIN)/nbflow cluster stop

test: $(BIN)/nbflow lint typecheck pytest

lint: $(BIN)/nbflow
	$(BIN)/ruff check nbflow tests bench

typecheck: $(BIN)/nbflow
	$(BIN)/mypy

pytest: $(BIN)/nbflow $(LAB_EXTENSION)
	$(BIN)/pytest $(PYTEST_ARGS)

# The fast lane for the edit loop: no kernels, no servers, no JVM (under a minute on 2 cores).
test-fast: $(BIN)/nbflow $(LAB_EXTENSION)
	$(BIN)/pytest -q -m "not kernel and not spark and not serve and not jvm and not browser" $(PYTEST_ARGS)

bench: $(BIN)/nbflow
	$(BIN)/python bench/bench_cold_run.py
	$(BIN)/python bench/bench_workers.py
	$(BIN)/python bench/bench_engines.py
	$(BIN)/python bench/bench_plans.py
	$(BIN)/python bench/bench_notebook_run.py
	$(BIN)/python bench/bench_pytest_plugin.py

# The docker image, checked where no Docker engine runs (docker/check.sh): hadolint on the
# Dockerfile, shellcheck on docker/*.sh, docker/install.sh (the image's build) into a temporary
# prefix, then nbflow run and nbflow serve from it. About 1.5 min on 2 shared cores, pip's cache warm.
docker-check: $(BIN)/nbflow
	HADOLINT=$(BIN)/hadolint SHELLCHECK=$(BIN)/shellcheck docker/check.sh

clean:
	rm -rf $(VENV) processed .nbflow .pytest_cache .mypy_cache .ruff_cache nbflow/jupyter/labextensions \
		labextension/node_modules labextension/lib
