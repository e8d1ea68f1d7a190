"""Per-token rate limits on ingest and export: 429 with Retry-After, as JSON."""

import uuid

import time_machine
from django.test import Client

from sphere_stats.env import Rate
from sphere_stats.models import ApiToken
from tests.factories import ABSENT, event

# No event_uuid: each POST stores an event of its own.
EVENT = event(event_uuid=ABSENT, timestamp=ABSENT)


def client_for(*scopes: str) -> Client:
    raw = ApiToken.issue(f"rl-{uuid.uuid4()}", list(scopes))[1]
    return Client(HTTP_AUTHORIZATION=f"Bearer {raw}")


def test_ingest_over_the_limit_answers_429_with_retry_after_and_stores_nothing(db, settings):
    settings.RATE_LIMITS = {**settings.RATE_LIMITS, "ingest": Rate(3, 60)}
    client = client_for("ingest")
    with time_machine.travel("2026-05-01 12:00:10Z", tick=False):
        for _ in range(3):
            assert (
                client.post("/api/v1/events", EVENT, content_type="application/json").status_code
                == 201
            )
        refused = client.post(
            "/api/v1/events", {**EVENT, "caller": "bob"}, content_type="application/json"
        )
    assert refused.status_code == 429
    assert refused["Retry-After"] == "50"
    assert refused.json()["error"].startswith("Rate limit exceeded: at most 3 ingest requests")
    assert refused.json()["details"] == []
    from audit.models import Event

    assert not Event.objects.filter(caller="bob").exists()


def test_the_limit_is_per_token(db, settings):
    settings.RATE_LIMITS = {**settings.RATE_LIMITS, "ingest": Rate(1, 60)}
    first, second = client_for("ingest"), client_for("ingest")
    with time_machine.travel("2026-05-01 12:00Z", tick=False):
        assert (
            first.post("/api/v1/events", EVENT, content_type="application/json").status_code == 201
        )
        assert (
            first.post("/api/v1/events", EVENT, content_type="application/json").status_code == 429
        )
        assert (
            second.post("/api/v1/events", EVENT, content_type="application/json").status_code == 201
        )


def test_the_next_window_accepts_again(db, settings):
    settings.RATE_LIMITS = {**settings.RATE_LIMITS, "ingest": Rate(1, 60)}
    client = client_for("ingest")
    with time_machine.travel("2026-05-01 12:00Z", tick=False) as traveller:
        assert (
            client.post("/api/v1/events", EVENT, content_type="application/json").status_code == 201
        )
        assert (
            client.post("/api/v1/events", EVENT, content_type="application/json").status_code == 429
        )
        traveller.shift(60)
        assert (
            client.post("/api/v1/events", EVENT, content_type="application/json").status_code == 201
        )


def test_export_has_its_own_limit(db, settings):
    settings.RATE_LIMITS = {**settings.RATE_LIMITS, "export": Rate(2, 60)}
    client = client_for("read")
    with time_machine.travel("2026-05-01 12:00Z", tick=False):
        for _ in range(2):
            response = client.get("/api/v1/events/export?format=ndjson")
            assert response.status_code == 200
            b"".join(response.streaming_content)
        refused = client.get("/api/v1/events/export?format=ndjson")
    assert refused.status_code == 429
    assert refused["Content-Type"] == "application/json"
    assert "export requests" in refused.json()["error"]


def test_a_limit_of_zero_turns_it_off(db, settings):
    settings.RATE_LIMITS = {**settings.RATE_LIMITS, "ingest": None}
    client = client_for("ingest")
    for _ in range(5):
        assert (
            client.post("/api/v1/events", EVENT, content_type="application/json").status_code == 201
        )


def test_a_bad_rate_in_the_environment_stops_the_server(monkeypatch):
    import pytest
    from django.core.exceptions import ImproperlyConfigured

    from sphere_stats.env import envrate

    monkeypatch.setenv("RATE_LIMIT_INGEST", "lots")
    with pytest.raises(ImproperlyConfigured, match="RATE_LIMIT_INGEST='lots' is not a rate"):
        envrate("RATE_LIMIT_INGEST", "600/60")
    monkeypatch.setenv("RATE_LIMIT_INGEST", "600/60")
    assert envrate("RATE_LIMIT_INGEST", "1/1") == Rate(600, 60)
    monkeypatch.setenv("RATE_LIMIT_INGEST", "0")
    assert envrate("RATE_LIMIT_INGEST", "1/1") is None


def test_leases_of_several_processes_never_let_more_than_the_limit_through(db, monkeypatch):
    # Two processes, each with its own leases (ratelimit._leases), take hits
    # of one counter in turn: together never more than the limit, and at
    # most a lease each short of it.
    from sphere_stats import ratelimit

    limit = 1000  # leases of 5
    processes = [{}, {}]
    accepted = 0
    for n in range(limit + 50):
        monkeypatch.setattr(ratelimit, "_leases", processes[n % 2])
        accepted += ratelimit._take("rl:test:lease:1", 4_000_000_000, limit)
    assert limit - 2 * 5 <= accepted <= limit
    monkeypatch.setattr(ratelimit, "_leases", {})
    assert not ratelimit._take("rl:test:lease:1", 4_000_000_000, limit)
