"""When PostgreSQL is down or drops a connection: 503 with Retry-After (JSON
for the API, a friendly page elsewhere), nothing partial stored, and the app
recovers by itself when the database is back.

These are real connection failures: the connection is pointed at a port
where nothing listens, or its server process is terminated mid-request.
"""

import json
import threading
import time
from contextlib import contextmanager

import psycopg
import pytest
from django.db import connection, connections
from django.test import Client

from audit.ingest_copy import COPY_MIN_ROWS
from audit.models import Event
from sphere_stats import db, views
from sphere_stats.models import ApiToken
from tests.factories import like

event = like(timestamp="2026-05-01T12:00:00Z")


@contextmanager
def database_down():
    """Point the default connection at a closed port until the block ends."""
    saved = dict(connection.settings_dict)
    connection.close()
    connection.settings_dict.update({"HOST": "127.0.0.1", "PORT": "1"})
    try:
        yield
    finally:
        connection.close()
        connection.settings_dict.clear()
        connection.settings_dict.update(saved)


# Real transactions: a connection is closed and reopened mid-test. The role
# groups the closing flush removes are recreated by post_migrate.
pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def token() -> str:
    return ApiToken.issue("faults", ["ingest", "read"])[1]


def test_ingest_answers_503_with_retry_after_while_the_database_is_down(token):
    client = Client(HTTP_AUTHORIZATION=f"Bearer {token}", raise_request_exception=False)
    sent = event()
    with database_down():
        response = client.post("/api/v1/events", sent, content_type="application/json")
    assert response.status_code == 503
    assert response["Retry-After"] == "5"
    assert response.json() == {
        "error": "The database is unavailable; nothing was written. Retry later.",
        "details": [],
    }
    # Back up: the same request succeeds with no restart of anything.
    again = client.post("/api/v1/events", sent, content_type="application/json")
    assert again.status_code == 201
    assert again.json()["accepted"] == 1


def test_reads_answer_503_too_while_the_database_is_down(token):
    client = Client(HTTP_AUTHORIZATION=f"Bearer {token}", raise_request_exception=False)
    with database_down():
        response = client.get("/api/v1/events")
    assert response.status_code == 503
    assert response.json()["error"].startswith("The database is unavailable")


def test_pages_show_the_friendly_error_page_while_the_database_is_down(viewer):
    client = Client(raise_request_exception=False)
    client.force_login(viewer)
    with database_down():
        response = client.get("/catalog/")
    assert response.status_code == 503
    assert response["Retry-After"] == "5"
    page = response.content.decode()
    assert "Temporarily unavailable" in page
    assert "Nothing you sent has been lost" in page
    assert client.get("/catalog/").status_code == 200


def test_healthz_reports_the_database():
    client = Client(raise_request_exception=False)
    assert client.get("/healthz").json() == {"db": "ok"}
    with database_down():
        response = client.get("/healthz")
    assert response.status_code == 503
    assert response.json() == {"db": "unavailable"}
    assert client.get("/healthz").status_code == 200


# 50 events go in by INSERT, COPY_MIN_ROWS by COPY (audit.ingest).
@pytest.mark.parametrize("size", [50, COPY_MIN_ROWS])
def test_a_batch_whose_connection_dies_mid_insert_stores_nothing_and_can_be_resent(token, size):
    batch = [event(caller=f"user{n}", subject=f"user{n}") for n in range(size)]
    uuids = [e["event_uuid"] for e in batch]
    params = connection.get_connection_params()
    params.pop("cursor_factory", None)
    params.pop("context", None)
    result: dict = {}

    def send() -> None:
        client = Client(HTTP_AUTHORIZATION=f"Bearer {token}", raise_request_exception=False)
        try:
            result["response"] = client.post(
                "/api/v1/events", json.dumps(batch), content_type="application/json"
            )
        finally:
            connections.close_all()

    with psycopg.connect(**params) as blocker, psycopg.connect(**params, autocommit=True) as admin:
        # Hold a pre-aggregate table so the ingest statement stops in the
        # triggers on `events`, after inserting the events and before
        # committing, then kill its server
        # process, as a crash or restart of PostgreSQL would.
        blocker.execute("LOCK TABLE event_counts_hourly IN EXCLUSIVE MODE")
        sender = threading.Thread(target=send)
        sender.start()
        pid = None
        for _ in range(200):
            row = admin.execute(
                "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                "AND wait_event_type = 'Lock' AND query ~ '^(INSERT INTO|COPY) events'"
            ).fetchone()
            if row:
                pid = row[0]
                break
            time.sleep(0.05)
        assert pid is not None, (
            "the ingest never reached the insert",
            result,
            admin.execute(
                "SELECT pid, datname, wait_event_type, state, left(query, 90) FROM pg_stat_activity WHERE backend_type = 'client backend'"
            ).fetchall(),
        )
        admin.execute("SELECT pg_terminate_backend(%s)", [pid])
        sender.join(30)
        blocker.rollback()

    response = result["response"]
    assert response.status_code == 503
    assert response["Retry-After"] == "5"
    assert Event.objects.filter(event_uuid__in=uuids).count() == 0

    client = Client(HTTP_AUTHORIZATION=f"Bearer {token}")
    resent = client.post("/api/v1/events", json.dumps(batch), content_type="application/json")
    assert resent.status_code == 201
    assert resent.json()["accepted"] == size
    assert Event.objects.filter(event_uuid__in=uuids).count() == size


