# Bulletproof: the commands a new user runs. `make demo` and `make test` install first.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
PY     := $(VENV)/bin/python
PYTEST := $(PY) -m pytest

.PHONY: install services clients chromium demo stop test test-unit test-integration test-clients test-fault test-fuzz test-replicas test-import test-browser bench lint clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV) || { \
	  echo "python venv missing: installing Debian's python3-venv"; \
	  apt-get update -qq && apt-get install -y -qq python3-venv && $(PYTHON) -m venv $(VENV); }
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[test]"
	touch $@

services:
	@bash scripts/ensure-services.sh

clients:
	@bash scripts/install-clients.sh

chromium:
	@bash scripts/install-chromium.sh

demo: install services
	$(VENV)/bin/bulletproof demo

stop:
	-$(VENV)/bin/bulletproof down

test: install services clients chromium lint
	$(PYTEST) -q tests/unit tests/integration tests/clients tests/fault tests/fuzz
	$(PYTEST) -q tests/replicas
	$(PYTEST) -q tests/limits
	$(PYTEST) -q tests/import_engine
	$(PYTEST) -q tests/browser

test-unit: install
	$(PYTEST) -q tests/unit

test-integration: install services
	$(PYTEST) -q tests/integration

test-clients: install services clients
	$(PYTEST) -q tests/clients

test-fault: install services
	$(PYTEST) -q tests/fault

# Fuzzing (hypothesis over HTTP, schemathesis on /admin) and the secret scan; in `make test`
# they run with the first line, so the scan sees the whole run's secrets.
test-fuzz: install services
	$(PYTEST) -q tests/fuzz

test-replicas: install services
	$(PYTEST) -q tests/replicas
	$(PYTEST) -q tests/limits

test-import: install services
	$(PYTEST) -q tests/import_engine

# The console in Debian's Chromium: its own process (one Ray gateway per process).
test-browser: install services chromium
	$(PYTEST) -q tests/browser

bench: install services
	$(PY) -m bench.run

lint: install
	$(VENV)/bin/ruff check core cluster gateway actors jobs schema client tests bench
	$(VENV)/bin/lint-imports
	$(VENV)/bin/mypy core cluster gateway actors jobs schema client

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis
