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
	$(BIN)/bridge dev $(DEV_ARGS)

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

## promtool, for the alert-rule checks in tests/k8s/test_monitoring.py: Debian's prometheus
## package ships it, installed when missing (its service is stopped if the install started it).
## Without it those tests skip, unless apt-get as root could have installed it: then they fail.
.PHONY: prometheus-tools
prometheus-tools:
	@command -v promtool >/dev/null || { \
	  apt-get update -qq && apt-get install -y -qq --no-install-recommends prometheus >/dev/null && \
	  { invoke-rc.d prometheus stop >/dev/null 2>&1 || true; }; } || \
	  echo "make: could not install promtool (Debian's prometheus package); the alert-rule tests fail or skip"

test: prometheus-tools

## Benchmarks (not tests): webhook ingest vs baselines (3 interleaved runs each, with 2
## HTTP workers, uvloop and the required work alone beside), commands at 1/10/100 in
## flight and beside a naive executor, then
## a commands replica's start and memory with 100,000 and 1,000,000 commands in the ledger
## (Apache Kafka: Java and Maven as for `make test`; kcat writes the ledger fast). Each one
## prints its tables with PASS/FAIL; the exit status is 1 if any failed.
bench: install kafka-tools
	command -v wrk >/dev/null || apt-get install -y wrk
	command -v kcat >/dev/null || apt-get install -y kcat || true
	status=0; \
	$(BIN)/python -m bench.ingest --compare workers --compare uvloop --compare required || status=1; \
	$(BIN)/python -m bench.commands || status=1; \
	$(BIN)/python -m bench.ledger || status=1; \
	exit $$status

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache

## The real helm for tests/k8s, built once into .cache/bin from the pinned release with the
## release build's flags (without them helm calls itself "v3.22" and assumes Kubernetes 1.20,
## below the chart's kubeVersion). Skipped when .cache/bin/helm already reports the pin.
## Needs Go >= 1.26 (helm's go.mod); without Go the helm checks in tests/k8s skip.
HELM_VERSION := v3.22.0
# helm v3.22.0 builds against k8s.io/client-go v0.37: its releases default to Kubernetes 1.37.
HELM_KUBE_MINOR := 37
HELM := .cache/bin/helm
HELM_LDFLAGS := -s -w -X helm.sh/helm/v3/internal/version.version=$(HELM_VERSION) \
	-X helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor=1 \
	-X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=$(HELM_KUBE_MINOR) \
	-X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMajor=1 \
	-X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMinor=$(HELM_KUBE_MINOR)

.PHONY: helm
helm:
	@if [ "$$($(HELM) version --template '{{.Version}}' 2>/dev/null)" = "$(HELM_VERSION)" ]; then \
		:; \
	elif command -v go >/dev/null; then \
		echo "building helm $(HELM_VERSION) into $(HELM) (minutes, once)"; \
		GOBIN="$(CURDIR)/.cache/bin" CGO_ENABLED=0 go install -trimpath \
			-ldflags '$(HELM_LDFLAGS)' helm.sh/helm/v3/cmd/helm@$(HELM_VERSION); \
	else \
		echo "helm $(HELM_VERSION) not built: no Go >= 1.26 on PATH, tests/k8s skip the helm checks"; \
	fi

test: helm

## The AsyncAPI parser (npm @asyncapi/parser, pinned in tests/asyncapi/package-lock.json)
## for tests/unit/test_schemas.py, installed once into tests/asyncapi/node_modules: skipped
## when that install is newer than the lock file. Without npm that test skips.
ASYNCAPI_LOCK := tests/asyncapi/package-lock.json
ASYNCAPI_STAMP := tests/asyncapi/node_modules/.package-lock.json

.PHONY: asyncapi-tools
asyncapi-tools:
	@if [ "$(ASYNCAPI_STAMP)" -nt "$(ASYNCAPI_LOCK)" ]; then \
		:; \
	elif command -v npm >/dev/null; then \
		npm ci --prefix tests/asyncapi --no-audit --no-fund --silent || \
		echo "make: npm ci failed; tests/unit/test_schemas.py skips the AsyncAPI parser check"; \
	else \
		echo "make: no npm on PATH; tests/unit/test_schemas.py skips the AsyncAPI parser check"; \
	fi

test: asyncapi-tools

## The tests without those marked slow (process and fault tests): a few minutes less.
.PHONY: test-quick
test-quick: install
	$(BIN)/pytest -m "not slow"
