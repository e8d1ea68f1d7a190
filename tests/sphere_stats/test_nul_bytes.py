"""A NUL byte in a URL is refused with a 400, never a 500: PostgreSQL text
cannot hold one, so it must not reach a query."""

import pytest
from django.test import Client

API_URLS = [
    "/api/v1/stats/events_by_type?event_type=%00",
    "/api/v1/events?subject=a%00",
    "/api/v1/events/a%00b",
    "/api/v1/stats/a%00",
    "/api/v1/events?a%00=1",
]
PAGE_URLS = [
    "/users/a%00/",
    "/search/?q=a%00",
    "/search/suggest/?q=a%00",
    "/search/?a%00=1",
    "/static/a%00.css",
]


@pytest.mark.parametrize("url", API_URLS)
def test_the_api_answers_a_nul_byte_with_its_json_400(url, read_token):
    response = Client().get(url, headers={"Authorization": f"Bearer {read_token}"})
    assert response.status_code == 400
    assert response["Content-Type"] == "application/json"
    body = response.json()
    assert "NUL" in body["error"]
    assert body["details"] == []


@pytest.mark.parametrize("url", PAGE_URLS)
def test_a_page_answers_a_nul_byte_with_the_bad_request_page(url, viewer_client):
    response = viewer_client.get(url)
    assert response.status_code == 400
    assert response["Content-Type"].startswith("text/html")
    assert "Bad request" in response.content.decode()


def test_a_nul_byte_is_refused_before_login_is_asked_for(db):
    response = Client().get("/users/a%00/")
    assert response.status_code == 400


def test_urls_without_a_nul_byte_are_served_as_before(viewer_client, read_token):
    assert viewer_client.get("/search/?q=a%2500").status_code == 200
    response = Client().get(
        "/api/v1/stats/events_by_type?event_type=user_login",
        headers={"Authorization": f"Bearer {read_token}"},
    )
    assert response.status_code == 200
