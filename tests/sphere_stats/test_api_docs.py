"""The OpenAPI schema, the interactive docs (local assets only) and the
getting-started page."""

import re

import pytest
from django.test import Client
from openapi_spec_validator import validate

from tests.conftest import offsite_hosts, screenshot


def test_the_schema_describes_every_api_operation_with_its_error_shape(db):
    schema = Client().get("/api/v1/openapi.json").json()
    assert schema["openapi"].startswith("3.")
    paths = schema["paths"]
    for path in (
        "/api/v1/events",
        "/api/v1/events/export",
        "/api/v1/catalog",
        "/api/v1/stats/",
        "/api/v1/entities/{kind}/{name}",
        "/api/v1/facilities",
    ):
        assert path in paths, path
    ingest = paths["/api/v1/events"]["post"]
    for status in ("201", "400", "401", "403", "413", "415", "429", "503"):
        assert status in ingest["responses"], status
    assert schema["components"]["schemas"]["Error"]["required"] == ["error"]


def test_the_served_schema_is_valid_openapi_with_examples_as_example_maps(db):
    schema = Client().get("/api/v1/openapi.json").json()
    validate(schema)  # raises, naming the first thing out of place
    since = next(
        p for p in schema["paths"]["/api/v1/events"]["get"]["parameters"] if p["name"] == "since"
    )
    # OpenAPI's map of Example objects beside the parameter; JSON Schema's
    # list inside its schema.
    assert since["examples"] == {"example": {"value": "now-7d"}}
    assert since["schema"]["examples"] == ["now-7d"]


def test_operations_are_named_after_their_views(db):
    paths = Client().get("/api/v1/openapi.json").json()["paths"]
    assert paths["/api/v1/events"]["post"]["operationId"] == "ingest_events"
    assert paths["/api/v1/stats/{name}"]["get"]["operationId"] == "get_stat"


def test_the_docs_page_loads_its_scripts_and_styles_from_this_server(db):
    client = Client()
    page = client.get("/api/v1/docs").content.decode()
    # Swagger UI's two scripts are named in data- attributes: api-docs.js
    # fetches them once the page has loaded.
    assets = re.findall(r'(?:src|href|data-bundle|data-init)="([^"]+)"', page)
    assert any(re.search(r"swagger-ui-bundle\.[0-9a-f]{12}\.js$", a) for a in assets)
    for asset in assets:
        assert asset.startswith("/"), f"{asset} is not served by this server"
        response = client.get(asset)
        assert response.status_code == 200, asset
    assert offsite_hosts(page) == set()  # no CDN, nothing from the network


def test_the_getting_started_page_shows_a_new_client_how_to_send_an_event(db):
    response = Client().get("/api/v1/")
    page = response.content.decode()
    assert response.status_code == 200
    assert "create_api_token" in page
    assert "curl -sS -X POST http://testserver/api/v1/events" in page
    assert 'href="http://testserver/api/v1/docs"' in page
    assert "Retry-After" in page


def test_the_getting_started_pages_read_examples_answer_as_it_says(db, read_token):
    page = Client().get("/api/v1/").content.decode()
    client = Client(HTTP_AUTHORIZATION=f"Bearer {read_token}")
    listed = client.get("/api/v1/events?event_type=user_login&since=now-7d&limit=100")
    assert listed.status_code == 200 and "since=now-7d" in page
    stat = client.get("/api/v1/stats/logins?since=now-30d&res=1d", HTTP_ACCEPT="text/csv")
    assert stat.status_code == 200 and stat["Content-Type"].startswith("text/csv")
    assert 'href="http://testserver/api/v1/catalog"' in page
    assert client.get("/api/v1/catalog").status_code == 200


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_the_interactive_docs_render_with_nothing_fetched_from_elsewhere(browser_page, live_server):
    page = browser_page
    page.goto(f"{live_server.url}/api/v1/docs")
    page.wait_for_selector(".swagger-ui .opblock", timeout=15_000)
    assert "POST" in page.inner_text(".swagger-ui")
    assert "/api/v1/events" in page.inner_text(".swagger-ui")
    screenshot(page, "api_docs")
    page.goto(f"{live_server.url}/api/v1/")
    assert page.inner_text("h1") == "The sphere_stats JSON API"
    screenshot(page, "api_getting_started")
    assert page.blocked_requests == []
