# Every install step lives here: a fresh clone needs only Python >= 3.11, and Java >= 17 with Maven (or Docker).
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp

.PHONY: venv jars test demo demo-openfe bench bench-quick clean

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

# Real chemistry: an openfe RBFE network (solvent legs) on this machine's GPUs, else CPU. Needs gufe
# and openfe: the science venv (.venv-science), or a conda env's python via SCIENCE_PY=python.
SCIENCE_PY ?= .venv-science/bin/python
demo-openfe: jars
	$(SCIENCE_PY) examples/openfe_rbfe.py $(DEMO_ARGS)

bench: jars
	$(PY) -m bench.run_all

bench-quick: jars
	$(PY) -m bench.run_all --quick

clean:
	rm -rf $(VENV) build dist *.egg-info
