"""The WSGI application gunicorn serves: POST /api/v1/events takes the lean
API handler (security headers, the 503 and the Host check), everything else
Django's full middleware. Requests here go through the application itself
(sphere_stats.handlers.Application), as gunicorn sends them, not through
the test client's handler."""

import io
import json
import sys
import uuid

import pytest

from audit.models import Event
from sphere_stats.handlers import Application
from sphere_stats.models import ApiToken
from tests.sphere_stats.test_database_down import database_down, event

# Real transactions: Django's request signals close and reopen connections.
pytestmark = pytest.mark.django_db(transaction=True)
# What sphere_stats.wsgi serves (that module also runs the production
# start-up checks, which the test settings would fail).
application = Application()


def call(method: str, path: str, body: bytes = b"", **headers: str):
    """(status code, headers, body) of one request through the WSGI app."""
    environ = {
        "REQUEST_METHOD": method,
        "PATH_INFO": path,
        "QUERY_STRING": "",
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "8000",
        "HTTP_HOST": "testserver",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "CONTENT_LENGTH": str(len(body)),
        "CONTENT_TYPE": "application/json",
        "wsgi.input": io.BytesIO(body),
        "wsgi.url_scheme": "http",
        "wsgi.errors": sys.stderr,
        **{f"HTTP_{k.upper()}": v for k, v in headers.items()},
    }
    started = {}

    def start_response(status, response_headers, exc_info=None):
        started["status"] = int(status.split()[0])
        started["headers"] = dict(response_headers)

    result = application(environ, start_response)
    try:
        content = b"".join(result)
    finally:
        result.close()
    return started["status"], started["headers"], content


@pytest.fixture
def bearer() -> str:
    return "Bearer " + ApiToken.issue("wsgi", ["ingest"])[1]


def test_a_posted_event_is_stored_through_the_api_handler(bearer):
    sent = event()
    status, headers, body = call(
        "POST", "/api/v1/events", json.dumps(sent).encode(), authorization=bearer
    )
    assert status == 201
    assert json.loads(body)["accepted"] == 1
    assert Event.objects.filter(event_uuid=sent["event_uuid"]).exists()
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert "Set-Cookie" not in headers


def test_bad_input_and_a_missing_token_get_the_json_error_shape(bearer):
    status, _, body = call("POST", "/api/v1/events", b'{"event_type": 5}', authorization=bearer)
    assert status == 400
    fields = {d["field"] for d in json.loads(body)["details"]}
    assert {"event_type", "caller"} <= fields
    status, _, body = call("POST", "/api/v1/events", json.dumps(event()).encode())
    assert status == 401
    assert "error" in json.loads(body)
    assert Event.objects.count() == 0


def test_a_host_outside_allowed_hosts_is_refused_before_anything_is_stored(bearer):
    sent = event()
    status, _, _ = call(
        "POST",
        "/api/v1/events",
        json.dumps(sent).encode(),
        authorization=bearer,
        host="evil.example",
    )
    assert status == 400
    assert not Event.objects.exists()


def test_ingest_answers_503_through_the_api_handler_and_recovers(bearer):
    sent = json.dumps(event()).encode()
    with database_down():
        status, headers, body = call("POST", "/api/v1/events", sent, authorization=bearer)
    assert status == 503
    assert headers["Retry-After"] == "5"
    assert json.loads(body)["error"].startswith("The database is unavailable")
    status, _, _ = call("POST", "/api/v1/events", sent, authorization=bearer)
    assert status == 201


def test_pages_keep_the_full_middleware():
    status, headers, _ = call("GET", "/accounts/login/")
    assert status == 200
    assert headers["X-Frame-Options"] == "DENY"
    assert "csrftoken" in headers.get("Set-Cookie", "")
    # Another method on the ingest URL is not ingest: the full chain answers.
    status, headers, _ = call("GET", "/api/v1/events", uuid=str(uuid.uuid4()))
    assert headers["X-Frame-Options"] == "DENY"
