"""Database helpers that every app shares."""

import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import datetime, timedelta

import psycopg
from django.conf import settings
from django.core.signals import request_finished, request_started
from django.db import DEFAULT_DB_ALIAS, InterfaceError, OperationalError, connection, connections
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.backends.signals import connection_created
from django.dispatch import receiver
from django.utils import timezone


def compact_sql(sql: str) -> str:
    """`sql` without its -- comments and with each run of whitespace one
    space: what is sent for a statement written readably in the source.

    psycopg caches how it parses a statement's placeholders only up to 4 KB
    of text (psycopg._queries.MAX_CACHED_STATEMENT_LENGTH) and re-parses a
    longer one on every execute: for the ingest statement that was a tenth
    of a single-event POST. Only for SQL with no -- inside a string literal.
    """
    return " ".join(re.sub(r"--[^\n]*", "", sql).split())


# A deadlock or a serialization failure: PostgreSQL rolled the statement back
# whole, and running it again is safe.
RETRY_STATES = ("40P01", "40001")


def sqlstate(exc: Exception) -> str | None:
    """The SQLSTATE of the psycopg error a Django database error wraps."""
    return getattr(getattr(exc, "__cause__", None), "sqlstate", None)


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
            self.unreachable()
            # Not a psycopg error: Django's health check (is_usable) would
            # catch one and reconnect at once, adding a connect timeout.
            raise DatabaseTimeout(f"PostgreSQL did not answer within {limit:g} s.") from None

    def unreachable(self) -> None:
        database_unreachable()


class BoundedReplicaConnection(BoundedConnection):
    """The same on the read replica, whose silence sends reads to the primary
    (replica_unreachable) instead of turning every request away with a 503."""

    def unreachable(self) -> None:
        replica_unreachable()


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
        raw.__class__ = (
            BoundedReplicaConnection if connection.alias == REPLICA else BoundedConnection
        )
    # For the session: the connection lives on in this thread.
    session = [] if settings.DB_JIT else ["set_config('jit', 'off', false)"]
    web = in_web_request()
    if web and settings.DB_STATEMENT_TIMEOUT_MS > 0:
        session.append("set_config('statement_timeout', %(ms)s, false)")
    if web and not settings.DB_PARALLEL_QUERY:
        # A page's statements run side by side on threads of their own
        # (dashboards/parallel.py) and take milliseconds: starting parallel
        # workers for one of them took longer than its work, and the
        # workers took CPUs from the page's other stats. Commands (rebuilds,
        # imports) connect outside a request and keep the server's setting.
        session.append("set_config('max_parallel_workers_per_gather', '0', false)")
    if session:
        raw.execute(f"SELECT {', '.join(session)}", {"ms": str(settings.DB_STATEMENT_TIMEOUT_MS)})


# --- the read replica ------------------------------------------------------------------
#
# With DATABASE_REPLICA_URL, a GET of a page, a stat, the read API or an
# export (sphere_stats.routers.reads_from_replica) reads the audit,
# dashboards and facilities tables from a PostgreSQL streaming replica;
# everything else (ingest, the admin, logins, sessions, tokens, rate limits,
# every write) uses the primary. The choice is made once per request, when it
# starts, so one page never mixes the two; and only while the replica answers
# and is at most REPLICA_MAX_LAG_SECONDS behind. Each process checks that at
# most every REPLICA_CHECK_SECONDS (one short query on the replica), so a dead
# replica costs one failed connect per process and interval, not one per
# request.

REPLICA = "replica"
_read_alias: ContextVar[str] = ContextVar("sphere_stats_read_alias", default=DEFAULT_DB_ALIAS)

# Seconds behind the primary. While the replica has replayed all it received,
# it is current (pg_last_xact_replay_timestamp would otherwise grow while the
# primary is idle); otherwise the age of the last transaction it replayed,
# an upper bound. Without a WAL receiver (the primary is gone, or the link)
# nothing new arrives, so it counts as behind since its last replay.
REPLICA_LAG_SQL = """
SELECT CASE
         WHEN NOT pg_is_in_recovery() THEN 0
         WHEN pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn()
              AND EXISTS (SELECT FROM pg_stat_wal_receiver WHERE status = 'streaming') THEN 0
         ELSE coalesce(extract(epoch FROM now() - pg_last_xact_replay_timestamp()), 0)
       END::float8
"""
# Bound of each wait of the check: a frozen replica is given up on quickly.
REPLICA_CHECK_WAIT_SECONDS = 1.0
# A page read from a replica further behind than this says how far.
REPLICA_NOTE_SECONDS = 5


@dataclass(frozen=True)
class ReplicaState:
    status: str  # "ok", "lagging" (behind more than allowed), "down" or "none"
    lag_seconds: float | None
    checked_at: float  # time.monotonic()

    def as_json(self) -> dict:
        lag = None if self.lag_seconds is None else round(self.lag_seconds, 1)
        return {"status": self.status, "lag_seconds": lag}


