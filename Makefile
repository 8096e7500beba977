# The course's commands.  Everything runs inside .venv (made by `make setup`).
#
#   make course   set up, then open the notebooks in JupyterLab      (README command 1)
#   make test     set up, then run unit tests + every notebook        (README command 2)
#   make book     set up, then build the static book from the notebooks `make test` executed
#                 (executes any notebook with no fresh executed copy; see CONTRIBUTING.md)
#   make serve    serve the built book on http://127.0.0.1:8000
#   make nb-clean       strip notebooks to their stored form (see CONTRIBUTING.md)
#   make nb-refresh NB=notebooks/01_x.ipynb   re-run a notebook and store its checked outputs
#   make unit     the fast unit tests (no notebooks, no compile, no subprocesses; ~2 min on 2 cores)
#   make mutate   the mutation check (tools/mutate.py): does the suite notice a wrong ftlib?

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PORT   ?= 8888
# Jupyter refuses to run as root (containers, CI images) unless told it may.
LAB_ARGS ?= $(if $(filter 0,$(shell id -u)),--allow-root)
# More JupyterLab options, e.g. LAB_EXTRA="--no-browser" (tests/test_lab.py starts `make course` so).
LAB_EXTRA ?=

# Data mirror (see data/README.md): an explicit FTLIB_DATA_DIR wins; otherwise the first
# mirror folder that exists is used; with none, ftlib loads the data sets from the hub.
FTLIB_DATA_DIR ?= $(firstword $(foreach d,data/mirror ../shared/data,$(if $(wildcard $(d)/sst2/train.tsv),$(abspath $(d)))))
export FTLIB_DATA_DIR

.PHONY: setup course test unit mutate book serve nb-clean nb-refresh clean

setup: $(VENV)/.installed

# constraints.txt pins the versions CI tests (torch==2.13.0 also keeps this machine on its
# local CPU build instead of a multi-GB CUDA download).  Override: make setup CONSTRAINTS=
CONSTRAINTS ?= constraints.txt
$(VENV)/.installed: pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet $(if $(CONSTRAINTS),-c $(CONSTRAINTS)) -e ".[all]"
	$(PY) -m ftlib install-offline
	touch $@

course: setup
	$(VENV)/bin/jupyter lab --notebook-dir=notebooks --ip=127.0.0.1 --port=$(PORT) $(LAB_ARGS) $(LAB_EXTRA)

# `make test` runs in two steps: the unit tests and the notebooks, JOBS pytest workers at once
# (pytest-xdist; one notebook stays on one worker, its cells in order), each worker's torch using
# its share of the cores; then the site tests, which build the book from the executed notebooks.
# JOBS=1 runs everything in one process, as plain `pytest` does.
CORES   := $(shell $(PYTHON) -c "import os; print(len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else os.cpu_count() or 1)")
JOBS    ?= $(if $(filter 1,$(CORES)),1,2)
THREADS ?= $(shell $(PYTHON) -c "print(max(1, $(CORES) // $(JOBS)))")

test: setup
	OMP_NUM_THREADS=$(THREADS) $(PY) -m pytest $(if $(filter 1,$(JOBS)),,-n $(JOBS) --dist loadscope) -m "not site"
	$(PY) -m pytest -m site

unit: setup
	$(PY) -m pytest tests -m "not slow and not compile"

mutate: setup
	$(PY) tools/mutate.py --report results/mutations.md

book: setup
	$(PY) tools/book.py

serve: book
	$(PY) -m http.server --bind 127.0.0.1 --directory book/_build/html 8000

nb-clean: setup
	$(PY) tools/nb.py clean notebooks/*.ipynb

nb-refresh: setup
	$(PY) tools/nb.py refresh $(or $(NB),notebooks/*.ipynb)

clean:
	rm -rf book/_build .pytest_cache
