"""GET /api/v1/stats/ and /api/v1/stats/<name> (JSON and CSV)."""

import csv
import io

import pytest
import time_machine
from django.test import Client

from sphere_stats.models import ApiToken
from tests.dashboards.conftest import NOW

WINDOW = "since=2026-03-06&until=2026-03-09&tz=America/New_York&res=1d"


@pytest.fixture(autouse=True)
def _frozen_now():
    with time_machine.travel(NOW, tick=False):
        yield


@pytest.fixture
def token_client(db) -> Client:
    return Client(HTTP_AUTHORIZATION=f"Bearer {ApiToken.issue('stats', ['read'])[1]}")


def test_the_list_names_every_stat_with_parameters_and_url(viewer_client):
    body = viewer_client.get("/api/v1/stats/").json()
    by_name = {s["name"]: s for s in body["stats"]}
    assert by_name["logins"]["url"] == "/api/v1/stats/logins"
    assert [p["name"] for p in by_name["top_projects"]["parameters"]] == ["n", "by"]
    assert {p["name"] for p in body["window_parameters"]} >= {"period", "res", "tz"}


def test_a_stat_as_json_has_columns_rows_and_local_times(token_client, dataset):
    body = token_client.get(f"/api/v1/stats/logins?{WINDOW}").json()
    assert [c["name"] for c in body["columns"]] == ["bucket", "succeeded", "failed"]
    assert body["rows"][0] == ["2026-03-06T00:00:00-05:00", 1, 0]
    assert body["rows"][3] == ["2026-03-09T00:00:00-04:00", 0, 1]
    assert body["window"]["tz"] == "America/New_York"


def test_a_stat_as_csv_matches_the_json(viewer_client, dataset):
    response = viewer_client.get(f"/api/v1/stats/failed_logins?{WINDOW}&format=csv")
    assert response["Content-Type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(response.content.decode())))
    assert rows[0] == ["user", "failures", "last_attempt", "last_error"]
    assert rows[1] == ["alice", "1", "2026-03-08T23:00:00-04:00", "invalid credentials"]


def test_raw_source_gives_the_same_answer(token_client, dataset):
    auto = token_client.get(f"/api/v1/stats/entity_growth?{WINDOW}").json()
    raw = token_client.get(f"/api/v1/stats/entity_growth?{WINDOW}&source=raw").json()
    assert auto["rows"] == raw["rows"]
    assert raw["source"] == "raw"


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("tz=Nowhere/City", "tz"),
        ("period=2w", "period"),
        ("n=0", "n"),
        ("by=mood", "by"),
    ],
)
def test_bad_parameters_are_a_400_naming_the_field(token_client, query, field):
    response = token_client.get(f"/api/v1/stats/top_projects?{query}")
    assert response.status_code == 400
    assert response.json()["details"][0]["field"] == field


def test_entity_stats_require_the_entity(token_client):
    response = token_client.get("/api/v1/stats/entity_events?kind=user")
    assert response.status_code == 400
    assert response.json()["details"][0]["field"] == "name"


def test_an_unknown_stat_is_a_404(token_client):
    assert token_client.get("/api/v1/stats/nope").status_code == 404


def test_anonymous_requests_are_refused(client, db):
    assert client.get("/api/v1/stats/").status_code == 401
    assert client.get("/api/v1/stats/logins").status_code == 401
