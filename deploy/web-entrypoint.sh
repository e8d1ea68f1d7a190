#!/bin/sh
# Start of the web container: apply migrations, then serve.
# Several replicas starting at once: run migrations once beforehand
# (`docker compose run --rm web python manage.py migrate`) and set
# MIGRATE_ON_START=false on the replicas.
set -eu

if [ "${MIGRATE_ON_START:-true}" = "true" ]; then
  python manage.py migrate --no-input
fi

# The workers' ingest counts for /metrics, summed at each scrape
# (docs/metrics.md); deploy/gunicorn.conf.py creates and empties it at start.
# Exported here, for gunicorn alone: other commands count in their own process.
export PROMETHEUS_MULTIPROC_DIR="${PROMETHEUS_MULTIPROC_DIR:-/tmp/sphere_stats_metrics}"

# Workers, threads and keep-alive come from deploy/gunicorn.conf.py
# (GUNICORN_CMD_ARGS in the Dockerfile), which reads WEB_CONCURRENCY and
# WEB_THREADS: one place for them, as `make run` and bench/ use.
exec gunicorn sphere_stats.wsgi \
  --bind 0.0.0.0:8000 \
  --timeout 300 \
  --graceful-timeout 30 \
  --forwarded-allow-ips '*' \
  --access-logfile - \
  --error-logfile -
