# The two commands of the README: `make run` (serve on the embedded default) and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# Browser tests drive Debian's Chromium (never a downloaded browser build).
CHROMIUM := /usr/bin/chromium

.PHONY: run test lint clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# Reinstall when the dependencies change.
$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

## Set up, migrate the SQLite file in var/ and serve on http://127.0.0.1:8000 (Ctrl-C stops).
run: $(STAMP)
	APP_ENV=$${APP_ENV:-development} $(BIN)/python -m app serve --migrate

## Set up and run the whole suite (needs MariaDB on 127.0.0.1:3306 and Redis on 6379).
test: $(STAMP) lint $(CHROMIUM)
	$(BIN)/python -m pytest

$(CHROMIUM):
	apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium

lint: $(STAMP)
	$(BIN)/ruff check app tests alembic bench
	$(BIN)/ruff format --check app tests alembic bench
	$(BIN)/mypy
	$(BIN)/hadolint Dockerfile

clean:
	rm -rf $(VENV) var .pytest_cache .ruff_cache
