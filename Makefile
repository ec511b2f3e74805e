# The two commands a newcomer needs: `make demo` and `make test`.
# Each bootstraps .venv from pyproject.toml the first time (and again when it changes).
# `make test-quick` is the edit-and-rerun loop: everything but the tests marked `slow`
# (real qcluster and demo processes, the browser).

PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PORT ?= 8000

.PHONY: demo test test-quick manage venv lint clean prod-check load-test

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	DEMO_MODE=1 SANDBOX_ENABLED=1 $(BIN)/python manage.py demo --port $(PORT)

# Any management command against the demo's database, e.g. in a second terminal while
# `make demo` runs: make manage ARGS="reconcile --from 2026-11-01 --to 2026-11-30"
manage: $(STAMP)
	DEMO_MODE=1 SANDBOX_ENABLED=1 $(BIN)/python manage.py $(ARGS)

# One worker per core (pytest-xdist); PYTEST_ARGS="-n 0" runs the suite in one process.
test: $(STAMP)
	$(BIN)/python -m pytest -n auto $(PYTEST_ARGS)

test-quick: $(STAMP)
	$(BIN)/python -m pytest -n auto -m "not slow" $(PYTEST_ARGS)

# The production layout on this machine, no containers (docs/deploy.md): PostgreSQL on
# 127.0.0.1:5432 (database portal_prodcheck, dropped and recreated), production settings,
# `check --deploy`, two gunicorn workers, three qclusters; signed payments must post
# exactly once. PROD_CHECK_ARGS="--events 100 --keep-logs" for more.
prod-check: $(STAMP)
	$(BIN)/python -m deploy.prod_check $(PROD_CHECK_ARGS)

# The production layout under sustained signed traffic for minutes, with one qcluster
# SIGKILLed and restarted and PostgreSQL restarted (its own throwaway cluster, not the
# one on 5432); prints throughput, latency and 0 lost / 0 duplicated, and writes
# bench/results/load_test.json (docs/benchmarks.md). Takes every core for ~10 minutes.
# LOAD_TEST_ARGS="--minutes 8 --rate 30" for more.
load-test: $(STAMP)
	$(BIN)/python -m bench.load_test $(LOAD_TEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

clean:
	rm -rf var/test-*.sqlite3* .pytest_cache
