"""How an export streams from PostgreSQL (audit/export.py): many rows,
past a web request's statement timeout, and an error in the middle of
the rows ending the download instead of passing for its end."""

import csv
import io

import psycopg
import pytest
from django.db import connection, transaction

from audit.export import _SETTINGS_SQL, CHUNK_BYTES, Export
from audit.models import Event

pytestmark = pytest.mark.django_db

ROWS = 20_000


def many_events(n: int = ROWS, *, last_caller: str = "glawler") -> None:
    """n logins a second apart, the oldest by `last_caller` (raw SQL: the
    ingest path would take the test minutes)."""
    with connection.cursor() as cursor:
        cursor.execute(
            """
            INSERT INTO events (event_uuid, timestamp, event_type, caller, subject,
                                subject_type, target, success, error_message, payload)
            SELECT gen_random_uuid(), timestamp '2026-04-23 20:00Z' - i * interval '1 second',
                   'user_login', CASE WHEN i = %(n)s THEN %(last)s ELSE 'glawler' END,
                   'glawler', 'user', NULL, true, NULL, '{"note": "-x"}'
            FROM generate_series(1, %(n)s) AS i
            """,
            {"n": n, "last": last_caller},
        )


def statement_timeout() -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT current_setting('statement_timeout')")
        return cursor.fetchone()[0]


def test_an_export_compiles_as_the_server_says_and_the_session_gets_its_own_back(api_client):
    # The application's sessions turn JIT off (settings.DB_JIT); an export's
    # millions of rows are what it pays off on, so there the server decides.
    many_events(100)
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT current_setting('jit'), reset_val FROM pg_settings WHERE name = 'jit'"
        )
        session, server = cursor.fetchone()
    assert session == "off"
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(_SETTINGS_SQL, {"zone": "UTC", "timeout": "0", "jit": None})
        cursor.execute("SELECT current_setting('jit')")
        assert cursor.fetchone()[0] == server
        transaction.set_rollback(True)
    body = b"".join(api_client.get("/api/v1/events/export?format=csv").streaming_content)
    assert body.count(b"\n") == 101
    with connection.cursor() as cursor:
        cursor.execute("SELECT current_setting('jit')")
        assert cursor.fetchone()[0] == "off"


def test_a_download_of_many_rows_holds_every_row_in_order(api_client):
    many_events()
    response = api_client.get("/api/v1/events/export?format=csv&fields=payload.note")
    chunks = list(response.streaming_content)
    assert len(chunks) > 1 and max(len(c) for c in chunks) < 2 * CHUNK_BYTES
    rows = list(csv.DictReader(io.StringIO(b"".join(chunks).decode())))
    assert len(rows) == ROWS
    assert [r["timestamp"] for r in rows] == sorted((r["timestamp"] for r in rows), reverse=True)
    assert {r["payload.note"] for r in rows} == {"'-x"}


def test_an_export_outlasts_the_web_requests_statement_timeout(api_client):
    many_events(5 * ROWS)
    with connection.cursor() as cursor:
        # Far shorter than COPY needs for the rows (the export lifts it), and
        # long enough for the short queries before it on a loaded machine.
        cursor.execute("SET statement_timeout = '25ms'")
    body = b"".join(api_client.get("/api/v1/events/export?format=csv").streaming_content)
    assert body.count(b"\n") == 5 * ROWS + 1
    assert statement_timeout() == "25ms"
    with connection.cursor() as cursor:
        cursor.execute("SET statement_timeout = 0")


def test_an_error_in_the_middle_of_the_rows_ends_the_export_with_it():
    many_events(last_caller="boom")
    # The oldest row divides by zero: COPY has sent every other row by then.
    failing = Event.objects.extra(where=["1 / (CASE WHEN caller = 'boom' THEN 0 ELSE 1 END) = 1"])
    export = Export(failing, format="csv")
    export.estimate = 10**6  # as big exports are read: in order from the index, no sort first
    received = 0
    with pytest.raises(psycopg.errors.DivisionByZero):
        for chunk in export.body():
            received += len(chunk)
    assert received > CHUNK_BYTES
