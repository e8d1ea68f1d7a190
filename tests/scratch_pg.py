"""Scratch PostgreSQL servers for tests that need a server of their own: the
plumbing of bench/servers.py and bench/fault_freeze.py (initdb + pg_ctl on a
free loopback port, the app under gunicorn in front of it), plus a streaming
replica of one.

    with scratch_postgres() as primary, streaming_replica(primary) as replica:
        ...
"""

import contextlib
from collections.abc import Iterator
from pathlib import Path

from bench.fault_freeze import App, app_env, logged_in_session, make_event, running_app
from bench.servers import (
    ScratchPostgres,
    free_port,
    owned_directory,
    removed_after,
    scratch_postgres,
    serving_static_from,
)

__all__ = [
    "App",
    "ScratchPostgres",
    "app_env",
    "free_port",
    "log_of",
    "logged_in_session",
    "make_event",
    "run_sql",
    "running_app",
    "scratch_postgres",
    "serving_static_from",
    "stop",
    "streaming_replica",
]


@contextlib.contextmanager
def streaming_replica(primary: ScratchPostgres) -> Iterator[ScratchPostgres]:
    """A hot standby of `primary` on another loopback port: pg_basebackup
    (-R writes primary_conninfo and standby.signal) then streaming
    replication. Its log, `<data>/../log`, records every connection and
    statement, so a test can see what reached it. Removed after.

    initdb's defaults already allow it: wal_level=replica, max_wal_senders=10
    and a `host replication all 127.0.0.1/32 trust` line in pg_hba.conf."""
    directory = owned_directory("replica-", primary.user)
    replica = ScratchPostgres(
        primary.bin, directory / "data", free_port(), primary.user, primary.database
    )
    with removed_after(replica):
        replica.run(
            "pg_basebackup", "-h", "127.0.0.1", "-p", str(primary.port), "-U", "postgres",
            "-D", str(replica.data), "-R", "-X", "stream", "-c", "fast", "--no-sync",
        )  # fmt: skip
        replica.start("-c hot_standby=on", "-c log_connections=on", "-c log_statement=all")
        yield replica


def stop(server: ScratchPostgres) -> None:
    """Stop `server` at once, as a crash or a lost host would (no shutdown
    checkpoint, every connection cut)."""
    server.stop()


def log_of(server: ScratchPostgres) -> Path:
    return server.log


def run_sql(server: ScratchPostgres, sql: str) -> list[tuple]:
    import psycopg

    with psycopg.connect(server.url, autocommit=True, connect_timeout=5) as conn:
        cursor = conn.execute(sql)
        return cursor.fetchall() if cursor.description else []
