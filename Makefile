# Two entry points for a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test docs lint format types unit integration schemas bench lock audit dashboard-png clean

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

test: lint types docs
	# Integration tests wait on real brokers, processes and HTTP on 2 cores: a test that fails
	# is run again up to twice; the summary names each rerun test and counts them ("N rerun").
	$(BIN)/pytest -q -rR --reruns 2 --reruns-delay 1

lint: $(VENV)/.dev
	$(BIN)/ruff check consumer tests bench
	$(BIN)/ruff format --check consumer tests bench

format: $(VENV)/.dev
	$(BIN)/ruff check --fix consumer tests bench
	$(BIN)/ruff format consumer tests bench

types: $(VENV)/.dev
	$(BIN)/mypy consumer

# The documentation site, strict: a broken link or anchor fails the build.
docs: $(VENV)/.dev
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet

unit: $(VENV)/.dev
	$(BIN)/pytest -q tests/unit

integration: $(VENV)/.dev
	$(BIN)/pytest -q tests/integration

schemas: $(VENV)/.dev
	$(BIN)/python -m consumer.schemas schemas

bench: $(VENV)/.dev
	$(BIN)/python -m bench

# The exact versions the image installs, resolved from pyproject.toml for Python 3.11 (the
# image's). Existing pins are kept; `make lock LOCK_ARGS=--upgrade` moves them forward.
lock: $(VENV)/.dev
	$(BIN)/pip-compile --quiet --strip-extras --allow-unsafe --no-emit-index-url \
		--no-emit-find-links $(LOCK_ARGS) --output-file requirements.lock pyproject.toml

# Known vulnerabilities in the locked versions; needs the advisory service, so not in `make test`.
# --strict: a dependency that could not be audited fails the audit too.
audit: $(VENV)/.dev
	$(BIN)/pip-audit --strict --disable-pip --no-deps --requirement requirements.lock
# Runs the sandbox with traffic and a real Prometheus, draws every panel: docs/dashboard.png
dashboard-png: $(VENV)/.dev
	$(BIN)/python -m bench.dashboard

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache
