"""Errors that the API answers before any of its views runs still have the
one error shape of sphere_stats.api."""

import pytest

from audit.models import Event

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("put", "/api/v1/events", "GET, POST"),
        ("delete", "/api/v1/events", "GET, POST"),
        ("patch", "/api/v1/events", "GET, POST"),
        ("post", "/api/v1/events/37f0c699-2c6d-43fa-9e23-d9cd71c10407", "GET"),
        ("post", "/api/v1/stats/", "GET"),
        ("delete", "/api/v1/facilities", "GET"),
    ],
)
def test_a_method_the_url_does_not_take_is_a_json_405_with_the_allowed_ones(
    api_client, method, path, allowed
):
    response = getattr(api_client, method)(path, data="{}", content_type="application/json")
    assert response.status_code == 405
    assert response["Content-Type"] == "application/json"
    assert response["Allow"] == allowed
    body = response.json()
    assert body == {"error": f"{method.upper()} is not allowed here; use {allowed}.", "details": []}
    assert Event.objects.count() == 0


def test_a_405_needs_no_token(client):
    response = client.put("/api/v1/events")
    assert response.status_code == 405
    assert set(response.json()) == {"error", "details"}


def test_an_allowed_method_is_still_answered_by_its_operation(api_client):
    response = api_client.get("/api/v1/events")
    assert response.status_code == 200
    assert response.json()["events"] == []
