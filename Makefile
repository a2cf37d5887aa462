# The two commands of the README: `make run` (serve on the embedded default) and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# Browser tests drive Debian's Chromium (never a downloaded browser build); the proxy test runs
# Debian's nginx in front of two services (it starts its own, on a free port).
CHROMIUM := /usr/bin/chromium
NGINX    := /usr/sbin/nginx
# `python -m bench` loads HTTP routes with wrk (its smoke run is part of the suite).
WRK      := /usr/bin/wrk
# The TypeScript side of the generated-client test: openapi-typescript and tsc, pinned by the
# lock file (npm ci), from the npm registry.
JS_TOOLS := clients/js/node_modules/.installed
# pytest-xdist workers: each is a run of its own (tests/resources.py). Most tests wait on real
# servers, so 3 beat the 2 cores; 4 measured slower, with timing failures under load.
TEST_WORKERS ?= 3

.PHONY: run test lint lock clean conformance

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# Reinstall when the dependencies change: exactly the pinned versions of the lock file (the
# image installs requirements.lock, its runtime subset), then this project itself.
$(STAMP): pyproject.toml requirements-dev.lock | $(BIN)/python
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements-dev.lock
	$(BIN)/python -m pip install --quiet --no-deps -e .
	touch $@

## Set up, migrate the SQLite file in var/ and serve on http://127.0.0.1:8000 (Ctrl-C stops).
run: $(STAMP) .env
	$(BIN)/python -m app serve --migrate

# The development default for every command run from the checkout (serve, init-db, clear-db,
# create-admin): settings read .env; written once, with a random key, never overwritten.
.env:
	printf 'APP_ENV=development\nSECRET_KEY=%s\n' \
	  "$$($(BIN)/python -c 'import secrets; print(secrets.token_urlsafe(32))')" > $@

## Refresh the lock files from pyproject.toml (keeps current pins; `make lock UPGRADE=--upgrade`
## moves every pin to the newest allowed release).
lock: $(STAMP)
	$(BIN)/uv pip compile --quiet $(UPGRADE) --python-version 3.11 pyproject.toml -o requirements.lock
	$(BIN)/uv pip compile --quiet $(UPGRADE) --python-version 3.11 pyproject.toml --extra dev \
	  -o requirements-dev.lock

## Set up and run the whole suite (needs MariaDB on 127.0.0.1:3306 and Redis on 6379).
# The app's bytecode is written first: the suite starts some 300 Python processes that import
# it, and with PYTHONDONTWRITEBYTECODE set none would write it (0.1-0.15 s of CPU each).
test: $(STAMP) lint $(CHROMIUM) $(NGINX) $(WRK) $(JS_TOOLS)
	$(BIN)/python -m compileall -q app bench
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist worksteal --durations=15

## Autobahn|Testsuite's fuzzingclient against the websockets, bare Hypercorn as the reference
## (conformance/run.py; needs Python 2.7, and says so and exits 0 without it).
conformance: $(STAMP)
	$(BIN)/python conformance/run.py

$(CHROMIUM):
	apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium

$(NGINX):
	apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx-light

$(WRK):
	apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk

$(JS_TOOLS): clients/js/package-lock.json
	npm ci --prefix clients/js --no-audit --no-fund --silent
	touch $@

lint: $(STAMP)
	$(BIN)/ruff check app tests alembic bench deploy conformance
	$(BIN)/ruff format --check app tests alembic bench deploy conformance
	$(BIN)/mypy
	$(BIN)/lint-imports --no-cache
	$(BIN)/hadolint Dockerfile

clean:
	rm -rf $(VENV) var .pytest_cache .ruff_cache clients/js/node_modules
