# The two commands a new user needs (see README):
#   make        set up .venv and run the whole pipeline (bundled data, tiny preset) into a new runs/tiny-<time>/
#   make test   check the export is in sync, then run nbdev_test and the pytest suite
#   make lab    open the notebooks in JupyterLab
#   make bench-readme readme   rewrite bench/README.md and the README's figures from bench/results/, then README.md
SHELL := /bin/bash
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
RUN_DIR ?= runs/$(PRESET)-$(shell date +%Y%m%d-%H%M%S)
PRESET ?= tiny

.PHONY: all install run test test-fast check-export nbtest pytest pytest-fast bench bench-readme readme lab clean

all: install run

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

# torch first and pinned: a bare `torch` requirement would pull a multi-GB CUDA build.
$(VENV)/.installed: $(BIN)/python setup.py settings.ini constraints.txt
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -c constraints.txt -e ".[dev,fast]"
	touch $@

install: $(VENV)/.installed

run: install
	$(BIN)/claim_t5_run --config $(PRESET) --run_dir $(RUN_DIR)

check-export: install
	@tmp=$$(mktemp -d); cp -r claim_t5 $$tmp/before; \
	$(BIN)/nbdev_export; \
	if ! diff -r -x __pycache__ $$tmp/before claim_t5; then \
	  rm -rf claim_t5 && cp -r $$tmp/before claim_t5; \
	  echo "ERROR: claim_t5/ is out of sync with nbs/: run nbdev_export and commit both"; rm -rf $$tmp; exit 1; fi; \
	rm -rf $$tmp; echo "export in sync"

# One torch thread per test process: notebooks run two at a time and torch's default (a thread per core) made the
# processes spin waiting for each other's threads (nbdev_test 4 min 43 s with the default, 82 s with one thread).
TEST_ENV := OMP_NUM_THREADS=1 TOKENIZERS_PARALLELISM=false HF_HUB_OFFLINE=1

nbtest: install
	$(TEST_ENV) $(BIN)/nbdev_test --n_workers 2 --timing

# Two pytest workers (pytest-xdist), one per core; each trains the session's seconds-long tiny model once.
pytest: install
	$(TEST_ENV) $(BIN)/pytest -q -n 2 tests

pytest-fast: install
	$(TEST_ENV) $(BIN)/pytest -q -n 2 -m "not slow" tests

test: check-export nbtest pytest

test-fast: check-export nbtest pytest-fast

# Each benchmark writes a JSON result (machine, threads, versions, commit) to bench/results/. bench_generate measures the
# model the last end-to-end run of bench_train kept, or MODEL_DIR=...
MODEL_DIR ?= runs/bench-tiny/fine_tuned_model
bench: install
	$(BIN)/python bench/bench_train.py --keep_model runs/bench-tiny/fine_tuned_model
	$(BIN)/python bench/bench_generate.py --model_dir $(MODEL_DIR)

# JupyterLab on the notebooks (the source of the library); Ctrl-C stops it
lab: install
	$(BIN)/jupyter lab --notebook-dir=nbs $(if $(filter 0,$(shell id -u)),--allow-root) $(LAB_ARGS)

# bench/README.md and the README's headline figures, written from bench/results/*.json (then `make readme`)
bench-readme: install
	$(BIN)/python bench/write_readme.py

readme: install
	$(BIN)/jupytext --quiet --to markdown --opt notebook_metadata_filter=-all --opt cell_metadata_filter=-all -o README.md nbs/index.ipynb

clean:
	rm -rf runs model_training _proc _docs
