# Sluice: the verbs people use. Every target builds its own virtualenv first.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.DEFAULT_GOAL := help
.PHONY: help venv browser dev test test-all test-faults mutants lint bench bench-smoke bench-console bench-console-browser bench-retention bench-growth bench-stream-cpu bench-sink-cpu attacks kafka-jars clean

help: ## list the targets
	@grep -E '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-14s %s\n", $$1, $$2}'

FASTPATH := fastpath/Cargo.toml fastpath/Cargo.lock fastpath/pyproject.toml \
	fastpath/sluice_fastpath.pyi fastpath/src/lib.rs fastpath/src/stream.rs \
	fastpath/src/avro.rs fastpath/src/contracts.rs fastpath/src/sink.rs

# fastpath/ is Sluice's compiled door path (Rust, built by maturin with cargo from crates.io).
$(STAMP): pyproject.toml $(FASTPATH)
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q ./fastpath
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP) ## create .venv and install Sluice with its dev tools

CHROMIUM ?= /usr/bin/chromium

# The console's browser tests drive Debian's chromium with Playwright (never `playwright
# install`). Installed here when missing and apt-get can (as root); else they skip, saying why.
browser: ## install Debian's chromium for the console's browser tests, when it is missing
	@if [ -x $(CHROMIUM) ]; then echo "chromium: $(CHROMIUM)"; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium \
		|| echo "chromium could not be installed: the console's browser tests will skip"; \
	else echo "no $(CHROMIUM) and no root apt-get: the console's browser tests will skip"; fi

kafka-jars: $(STAMP) ## resolve the Apache Kafka broker jars from Maven Central into the cache
	$(VENV)/bin/sluice kafka-jars

dev: $(STAMP) ## run the whole stack on embedded Kafka and PostgreSQL, print a demo key and curl
	$(VENV)/bin/sluice dev

test: $(STAMP) browser ## the default test suite (unit + integration on real Kafka and PostgreSQL)
	$(PY) -m pytest -m "not slow and not faults" $(PYTEST_ARGS)

test-all: $(STAMP) browser ## every test except the destructive fault suite
	$(PY) -m pytest -m "not faults" $(PYTEST_ARGS)

test-faults: $(STAMP) ## the fault-injection suite (-s: its FIGURE lines are printed)
	$(PY) -m pytest -s -m faults $(PYTEST_ARGS)

mutants: $(STAMP) ## break each invariant's code on purpose; fails unless a test notices each (~15 min)
	$(PY) -m tests.mutants.run $(MUTANTS)

lint: $(STAMP) ## ruff, mypy --strict, lint-imports (the layers); cargo fmt and clippy for fastpath/
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports --no-logo
	cd fastpath && cargo fmt --check && cargo clippy --quiet -- -D warnings

bench-smoke: $(STAMP) ## the benchmark harness at a tiny size (about a minute; keeps it working)
	$(PY) -m bench.smoke

BENCH_STAMP := $(VENV)/.installed-bench

$(BENCH_STAMP): $(STAMP)
	$(PY) -m pip install -q -e '.[dev,bench]'
	touch $(BENCH_STAMP)

bench: $(BENCH_STAMP) ## every stage beside its raw baseline; writes bench-results/ (see docs/benchmarks.md)
	$(PY) -m bench

bench-console: $(STAMP) ## the console's first views with 1M events and 100k dead letters stored (see docs/benchmarks.md)
	$(PY) -m bench.console_views

bench-console-browser: $(STAMP) browser ## the console's pages timed in Chromium with 1M events and 100k dead letters
	$(PY) -m bench.console_browser

bench-retention: $(STAMP) ## a burst through the pipeline alone and while 500k stored events expire (see docs/benchmarks.md)
	$(PY) -m bench.retention

bench-growth: $(STAMP) ## a burst and GET /v1/events at 0, 1M and 10M stored rows, ~15 min (see docs/benchmarks.md)
	$(PY) -m bench.growth

bench-stream-cpu: $(STAMP) ## the worker's CPU per event, step by step, Python vs compiled path, no Kafka
	$(PY) -m bench.stream_cpu

bench-sink-cpu: $(STAMP) ## the sink's write path, client and PostgreSQL CPU per row, beside a binary COPY (~1 min)
	$(PY) -m bench.sink_cpu

attacks: $(BENCH_STAMP) ## replay the availability attacks against a local API, with figures (~2 min)
	$(PY) -m bench.attacks

clean: ## remove the virtualenv and local state
	rm -rf $(VENV) .sluice