@contextmanager
def events_locked():
    """Another session holds `events` exclusively until the block ends: every
    statement that reads or writes it waits, as on an overloaded server."""
    params = connection.get_connection_params()
    params.pop("cursor_factory", None)
    params.pop("context", None)
    with psycopg.connect(**params) as blocker:
        blocker.execute("LOCK TABLE events IN ACCESS EXCLUSIVE MODE")
        try:
            yield
        finally:
            blocker.rollback()


@contextmanager
def web_request_with_statement_timeout(settings, ms: int):
    """As gunicorn serves a request (sphere_stats.handlers.Application): on a
    connection opened for the web, with its statement timeout."""
    settings.DB_STATEMENT_TIMEOUT_MS = ms
    connection.close()
    try:
        with db.web_request():
            yield
    finally:
        # The test run's later connections carry no web timeout.
        connection.close()
        db.reset_unreachable()


def test_a_statement_past_the_web_timeout_answers_503_and_stores_nothing(token, analyst, settings):
    api = Client(HTTP_AUTHORIZATION=f"Bearer {token}", raise_request_exception=False)
    page = Client(raise_request_exception=False)
    page.force_login(analyst)
    sent = event()
    with web_request_with_statement_timeout(settings, 300), events_locked():
        ingest = api.post("/api/v1/events", sent, content_type="application/json")
        read = api.get("/api/v1/events")
        html = page.get("/events/")
        # PostgreSQL cancelled a statement but answers: no presumption that
        # it is down, the next request tries again at once.
        assert not db.presumed_unreachable()
    for response in (ingest, read):
        assert response.status_code == 503
        assert response["Retry-After"] == "5"
        assert response.json()["error"].startswith("The database is unavailable")
    assert html.status_code == 503
    assert html["Retry-After"] == "5"
    assert "Temporarily unavailable" in html.content.decode()
    assert not Event.objects.filter(event_uuid=sent["event_uuid"]).exists()
    # The lock is gone: the same event is stored on a retry.
    assert api.post("/api/v1/events", sent, content_type="application/json").status_code == 201


def test_commands_and_scripts_get_no_statement_timeout(settings):
    settings.DB_STATEMENT_TIMEOUT_MS = 300
    connection.close()
    with connection.cursor() as cursor:
        cursor.execute("SHOW statement_timeout")
        assert cursor.fetchone() == ("0",)
    with web_request_with_statement_timeout(settings, 300), connection.cursor() as cursor:
        cursor.execute("SHOW statement_timeout")
        assert cursor.fetchone() == ("300ms",)


def test_healthz_answers_503_when_the_database_does_not_answer_in_time(monkeypatch):
    # A stand-in for a frozen server: the check's SELECT sleeps past the
    # one-second statement timeout healthz sets for itself.
    client = Client(raise_request_exception=False)
    monkeypatch.setattr(views, "HEALTHZ_CHECK_SQL", "SELECT pg_sleep(3)")
    response = client.get("/healthz")
    assert response.status_code == 503
    assert response["Retry-After"] == "5"
    assert response.json() == {"db": "unavailable"}
    monkeypatch.undo()
    assert client.get("/healthz").json() == {"db": "ok"}
