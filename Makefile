# Two entry points: `make run` (install, migrate, seed, show) and `make test` (lint, types, tests).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip --disable-pip-version-check -q
LINTED := src tests migrations scripts bench examples

.PHONY: run install install-dev test lint typecheck pytest bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

install: $(BIN)/python
	$(PIP) install -e .

install-dev: $(BIN)/python
	$(PIP) install -e ".[dev]"

run: install
	$(BIN)/app db upgrade
	$(BIN)/app db seed
	$(BIN)/app db info

lint: install-dev
	$(BIN)/ruff check $(LINTED)
	$(BIN)/ruff format --check $(LINTED)

typecheck: install-dev
	$(BIN)/mypy src

pytest: install-dev
	$(BIN)/pytest $(PYTEST_ARGS)

test: lint typecheck pytest

clean:
	rm -rf $(VENV) app.db app.db-wal app.db-shm .mypy_cache .ruff_cache .pytest_cache

bench: $(BIN)/python
	$(PIP) install -e ".[dev,bench]"
	$(BIN)/python -m bench $(BENCH_ARGS)
