# Every install step lives here: a fresh clone needs only Python >= 3.11, and Java >= 17 with Maven (or Docker).
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp

.PHONY: venv jars test test-nogufe test-science science-venv lint demo demo-openfe bench bench-quick mutate clean

$(STAMP): pyproject.toml setup.py
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test,bench,lint]'
	touch $(STAMP)

venv: $(STAMP)

# Resolve the Neo4j jars once into the cache dir (no-op when they are there, or when Docker answers).
jars: $(STAMP)
	$(VENV)/bin/alchemiscale-local neo4j fetch

# Two test environments. `.venv` has no gufe: the server and orchestration must work without it.
# The science env has real gufe + openfe (from ../shared/wheels, or PYTHON_SCIENCE=<a conda env's
# python>, or the current python3 where they import); see .ci/science-python and the README.
test: test-nogufe test-science

test-nogufe: jars
	$(PY) -m pytest $(PYTEST_ARGS)

# PYTHON_SCIENCE: an interpreter whose environment has gufe, openfe and this project (conda users)
science-venv:
	@.ci/science-python >/dev/null

# The jars come through the science interpreter's own CLI, so a conda user needs no .venv.
# Infrastructure e2e that gufe does not change (marker one_env) runs once, in test-nogufe: CI time.
test-science:
	@py=$$(.ci/science-python); rc=$$?; \
	if [ $$rc = 3 ]; then echo "test-science: skipped (reason above)"; exit 0; fi; \
	if [ $$rc != 0 ]; then exit $$rc; fi; \
	echo "test-science: $$py"; \
	$$py -m alchemiscale_local.cli neo4j fetch && $$py -m pytest -m "not one_env" $(PYTEST_ARGS)

# Lint: ruff (lint + format check) and mypy over the package.
lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy alchemiscale_local backends launchers

demo: jars
	$(PY) examples/quickstart.py

# Real chemistry: an openfe RBFE network (solvent legs) on this machine's GPUs, else CPU. Needs gufe
# and openfe: the science env (made from the wheelhouse), or PYTHON_SCIENCE=<a conda env's python>.
demo-openfe:
	@py=$$(.ci/science-python); rc=$$?; \
	if [ $$rc != 0 ]; then echo "demo-openfe needs gufe and openfe (see above)"; exit 1; fi; \
	$$py -m alchemiscale_local.cli neo4j fetch && $$py examples/openfe_rbfe.py $(DEMO_ARGS)

bench: jars
	$(PY) -m bench.run_all

bench-quick: jars
	$(PY) -m bench.run_all --quick

# Mutation check (not in CI): mutmut over the core modules with the fast tests that cover them,
# each module under a time limit. MUTATE_MODULES="gufekeys compute_pool" (default; also keyedchain,
# objectstore_local, claims, auth); MUTATE_BUDGET_S=600 per module. Results: bench/results/mutate/.
MUTATE_MODULES ?= gufekeys compute_pool
MUTATE_BUDGET_S ?= 600
mutate: jars
	$(PY) -m pip install -q -e '.[mutate]'
	$(PY) scripts/mutate.py --budget-s $(MUTATE_BUDGET_S) $(MUTATE_MODULES)

clean:
	rm -rf $(VENV) .venv-science build dist *.egg-info
