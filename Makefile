# make demo     — set everything up, then run the web demo (throwaway server, worker, gateway):
#                 open the http://127.0.0.1:8765/#key=... link it prints
# make test     — set everything up, lint, type-check, run the suite (twice: embedded Valkey,
#                 then the Redis at 127.0.0.1:6379 when one answers there), browser tests included,
#                 then the tests marked cluster against a 3-master Redis Cluster on loopback,
#                 then the short chaos run (its own server; about 30 s)
# make chaos    — the full chaos run, once with appendfsync everysec, once with always
#                 (about 3 minutes each; docs/chaos.md)
# make browser  — Debian's chromium for the browser tests, if /usr/bin/chromium is missing
# make redis-server — Debian's redis-server (built with TLS) for tests/security, if missing
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
REDIS_URL ?= redis://127.0.0.1:6379/0
CHROMIUM  := /usr/bin/chromium
REDIS_SERVER := /usr/bin/redis-server
SUDO      = $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: setup demo test lint browser redis-server bench chaos clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "notifyq needs Python 3.11+"'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $@

setup: $(VENV)/.installed

demo: setup
	$(BIN)/notifyq demo

# Playwright drives this browser; it never downloads one (no `playwright install`).
browser:
	@test -x $(CHROMIUM) || $(SUDO) apt-get install -y chromium \
		|| { $(SUDO) apt-get update && $(SUDO) apt-get install -y chromium; }
	@test -x $(CHROMIUM) || { echo "$(CHROMIUM) is still missing" >&2; exit 1; }

# tests/security start their own TLS server with it (never the one at $(REDIS_URL))
redis-server:
	@test -x $(REDIS_SERVER) || $(SUDO) apt-get install -y redis-server \
		|| { $(SUDO) apt-get update && $(SUDO) apt-get install -y redis-server; }
	@test -x $(REDIS_SERVER) || { echo "$(REDIS_SERVER) is still missing" >&2; exit 1; }

lint: setup
	$(BIN)/ruff check notifyq tests bench examples
	$(BIN)/ruff format --check notifyq tests bench examples
	$(BIN)/mypy

test: lint browser redis-server
	$(BIN)/pytest
	@if $(BIN)/python -c 'import redis,sys; redis.Redis.from_url(sys.argv[1], socket_timeout=2).ping()' $(REDIS_URL) 2>/dev/null; then \
		echo "== again against $(REDIS_URL)"; \
		NOTIFYQ_TEST_REDIS_URL=$(REDIS_URL) $(BIN)/pytest; \
	else \
		echo "== no Redis answers at $(REDIS_URL): the embedded Valkey run above is the only one"; \
	fi
	@echo "== the tests marked cluster, against a Redis Cluster of 3 masters the run starts on loopback"
	NOTIFYQ_TEST_CLUSTER=1 $(BIN)/pytest -m cluster
	@echo "== the short chaos run (docs/chaos.md)"
	$(BIN)/python -m tests.chaos --short --fsync always

chaos: setup
	$(BIN)/python -m tests.chaos --fsync everysec
	$(BIN)/python -m tests.chaos --fsync always

bench: setup
	$(BIN)/python bench/quick.py

clean:
	rm -rf $(VENV) .bench-venv .pytest_cache .mypy_cache .ruff_cache .hypothesis

# make bench-peers — notifyq against Celery, RQ, arq, SAQ, Dramatiq, huey, taskiq, streaq and
#                    BullMQ on one server (installs them into .bench-venv; bench/peers/README.md)
.PHONY: bench-peers
bench-peers:
	$(PYTHON) bench/peers/run.py
