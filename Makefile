# Two commands for a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: run test lint install kafka-tools bench clean

$(BIN)/bridge: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

install: $(BIN)/bridge

## Everything on this machine: embedded Kafka, the Bird simulator, the bridge.
run: install
	$(BIN)/bridge dev

## Lint, type-check and the whole test suite (unit + integration on Apache Kafka, which
## needs Java and Maven: installed from Debian when missing; without them the suite runs
## on the embedded broker and skips the tests that need Apache Kafka).
test: install kafka-tools
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/pytest

kafka-tools:
	@command -v java >/dev/null && command -v mvn >/dev/null || { \
	  apt-get update -qq && apt-get install -y -qq --no-install-recommends \
	    openjdk-17-jre-headless maven >/dev/null; } || \
	  echo "make: could not install Java and Maven; the tests needing Apache Kafka are skipped"

## Benchmarks (not tests): webhook ingest vs baselines, then commands at 1/10/100 in flight.
bench: install
	command -v wrk >/dev/null || apt-get install -y wrk
	$(BIN)/python -m bench.ingest
	$(BIN)/python -m bench.commands

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache
