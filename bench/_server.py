"""Shared bench plumbing: a scratch database, a gunicorn server, a token.

Benchmarks never touch the development database: each uses its own scratch
database on the same PostgreSQL server (the embedded one unless DATABASE_URL
is set), migrated fresh, and a gunicorn bound to 127.0.0.1 only.
"""

import os
import secrets
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import servers  # noqa: E402


def base_url() -> str:
    url = os.environ.get("DATABASE_URL")
    if url:
        return url
    from sphere_stats import embedded_db

    return embedded_db.start(ROOT)


def scratch_database(name: str, *, fresh: bool = True) -> str:
    """Create (or reuse) database `name` next to the configured one; its URL."""
    parts = urlsplit(base_url())
    admin = urlunsplit(parts._replace(path="/postgres"))
    with psycopg.connect(admin, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone()
        if exists and fresh:
            conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
        if not exists or fresh:
            conn.execute(f'CREATE DATABASE "{name}"')
    url = urlunsplit(parts._replace(path=f"/{name}"))
    manage("migrate", "--no-input", "-v", "0", database_url=url)
    return url


def psycopg_url(url: str) -> str:
    """A URL psycopg understands (a socket directory is given as ?host=)."""
    parts = urlsplit(url)
    if parts.hostname and parts.hostname.startswith("%2f"):
        from urllib.parse import unquote

        host = unquote(parts.netloc.split("@")[-1])
        user = parts.netloc.split("@")[0] if "@" in parts.netloc else ""
        return f"postgresql://{user}@{parts.path}?host={host}"
    return url


def env_for(url: str) -> dict:
    return {
        **os.environ,
        "DATABASE_URL": url,
        "SECRET_KEY": secrets.token_urlsafe(50),
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "RATE_LIMIT_INGEST": os.environ.get("RATE_LIMIT_INGEST", "0"),
        "RATE_LIMIT_EXPORT": os.environ.get("RATE_LIMIT_EXPORT", "0"),
    }


def manage(*args: str, database_url: str) -> str:
    result = subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=env_for(database_url),
        capture_output=True,
        text=True,
    )
    if result.returncode:
        raise RuntimeError(f"manage.py {' '.join(args)} failed:\n{result.stderr[-3000:]}")
    return result.stdout


def token(database_url: str, name: str = "bench") -> str:
    out = manage(
        "create_api_token",
        f"{name}-{time.time_ns()}",
        "--scope",
        "ingest",
        "--scope",
        "read",
        database_url=database_url,
    )
    return out.strip().splitlines()[-1]


@contextmanager
def gunicorn(database_url: str, workers: int = 4, threads: int = 1, extra_args: tuple = ()):
    """gunicorn's defaults (or `extra_args`' --config) on a free loopback
    port, preloaded; yields its base URL and process."""
    args = ("--threads", str(threads), "--log-level", "warning", *extra_args)
    with servers.gunicorn(env_for(database_url), workers=workers, config=None, args=args) as served:
        yield served


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]
