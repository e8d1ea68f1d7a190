# sphere_stats: `make run` and `make test` are all a newcomer needs.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PORT   ?= 8000
WORKERS ?= 2
# The local server runs with DEBUG off, as in production; these two values
# make that safe on 127.0.0.1 only.
LOCAL_ENV = SECRET_KEY="$$(cat var/secret_key)" ALLOWED_HOSTS="$${ALLOWED_HOSTS:-127.0.0.1,localhost}"

.PHONY: run test install lint format migrate bench stop-db clean-db FORCE

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e ".[dev]"
	touch $@

install: $(VENV)/.installed

# Mode 0600: the key signs sessions and password-reset links, so no other
# local user may read it. A new key is written under umask 077 (readable by
# others not even for a moment); a key file made before keeps its key and
# gets its mode fixed, hence FORCE, and a key only when the file is empty.
var/secret_key: FORCE
	@mkdir -p var
	@test -s $@ || (umask 077 && $(BIN)/python -c "import secrets; print(secrets.token_urlsafe(50))" > $@)
	@chmod 600 $@

FORCE:

migrate: install
	$(BIN)/python manage.py migrate --no-input

run: install var/secret_key migrate
	$(BIN)/python manage.py collectstatic --no-input -v 0
	PORT=$(PORT) $(LOCAL_ENV) $(BIN)/python manage.py demo_setup
	@echo "Serving http://127.0.0.1:$(PORT)/  (Ctrl-C to stop)"
# demo_reporter keeps the demo facilities reporting (else the map goes grey
# after 15 minutes); run_worker evaluates the alert rules and sends
# notifications, streams and the weekly report. One shell runs them and
# gunicorn: when gunicorn exits, or on Ctrl-C (which a background job
# ignores), the EXIT trap stops both.
# PROMETHEUS_MULTIPROC_DIR: the workers' ingest counts for /metrics, one
# directory per port, emptied at start by deploy/gunicorn.conf.py.
	$(LOCAL_ENV) $(BIN)/python manage.py demo_reporter & reporter=$$!; \
	$(LOCAL_ENV) $(BIN)/python manage.py run_worker & worker=$$!; \
	trap 'kill $$reporter $$worker 2>/dev/null' EXIT; trap 'exit 130' INT TERM; \
	$(LOCAL_ENV) PROMETHEUS_MULTIPROC_DIR="$(CURDIR)/var/metrics-$(PORT)" \
		$(BIN)/gunicorn sphere_stats.wsgi --config deploy/gunicorn.conf.py \
		-b 127.0.0.1:$(PORT) -w $(WORKERS) --access-logfile - --graceful-timeout 10

test: install
	$(BIN)/python -m pytest -n 2 $(PYTEST_ARGS)

# The quick benchmarks, their rows rewritten in docs/benchmarks.md (run it on an
# idle machine); BENCH="name ..." runs some, or a long one; bench/run.py --list.
bench: install
	$(BIN)/python bench/run.py $(BENCH) $(BENCH_ARGS)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python manage.py makemigrations --check --dry-run

format: install
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

stop-db: install
	$(BIN)/python -c "from pathlib import Path; from sphere_stats import embedded_db; embedded_db.stop(Path('.'))"