_replica_state: ReplicaState | None = None
_replica_check = threading.Lock()


def replica_configured() -> bool:
    return REPLICA in settings.DATABASES


def read_alias() -> str:
    """The database this request reads its pages' data from."""
    return _read_alias.get()


def read_connection() -> BaseDatabaseWrapper:
    """The connection for raw SQL that reads what the pages show: the
    replica when this request was routed there, else the primary."""
    return connections[read_alias()]


@contextmanager
def reading_from(alias: str) -> Iterator[None]:
    """Read the pages' data from `alias` in the block (tests, commands)."""
    token = _read_alias.set(alias)
    try:
        yield
    finally:
        _read_alias.reset(token)


def replica_state() -> ReplicaState:
    """The replica's state as this process last saw it, checked again when
    older than REPLICA_CHECK_SECONDS. A thread that finds another checking
    uses the previous answer rather than queue behind it."""
    global _replica_state
    if not replica_configured():
        return ReplicaState("none", None, time.monotonic())
    state = _replica_state
    if state is not None and time.monotonic() - state.checked_at < settings.REPLICA_CHECK_SECONDS:
        return state
    if not _replica_check.acquire(blocking=state is None):
        return state
    try:
        state = _replica_state
        if state is None or time.monotonic() - state.checked_at >= settings.REPLICA_CHECK_SECONDS:
            _replica_state = state = _check_replica()
    finally:
        _replica_check.release()
    return state


def _check_replica() -> ReplicaState:
    replica = connections[REPLICA]
    try:
        with deadline(REPLICA_CHECK_WAIT_SECONDS):
            raw = replica.connection
            if raw is not None and raw.closed and not replica.in_atomic_block:
                replica.close()
            with replica.cursor() as cursor:
                cursor.execute(REPLICA_LAG_SQL)
                (lag,) = cursor.fetchone()
    except (OperationalError, InterfaceError):
        replica.close()  # a new connection next time, not this broken one
        return ReplicaState("down", None, time.monotonic())
    status = "ok" if lag <= settings.REPLICA_MAX_LAG_SECONDS else "lagging"
    return ReplicaState(status, lag, time.monotonic())


def _open_replica() -> bool:
    """Connect to the replica now, or check that the kept connection still
    works (the health check Django would run at the first query): a replica
    that went away since the last check sends this request to the primary,
    not into a 503."""
    replica = connections[REPLICA]
    try:
        with deadline(REPLICA_CHECK_WAIT_SECONDS), replica.wrap_database_errors:
            raw = replica.connection
            if raw is not None and raw.closed and not replica.in_atomic_block:
                replica.close()
            replica.close_if_health_check_failed()
            replica.ensure_connection()
    except (OperationalError, InterfaceError):
        replica.close()
        replica_unreachable()
        return False
    return True


def replica_unreachable() -> None:
    """The replica did not answer: reads go to the primary until the next check."""
    global _replica_state
    _replica_state = ReplicaState("down", None, time.monotonic())


def replica_lag_note() -> tuple[datetime, float] | None:
    """(as of when, seconds behind) when this request reads from a replica
    more than REPLICA_NOTE_SECONDS behind; None when its data is current."""
    if read_alias() != REPLICA:
        return None
    lag = replica_state().lag_seconds
    if lag is None or lag < REPLICA_NOTE_SECONDS:
        return None
    return timezone.now() - timedelta(seconds=lag), lag


@receiver(request_started, dispatch_uid="sphere_stats.db.choose_read_database")
def _choose_read_database(sender, environ=None, **kwargs) -> None:
    # Set on every request, so nothing leaks from the thread's previous one.
    alias = DEFAULT_DB_ALIAS
    if environ is not None and replica_configured():
        from sphere_stats.routers import reads_from_replica

        method, path = environ.get("REQUEST_METHOD", ""), environ.get("PATH_INFO", "")
        # The check last: it costs a query on the replica now and then.
        if reads_from_replica(method, path) and replica_state().status == "ok" and _open_replica():
            alias = REPLICA
    _read_alias.set(alias)


@receiver(request_finished, dispatch_uid="sphere_stats.db.forget_read_database")
def _forget_read_database(sender, **kwargs) -> None:
    global _replica_state
    if _read_alias.get() == REPLICA:
        # Django closed the replica connection after an error (it went away,
        # or a timeout closed it; errors_occurred stays set until the next
        # connect): check it again on the next request instead of trusting
        # the last check.
        replica = connections[REPLICA]
        if replica.errors_occurred and (replica.connection is None or replica.connection.closed):
            _replica_state = None
    _read_alias.set(DEFAULT_DB_ALIAS)
