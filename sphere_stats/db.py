"""Database helpers that every app shares."""

import re
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
from django.db import connection


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
