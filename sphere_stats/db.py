"""Database helpers that every app shares."""

import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
from django.conf import settings
from django.db import OperationalError, connection
from django.db.backends.signals import connection_created
from django.dispatch import receiver


def compact_sql(sql: str) -> str:
    """`sql` without its -- comments and with each run of whitespace one
    space: what is sent for a statement written readably in the source.

    psycopg caches how it parses a statement's placeholders only up to 4 KB
    of text (psycopg._queries.MAX_CACHED_STATEMENT_LENGTH) and re-parses a
    longer one on every execute: for the ingest statement that was a tenth
    of a single-event POST. Only for SQL with no -- inside a string literal.
    """
    return " ".join(re.sub(r"--[^\n]*", "", sql).split())


@contextmanager
def bulk_cursor() -> Iterator[psycopg.Cursor]:
    """A cursor on Django's connection (same transaction) that sends
    parameters apart from the SQL (server-side binding).

    Django's psycopg cursors bind on the client: every value of a 10,000-row
    array parameter is quoted into the SQL text in Python, which cost a third
    of ingest time. Here psycopg's C dumpers send the arrays as they are, and
    a statement run a fifth time on a connection is prepared there
    (`DB_PREPARED_STATEMENTS`). Errors are wrapped as Django's, so callers
    and the 503 middleware see the usual `django.db.OperationalError`.

    The cursor is kept with its connection and reused: a new one re-learns
    how to dump each column type, a quarter of psycopg's time in a
    single-event POST. A block opened inside another gets a cursor of its own,
    so the outer one's results stay readable.
    """
    connection.ensure_connection()
    raw = connection.connection
    kept = getattr(connection, "_bulk_cursor", None)
    if kept is not None and kept.connection is raw and not kept.closed:
        cursor = kept
        connection._bulk_cursor = None  # in use: a nested block makes its own
    else:
        cursor = psycopg.Cursor(raw)
    try:
        with connection.wrap_database_errors:
            yield cursor
    except BaseException:
        cursor.close()
        raise
    if connection.connection is raw and getattr(connection, "_bulk_cursor", None) is None:
        connection._bulk_cursor = cursor
    else:
        cursor.close()


# --- bounded waits ---------------------------------------------------------------------
#
# PostgreSQL's statement_timeout ends a slow query, but a server that does not
# run at all (stopped, swapping, behind a dead network) cannot enforce it, and
# the kernel still acknowledges what is sent to it, so TCP keepalives and
# tcp_user_timeout do not fire either: a request would wait for as long as the
# server is frozen. So every wait of a web request on its connection is also
# bounded in the client (settings.DB_WAIT_TIMEOUT_MS), and a worker whose
# database did not answer presumes it down for settings.DB_RETRY_SECONDS,
# answering 503 at once instead of queueing requests behind more timeouts.
#
# Only web requests are bounded (sphere_stats.handlers.Application marks
# them): management commands such as migrate or rebuild_aggregates run
# statements of minutes, and never set statement_timeout at all.

_local = threading.local()
_unreachable_until = 0.0
# What psycopg's Connection.wait(timeout=...) raises when the time is up (a
# psycopg.OperationalError; private, so named once here).
_WAIT_TIMEOUT = psycopg.errors._WaitTimeout


class DatabaseTimeout(OperationalError):
    """PostgreSQL did not answer within the client-side bound: a
    django.db.OperationalError, which the 503 handlers already catch."""


class BoundedConnection(psycopg.Connection):
    """A psycopg connection whose every wait on the server (query, fetch,
    commit) ends after wait_limit() seconds, when there is one."""

    def wait(self, gen, *args, **kwargs):
        limit = wait_limit()
        if limit is None or kwargs.get("timeout") is not None or len(args) > 1:
            return super().wait(gen, *args, **kwargs)
        kwargs["timeout"] = limit
        try:
            return super().wait(gen, *args, **kwargs)
        except _WAIT_TIMEOUT:
            # Mid-protocol: the connection's state is unknown, so it is closed
            # (never reused) and Django opens a new one when the server is back.
            self.close()
            database_unreachable()
            # Not a psycopg error: Django's health check (is_usable) would
            # catch one and reconnect at once, adding a connect timeout.
            raise DatabaseTimeout(f"PostgreSQL did not answer within {limit:g} s.") from None


def wait_limit() -> float | None:
    """Seconds this thread may wait for one answer of PostgreSQL; None: no bound."""
    limit = getattr(_local, "limit", None)
    if limit is not None:
        return limit
    if getattr(_local, "web", False) and settings.DB_WAIT_TIMEOUT_MS > 0:
        return settings.DB_WAIT_TIMEOUT_MS / 1000
    return None


@contextmanager
def deadline(seconds: float) -> Iterator[None]:
    """Bound each wait on PostgreSQL in the block to `seconds` (healthz's short one)."""
    kept = getattr(_local, "limit", None)
    _local.limit = seconds
    try:
        yield
    finally:
        _local.limit = kept


@contextmanager
def web_request() -> Iterator[None]:
    """Mark the block as serving a web request: its waits are bounded, a new
    connection gets the web's statement timeout, and the breaker applies."""
    kept = getattr(_local, "web", False)
    _local.web = True
    try:
        yield
    finally:
        _local.web = kept


def in_web_request() -> bool:
    return getattr(_local, "web", False)


def database_unreachable() -> None:
    """Note that PostgreSQL did not answer: this process answers 503 at once
    for the next settings.DB_RETRY_SECONDS, then tries again."""
    global _unreachable_until
    _unreachable_until = time.monotonic() + settings.DB_RETRY_SECONDS


def presumed_unreachable() -> bool:
    return time.monotonic() < _unreachable_until


def reset_unreachable() -> None:
    global _unreachable_until
    _unreachable_until = 0.0


def open_connection() -> None:
    """Connect now, replacing a connection a timeout closed: a connect that
    fails surfaces here, before the view (DatabaseUnavailableMiddleware)."""
    raw = connection.connection
    if raw is not None and raw.closed and not connection.in_atomic_block:
        connection.close()
    connection.ensure_connection()


@receiver(connection_created, dispatch_uid="sphere_stats.db.bounded_connection")
def _bound_new_connection(sender, connection, **kwargs) -> None:
    if connection.vendor != "postgresql":
        return
    raw = connection.connection
    if type(raw) is psycopg.Connection:
        # Django opens psycopg.Connection itself and has no hook for the
        # class; BoundedConnection only overrides a method, adds no state.
        raw.__class__ = BoundedConnection
    if in_web_request() and settings.DB_STATEMENT_TIMEOUT_MS > 0:
        # For the session: the connection lives on in this web worker thread.
        raw.execute(
            "SELECT set_config('statement_timeout', %(ms)s, false)",
            {"ms": str(settings.DB_STATEMENT_TIMEOUT_MS)},
        )
