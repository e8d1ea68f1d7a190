"""Token authentication of the JSON API."""

import json

import pytest
from django.test import Client
from django.utils import timezone

from audit.models import Event
from sphere_stats.models import ApiToken, hash_token
from tests.factories import ABSENT, event

pytestmark = pytest.mark.django_db
# No event_uuid: each POST stores an event of its own.
BODY = json.dumps(event(event_uuid=ABSENT, timestamp=ABSENT, caller="a", subject="a"))


def post(**headers):
    return Client(**headers).post("/api/v1/events", BODY, content_type="application/json")


def test_no_token_is_401_with_a_json_error():
    response = post()
    assert response.status_code == 401
    assert "token" in response.json()["error"]
    assert Event.objects.count() == 0


def test_a_wrong_token_is_401():
    ApiToken.issue("real", ["ingest"])
    assert post(HTTP_AUTHORIZATION="Bearer sst_wrong").status_code == 401
    assert post(HTTP_X_API_KEY="sst_wrong").status_code == 401


def test_a_revoked_token_is_401():
    token, raw = ApiToken.issue("old", ["ingest"])
    token.revoked_at = timezone.now()
    token.save()
    assert post(HTTP_AUTHORIZATION=f"Bearer {raw}").status_code == 401


def test_a_token_without_the_scope_is_403(read_token):
    response = post(HTTP_AUTHORIZATION=f"Bearer {read_token}")
    assert response.status_code == 403
    assert "ingest" in response.json()["error"]
    assert Client(HTTP_X_API_KEY=read_token).get("/api/v1/events").status_code == 200


def test_an_ingest_token_cannot_read(ingest_token):
    response = Client(HTTP_AUTHORIZATION=f"Bearer {ingest_token}").get("/api/v1/events")
    assert response.status_code == 403


def test_both_header_forms_are_accepted(ingest_token):
    assert post(HTTP_AUTHORIZATION=f"Bearer {ingest_token}").status_code == 201
    assert post(HTTP_X_API_KEY=ingest_token).status_code == 201


def test_tokens_are_stored_hashed(ingest_token):
    token = ApiToken.objects.get(name="test-ingest")
    assert token.key_hash == hash_token(ingest_token)
    assert ingest_token not in (token.key_hash, token.prefix)


def test_the_bearer_scheme_is_read_in_any_case_and_other_schemes_are_refused(ingest_token):
    assert post(HTTP_AUTHORIZATION=f"bearer {ingest_token}").status_code == 201
    assert post(HTTP_AUTHORIZATION=f"BEARER {ingest_token}").status_code == 201
    for refused in (f"Token {ingest_token}", f"Basic {ingest_token}", ingest_token, "Bearer"):
        response = post(HTTP_AUTHORIZATION=refused)
        assert response.status_code == 401, refused
        assert response.json()["error"].startswith("Missing or invalid API token")
