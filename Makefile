# Floodgate's entry points. Every target creates .venv (at the repo root) and installs into it when needed.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
export JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION := 20
export CDK_DISABLE_CLI_TELEMETRY := true

.PHONY: install test lint unit bench demo demo-keep sample clean

$(STAMP): pyproject.toml
	@test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[dev,infra]'
	@touch $(STAMP)

install: $(STAMP)

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

# The whole suite: linters, unit, property and integration tests (moto server over HTTP).
test: lint
	$(VENV)/bin/pytest -n 2 --dist loadgroup

unit: $(STAMP)
	$(VENV)/bin/pytest -m "not integration"

BENCH_STAMP := $(VENV)/.bench-stamp

$(BENCH_STAMP): $(STAMP)
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[dev,infra,bench]'
	@touch $(BENCH_STAMP)

# Figures as JSON lines, each process pinned to one core; polars and DuckDB (the `bench` extra) as yardsticks.
bench: $(BENCH_STAMP)
	$(PY) bench/run.py

# The main job on the embedded emulator: deploy the stack into moto, play an attack, show the deny log.
demo: $(STAMP)
	$(PY) -m emulator.demo

# The same, leaving the emulator running for the CLI (Ctrl-C stops it).
demo-keep: $(STAMP)
	$(PY) -m emulator.demo --keep

# Regenerates the bundled capture (deterministic).
sample: $(STAMP)
	$(PY) -m emulator.traffic samples/attack.log.gz

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis cdk.out .bench
