"""The per-process cache of valid API tokens (sphere_stats.models.authenticate)."""

import json

import pytest
from django.test import Client

from sphere_stats import models as token_models
from sphere_stats.models import ApiToken
from tests.factories import ABSENT, event

pytestmark = pytest.mark.django_db
# No event_uuid: each POST stores an event of its own.
BODY = json.dumps(event(event_uuid=ABSENT, timestamp=ABSENT, caller="a", subject="a"))


def post(raw: str) -> int:
    client = Client(HTTP_AUTHORIZATION=f"Bearer {raw}")
    return client.post("/api/v1/events", BODY, content_type="application/json").status_code


def revoke_elsewhere(token: ApiToken) -> None:
    # What another worker's admin action does: the row changes, and this
    # process hears no signal.
    ApiToken.objects.filter(pk=token.pk).update(revoked_at="2026-01-01T00:00Z")


def test_a_token_revoked_by_another_worker_stops_working_when_its_entry_expires(monkeypatch):
    token, raw = ApiToken.issue("portal", ["ingest"])
    clock = [1000.0]
    monkeypatch.setattr(token_models.time, "monotonic", lambda: clock[0])
    assert post(raw) == 201
    revoke_elsewhere(token)
    clock[0] += 4.9
    assert post(raw) == 201  # still trusted: the documented delay
    clock[0] += 0.2
    assert post(raw) == 401


def test_a_token_revoked_in_this_process_stops_working_at_once():
    token, raw = ApiToken.issue("portal", ["ingest"])
    assert post(raw) == 201
    token.revoked_at = "2026-01-01T00:00Z"
    token.save()
    assert post(raw) == 401


def test_with_no_cache_every_request_looks_the_token_up(settings):
    settings.API_TOKEN_CACHE_SECONDS = 0
    token, raw = ApiToken.issue("portal", ["ingest"])
    assert post(raw) == 201
    revoke_elsewhere(token)
    assert post(raw) == 401


def test_unknown_tokens_are_never_cached():
    for n in range(50):
        assert post(f"sst_guess{n}") == 401
    assert token_models._recent == {}
