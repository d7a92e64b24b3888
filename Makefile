# seqlab: `make repro` runs the pipeline, `make test` runs the checks. Both create/reuse .venv first.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
BIN := $(abspath $(VENV))/bin
# The CPU build of torch is installed first, alone (its dependencies come with the rest), so that the project's
# `torch>=...` requirement is already satisfied and pip never pulls a multi-GB CUDA build. Off this workplace,
# add the PyTorch CPU index:  make TORCH_PIP_ARGS="--index-url <PyTorch CPU wheel index>" test
TORCH_VERSION ?= 2.13.0
TORCH_PIP_ARGS ?=
# The lock: every install takes each package's exact version from constraints.txt (written by `make lock`), the
# build of seqlab itself too (its setuptools).  LOCKED= (empty) installs the newest that pyproject.toml allows.
LOCK := constraints.txt
LOCKED ?= yes
PIN := $(if $(LOCKED),-c $(LOCK))
RUNTIME_STAMP := $(VENV)/.seqlab-runtime
STAMP := $(VENV)/.seqlab-installed
# DVC runs each stage's `python -m stages.<name>` through the shell: make sure that is the venv's python.
export PATH := $(BIN):$(PATH)
# pip byte-compiles every installed module one file at a time, about half of the install's time.  The installs
# skip that.  The pipeline imports under a third of what it installs (3,900 of 12,700 modules: none of sklearn, most
# of scipy and mlflow's server), so `make repro` compiles nothing ahead: Python writes each module's .pyc at its
# first import, as after any `pip install --no-compile`, and later stages read it.  Where the environment turns
# that off (PYTHONDONTWRITEBYTECODE, as some CI images and containers set), every stage would compile torch and
# the rest from source at every start (+1.6 s for `import torch` alone), so the pipeline's commands (repro, ui) run
# with it unset: the cache lives inside this project's own venv and __pycache__ folders (git and DVC ignore them).
# The checks (make install/test/lint) import far more, in hundreds of processes: after the dev extra one
# compileall pass compiles all of site-packages on every core.  A file that does not compile (torch ships tests
# written for newer Pythons) is left to its importer, as pip leaves it: hence `|| true`.  The dependencies' own
# test suites (`tests/` folders: a fifth of the source, pandas and sympy most; music21 imports its `test/`
# package, so that one stays) are never imported and are not compiled.
PIP_INSTALL := $(BIN)/python -m pip install --quiet --disable-pip-version-check --no-compile
COMPILE = $(BIN)/python -m compileall -qq -j 0 -x '/tests/' "$$($(BIN)/python -c 'import sysconfig; print(sysconfig.get_path("purelib"))')" || true

.PHONY: install lock repro retrain test test-fast lint ui compare bench clean browser-deps

# What the pipeline needs (make repro, make ui): torch, then seqlab and its dependencies.
$(RUNTIME_STAMP): pyproject.toml $(if $(LOCKED),$(LOCK))
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP_INSTALL) $(PIN) --upgrade pip
	$(PIP_INSTALL) $(PIN) --no-deps "torch==$(TORCH_VERSION)" $(TORCH_PIP_ARGS)
	$(PIP_INSTALL) $(PIN) $(if $(LOCKED),--build-constraint $(LOCK)) -e .
	@touch $@

# The dev extra on top (tests, linters, the S3 remote, moto): make test, lint, retrain and install.  make repro
# leaves it out: it is a quarter of the install time and the pipeline never imports it.
$(STAMP): $(RUNTIME_STAMP)
	$(PIP_INSTALL) $(PIN) $(if $(LOCKED),--build-constraint $(LOCK)) -e ".[dev]"
	$(COMPILE)
	@touch $@

install: $(STAMP)

# Refresh the lock: the installs above, unlocked, in a throw-away venv (the newest releases pyproject.toml allows;
# torch at TORCH_VERSION), then its `pip freeze` (torch's local label `+cpu` dropped: the CPU index's build and a
# plain `torch==` pin both match it).  Then run `make test` and commit constraints.txt with what it changed.
LOCK_VENV ?= $(or $(TMPDIR),/tmp)/seqlab-lock-venv
lock:
	rm -rf $(LOCK_VENV) && $(PYTHON) -m venv --upgrade-deps $(LOCK_VENV)
	$(MAKE) --no-print-directory install VENV=$(LOCK_VENV) LOCKED= COMPILE=:
	{ echo "# Every package \`make\` installs (runtime and dev extra) at its locked version: written by \`make lock\`"; \
	  echo "# (Python 3.11, Linux x86-64, CPU torch). Change pyproject.toml, then \`make lock\`; never edit by hand."; \
	  $(LOCK_VENV)/bin/python -m pip freeze --all --exclude-editable | sed -E 's/^(torch==[^+]+)\+.*/\1/'; } > $(LOCK).tmp
	mv $(LOCK).tmp $(LOCK) && rm -rf $(LOCK_VENV)

# Python's own bytecode cache on, whatever the environment says (see PIP_INSTALL above).
WRITE_BYTECODE := env -u PYTHONDONTWRITEBYTECODE

repro: $(RUNTIME_STAMP)
	$(WRITE_BYTECODE) $(BIN)/dvc repro

# What .github/workflows/retrain.yml runs: dvc pull, repro, push, then the regression check (`seqlab retrain --help`).
RETRAIN_ARGS ?=
retrain: $(STAMP)
	$(BIN)/seqlab retrain $(RETRAIN_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check pipeline stages tests bench
	$(BIN)/lint-imports
	$(BIN)/actionlint .github/workflows/*.yml

# tests/test_mlflow_ui.py drives Debian's chromium: installed (as root, with apt) only when missing.
browser-deps:
	@command -v chromium >/dev/null || { command -v apt-get >/dev/null && apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium fonts-liberation; } || \
		echo "warning: no chromium and no way to install it here; tests/test_mlflow_ui.py will fail" >&2

test: lint browser-deps
	$(BIN)/pytest

test-fast: lint
	$(BIN)/pytest -m "not slow"

ui: $(RUNTIME_STAMP)
	$(WRITE_BYTECODE) MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false $(BIN)/mlflow ui --backend-store-uri sqlite:///$(CURDIR)/mlflow.db \
		--default-artifact-root $(CURDIR)/mlartifacts --host 127.0.0.1 --port 5000 --workers 1

# The workspace and every `dvc exp run` side by side: reports/metrics.json, variants as rows (seqlab compare).
compare: $(RUNTIME_STAMP)
	@$(BIN)/seqlab compare

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .import_linter_cache
