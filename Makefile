# Two commands for a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: run test lint install bench clean

$(BIN)/bridge: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

install: $(BIN)/bridge

## Everything on this machine: embedded Kafka, the Bird simulator, the bridge.
run: install
	$(BIN)/bridge dev

## Lint, type-check and the whole test suite (unit + integration on a real broker).
test: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/pytest

## Benchmarks (not tests): webhook ingest vs baselines, then commands at 1/10/100 in flight.
bench: install
	command -v wrk >/dev/null || apt-get install -y wrk
	$(BIN)/python -m bench.ingest
	$(BIN)/python -m bench.commands

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache
