# Developer tasks for teleconsult. GNU make.
#
#   make run    set up, migrate, seed demo users, serve on http://127.0.0.1:8080
#   make test   set up, run the whole test suite (what CI runs)
#
# Setup is incremental: each step leaves a stamp and re-runs only when its inputs change.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help
.DELETE_ON_ERROR:
MAKEFLAGS += --no-builtin-rules

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

TELECONSULT_HOST ?= 127.0.0.1
TELECONSULT_PORT ?= 8080
PYTEST_ARGS ?=
# Test files are spread over this many processes (pytest-xdist; a file's tests stay together).
TEST_WORKERS ?= 2
BENCH_ARGS ?=

# "command:debian-package" pairs: the package is installed with apt-get when the command is missing.
SYSTEM_DEPS ?= chromium:chromium node:nodejs npm:npm turnserver:coturn janus:janus redis-server:redis-server

VENV_STAMP := $(VENV)/.installed
NPM_STAMP := node_modules/.installed
PO_FILES := $(wildcard web/translations/*/LC_MESSAGES/*.po)
MO_FILES := $(PO_FILES:.po=.mo)

.PHONY: help setup system-deps python-deps node-deps catalogs messages run test lint bench bench-ecg bench-pairing clean distclean

help:
	@echo "make run        set up, migrate, seed demo users (logins are printed), serve on $(TELECONSULT_HOST):$(TELECONSULT_PORT)"
	@echo "make test       set up, run the full test suite (PYTEST_ARGS='...' passes options to pytest)"
	@echo "make setup      system packages if missing, .venv, pip install -e '.[dev]', npm ci, compile catalogs"
	@echo "make lint       ruff check, ruff format --check, lint-imports, mypy (domain, services)"
	@echo "make bench      run bench/join_time.py"
	@echo "make bench-ecg  run bench/ecg_codec.py, ecg_store.py and ecg_relay.py (each prints its figures)"
	@echo "make bench-pairing  run bench/pairing.py: 1,000 queued requests paired; fan-out 1 process vs 2 + Redis"
	@echo "make clean      remove caches, compiled catalogs and build output (distclean: also .venv, node_modules, var)"

setup: system-deps python-deps node-deps catalogs

system-deps:
	@missing=""; \
	for pair in $(SYSTEM_DEPS); do \
	  command -v "$${pair%%:*}" >/dev/null 2>&1 || missing="$$missing $${pair#*:}"; \
	done; \
	if [ -n "$$missing" ]; then \
	  sudo=""; [ "$$(id -u)" -eq 0 ] || sudo=sudo; \
	  echo "Installing Debian packages:$$missing"; \
	  $$sudo apt-get update; \
	  $$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y $$missing; \
	fi

python-deps: $(VENV_STAMP)

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -e '.[dev]'
	touch $@

node-deps: $(NPM_STAMP)

$(NPM_STAMP): package.json package-lock.json | system-deps
	npm ci --no-audit --no-fund
	touch $@

catalogs: $(MO_FILES)

%.mo: %.po | $(VENV_STAMP)
	rm -f $@
	$(BIN)/pybabel compile -D messages -i $< -o $@
	@test -f $@ || { echo "pybabel did not write $@ (is the catalog marked fuzzy?)" >&2; exit 1; }

# Re-extract UI strings into the catalogs after changing templates or web/*.py; then translate the new
# entries in web/translations/vi (tests/unit/test_catalogs.py fails until every string is translated).
messages: | $(VENV_STAMP)
	mkdir -p var
	$(BIN)/pybabel extract -F babel.cfg -k _ -k gettext -o var/messages.pot .
	$(BIN)/pybabel update -i var/messages.pot -d web/translations -D messages --no-fuzzy-matching --ignore-obsolete

run: setup
	mkdir -p var
	$(BIN)/teleconsult migrate
	$(BIN)/teleconsult seed --demo
	exec $(BIN)/teleconsult serve --with-janus --host $(TELECONSULT_HOST) --port $(TELECONSULT_PORT)

test: setup
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadfile $(PYTEST_ARGS)

lint: python-deps
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports
	$(BIN)/mypy teleconsult/domain teleconsult/services

bench: setup
	$(BIN)/python bench/join_time.py $(BENCH_ARGS)

# ECG figures (bench/README.md): codec bytes per sample, store throughput (SQLite and the PostgreSQL of
# TELECONSULT_TEST_DATABASE_URL), live relay ladder against a Node socket.io relay (npm installs it once).
bench-ecg: setup
	$(BIN)/python bench/ecg_codec.py
	$(BIN)/python bench/ecg_store.py
	$(BIN)/python bench/ecg_relay.py

# Pairing under load and the socket.io fan-out ceiling of one process vs two + Redis (bench/README.md): real
# servers on the PostgreSQL of TELECONSULT_TEST_DATABASE_URL (a throw-away schema), a redis-server of its own.
# BENCH_ARGS='--quick' for a short run.
bench-pairing: setup
	$(BIN)/python bench/pairing.py $(BENCH_ARGS)

# Mesh vs Janus SFU for multi-site conferences (bench/README.md): 2..N in-process aiortc sites, join time and
# upload per participant side by side; starts its own Janus on loopback. BENCH_ARGS='--participants 2,4,6,8,10'.
.PHONY: bench-conference
bench-conference: setup
	$(BIN)/python bench/conference.py $(BENCH_ARGS)

clean:
	rm -rf .pytest_cache .ruff_cache .mypy_cache .import_linter_cache build dist test-artifacts bench/results
	find . -path ./.venv -prune -o -path ./node_modules -prune -o \
	  \( -name __pycache__ -type d -prune -exec rm -rf {} + \) -o \( -name '*.egg-info' -type d -prune -exec rm -rf {} + \)
	find web/translations -name '*.mo' -type f -delete 2>/dev/null || true

distclean: clean
	rm -rf $(VENV) node_modules var
