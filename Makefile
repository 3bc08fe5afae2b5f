# Two entry points for a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test lint format types unit integration schemas bench dashboard-png clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.sandbox: $(BIN)/python pyproject.toml
	$(BIN)/pip install --quiet -e '.[sandbox]'
	touch $@

$(VENV)/.dev: $(BIN)/python pyproject.toml
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@ $(VENV)/.sandbox

demo: $(VENV)/.sandbox
	$(BIN)/cxone-role-sync demo

test: lint types
	$(BIN)/pytest -q

lint: $(VENV)/.dev
	$(BIN)/ruff check consumer tests bench
	$(BIN)/ruff format --check consumer tests bench

format: $(VENV)/.dev
	$(BIN)/ruff check --fix consumer tests bench
	$(BIN)/ruff format consumer tests bench

types: $(VENV)/.dev
	$(BIN)/mypy consumer

unit: $(VENV)/.dev
	$(BIN)/pytest -q tests/unit

integration: $(VENV)/.dev
	$(BIN)/pytest -q tests/integration

schemas: $(VENV)/.dev
	$(BIN)/python -m consumer.schemas schemas

bench: $(VENV)/.dev
	$(BIN)/python -m bench

# Runs the sandbox with traffic and a real Prometheus, draws every panel: dashboards/dashboard.png
dashboard-png: $(VENV)/.dev
	$(BIN)/python -m bench.dashboard

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache
