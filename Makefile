# The two commands of the README: `make run` and `make test`. Both install what they need.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(CURDIR)/$(VENV)/bin
STAMP := $(VENV)/.installed
MANIFEST := dbt/target/manifest.json
DBT_SOURCES := $(shell find dbt -type f \( -name '*.sql' -o -name '*.yml' \) -not -path 'dbt/target/*' -not -path 'dbt/logs/*')

export DATA_PLATFORM_HOME ?= $(CURDIR)/.data_platform
export DAGSTER_HOME ?= $(DATA_PLATFORM_HOME)/dagster_home

.PHONY: install run test lint bench clean

install: $(STAMP) $(MANIFEST)

# Re-installs only when the package definition changed: `make install` is quick otherwise.
$(STAMP): setup.py pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check --upgrade pip
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $@

# The dbt manifest is built here, once, never when the Definitions load. dbt-duckdb names the
# database after the warehouse file, so the profile is rendered with the configured path.
$(MANIFEST): $(STAMP) $(DBT_SOURCES)
	PATH="$(BIN):$$PATH" DATA_PLATFORM_WAREHOUSE="$$($(BIN)/python -c 'from data_platform.settings import load_settings; print(load_settings().warehouse)')" \
		$(BIN)/dagster-dbt project prepare-and-package --file data_platform/assets/dbt_project.py
	touch $@

# The Prometheus exporter (`data-platform metrics`) runs beside dagster dev and stops with it.
run: install
	mkdir -p "$(DAGSTER_HOME)"
	cp dagster.yaml "$(DAGSTER_HOME)/dagster.yaml"
	$(BIN)/data-platform simulate --if-empty
	$(BIN)/data-platform metrics & metrics=$$!; \
		trap 'kill $$metrics 2>/dev/null' EXIT; \
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
