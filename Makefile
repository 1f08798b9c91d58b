# Floodgate's entry points. Every target creates .venv (at the repo root) and installs into it when needed.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
export JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION := 20
export CDK_DISABLE_CLI_TELEMETRY := true

.PHONY: install test lint unit mutate bench demo demo-keep sample docs clean

$(STAMP): pyproject.toml functions/floodgate/core/_blockscan.c
	@test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[dev,infra,mutate]'
	@touch $(STAMP)

# numpy for the detector's Lambda layer (arm64, Python 3.13, as the functions run): binary wheels only, so no
# compiler and no Docker; fetched at install time, so that `cdk synth` stays offline. The wheel's tests and
# scripts are left out (69 MB unzipped with them, as pip installs it). The same numpy as the tests run.
LAMBDA_NUMPY := numpy==2.4.6
NUMPY_LAYER := build/lambda-layers/numpy
LAYER_STAMP := $(NUMPY_LAYER)/.installed-stamp
$(LAYER_STAMP): $(STAMP) Makefile
	rm -rf $(NUMPY_LAYER)
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
		--platform manylinux_2_28_aarch64 --platform manylinux2014_aarch64 --implementation cp \
		--python-version 3.13 --target $(NUMPY_LAYER)/python '$(LAMBDA_NUMPY)'
	find $(NUMPY_LAYER)/python -depth -type d -name tests -exec rm -rf {} +
	rm -rf $(NUMPY_LAYER)/python/bin
	@touch $(LAYER_STAMP)

INSTALLED := $(STAMP) $(LAYER_STAMP)

install: $(INSTALLED)

lint: $(INSTALLED)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

# The whole suite: linters, unit, property and integration tests (moto server over HTTP), in a shuffled
# order (pytest-randomly prints its seed; rerun one with `--randomly-seed=N`), with branch
# coverage of the Lambda package (floodgate).
test: lint
	$(VENV)/bin/pytest -n 2 --dist loadgroup --cov --cov-report=term --cov-report=html:.coverage-html

# Mutation testing of the safety core (the module list is `only_mutate` in pyproject.toml): mutmut runs in
# .mutate/, where src/ is functions/, with one worker and the unit tests. MUTANTS narrows the run while
# iterating, e.g. `make mutate MUTANTS='floodgate.core.networks.*'`. Prints the score per module and every
# surviving mutant that tests/mutation/equivalent.toml does not explain; fails when one is left or a goal
# is missed.
MUTATE_DIR := .mutate
mutate: $(INSTALLED)
	rm -rf $(MUTATE_DIR) && mkdir $(MUTATE_DIR)
	for path in functions tests emulator infra samples bench app.py cdk.json pyproject.toml README.md; do ln -s ../$$path $(MUTATE_DIR)/$$path; done
	ln -s ../functions $(MUTATE_DIR)/src
	cd $(MUTATE_DIR) && time nice -n 19 $(abspath $(VENV))/bin/mutmut run --max-children 1 $(MUTANTS) > mutmut.log 2>&1 \
		|| { tail -40 mutmut.log; exit 1; }
	$(PY) -m tests.mutation.report $(MUTATE_DIR)

unit: $(INSTALLED)
	$(VENV)/bin/pytest -m "not integration"

BENCH_STAMP := $(VENV)/.bench-stamp

$(BENCH_STAMP): $(INSTALLED)
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[dev,infra,bench]'
	@touch $(BENCH_STAMP)

# Figures as JSON lines, each process pinned to one core; polars and DuckDB (the `bench` extra) as yardsticks.
bench: $(BENCH_STAMP)
	$(PY) bench/run.py

# The main job on the embedded emulator: deploy the stack into moto, play an attack, show the deny log.
demo: $(INSTALLED)
	$(PY) -m emulator.demo

# The same, leaving the emulator running for the CLI (Ctrl-C stops it).
demo-keep: $(INSTALLED)
	$(PY) -m emulator.demo --keep

# Regenerates the bundled capture (deterministic).
sample: $(INSTALLED)
	$(PY) -m emulator.traffic samples/attack.log.gz

# cdk.json's context and the README's settings table, from functions/floodgate/settings_table.py.
docs: $(INSTALLED)
	$(PY) -m infra.docs

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis cdk.out .bench .mutate .coverage .coverage.* .coverage-html
