# Every install step lives here: a fresh clone needs only Python >= 3.11, and Java >= 17 with Maven (or Docker).
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp

.PHONY: venv jars test demo bench bench-quick clean mutate

$(STAMP): pyproject.toml setup.py
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test,bench,lint]'
	touch $(STAMP)

venv: $(STAMP)

# Resolve the Neo4j jars once into the cache dir (no-op when they are there, or when Docker answers).
jars: $(STAMP)
	$(VENV)/bin/alchemiscale-local neo4j fetch

test: jars
	$(PY) -m pytest $(PYTEST_ARGS)

demo: jars
	$(PY) examples/quickstart.py

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
	rm -rf $(VENV) build dist *.egg-info
