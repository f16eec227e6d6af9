# The two commands of the README: `make run` and `make test`. Both install what they need.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(CURDIR)/$(VENV)/bin
STAMP := $(VENV)/.installed

export DATA_PLATFORM_HOME ?= $(CURDIR)/.data_platform
export DAGSTER_HOME ?= $(DATA_PLATFORM_HOME)/dagster_home

.PHONY: install run test lint bench clean

install: $(STAMP)

# Re-installs only when the package definition changed: `make install` is quick otherwise.
$(STAMP): setup.py pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check --upgrade pip
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $@

run: install
	mkdir -p "$(DAGSTER_HOME)"
	cp dagster.yaml "$(DAGSTER_HOME)/dagster.yaml"
	$(BIN)/data-platform simulate --if-empty
	$(BIN)/dagster dev --host 127.0.0.1 --port 3000 -w workspace.yaml

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test: lint
	$(BIN)/python -m pytest -n 2 --dist loadfile

bench: install
	$(BIN)/python -m data_platform_tests.bench

clean:
	rm -rf $(VENV) .data_platform dbt/target dbt/logs
