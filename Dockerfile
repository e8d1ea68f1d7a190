# The web service: gunicorn + Django, static files served by WhiteNoise.
# Built by docker-compose.yml; configuration comes from the environment (.env).
FROM python:3.11-slim

# GUNICORN_CMD_ARGS: gunicorn reads its settings file (workers, threads,
# keep-alive) in deploy/web-entrypoint.sh's `exec gunicorn` too.
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    GUNICORN_CMD_ARGS="--config deploy/gunicorn.conf.py" \
    WEB_CONCURRENCY=2 \
    WEB_THREADS=8 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

# Dependencies first, so a code change does not reinstall them.
COPY pyproject.toml README.md ./
RUN pip install .

COPY . .

# collectstatic writes every static file under a hashed name with .gz and .br
# copies (CompressedManifestStaticFilesStorage), which WhiteNoise serves with a
# year's Cache-Control; pages refuse to render without its manifest. It only
# reads settings: a placeholder URL and key keep it from starting the embedded
# database or refusing the missing key at build time.
RUN DATABASE_URL=postgresql://build@build/build SECRET_KEY=build-only-placeholder \
    python manage.py collectstatic --no-input -v 0 \
 && useradd --system --uid 10001 --home-dir /app app \
 && mkdir -p /app/var && chown -R app /app/var

USER app
EXPOSE 8000

HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
  CMD python -c "import urllib.request as u; u.urlopen(u.Request('http://127.0.0.1:8000/healthz', headers={'Host': 'localhost'}), timeout=2)"

CMD ["sh", "deploy/web-entrypoint.sh"]
