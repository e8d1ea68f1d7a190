"""GET /api/v1/stats/ and /api/v1/stats/<name> (JSON and CSV)."""

import csv
import io

import pytest
import time_machine
from django.test import Client

from audit.ingest import ingest
from dashboards.stats import STATS, Stat, register
from sphere_stats.models import ApiToken
from tests.dashboards.conftest import NOW, event

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


def test_failed_logins_with_n_0_lists_every_user(token_client, dataset):
    top = token_client.get(f"/api/v1/stats/failed_logins?{WINDOW}&n=1").json()
    assert [r[0] for r in top["rows"]] == ["alice"]
    every = token_client.get(f"/api/v1/stats/failed_logins?{WINDOW}&n=0").json()
    assert [r[0] for r in every["rows"]] == ["alice", "mallory"]


def test_the_list_gives_each_parameters_bounds(viewer_client):
    stats = {s["name"]: s for s in viewer_client.get("/api/v1/stats/").json()["stats"]}
    (failed_n,) = stats["failed_logins"]["parameters"]
    assert (failed_n["minimum"], failed_n["maximum"], failed_n["default"]) == (0, 100, 10)
    assert "0 for every user" in failed_n["description"]
    top_n = stats["top_users"]["parameters"][0]
    assert (top_n["minimum"], top_n["maximum"]) == (1, 100)


def test_an_event_type_filter_must_name_a_known_or_stored_type(token_client, dataset):
    url = f"/api/v1/stats/events_by_type?{WINDOW}&event_type="
    response = token_client.get(url + "nope")
    assert response.status_code == 400
    assert response.json()["details"][0] == {
        "field": "event_type",
        "message": "unknown event type 'nope': not in the catalog and in no event",
    }
    # Catalogued, though none happened in the window: an honest empty answer.
    assert token_client.get(url + "facility_status").json()["rows"] == []
    # Uncatalogued types are stored as they come, and can be asked for.
    ingest(
        [event("2026-03-08T15:00:00Z", "portal_beta_feature", "alice", "user", caller="alice")],
        now=NOW,
    )
    rows = token_client.get(url + "portal_beta_feature&event_type=user_login").json()["rows"]
    assert ["2026-03-08T00:00:00-05:00", "portal_beta_feature", 1] in rows
    assert {r[1] for r in rows} == {"portal_beta_feature", "user_login"}


def stat_parameters(client: Client) -> dict[tuple[str, str], dict]:
    """The parameters of GET /api/v1/stats/{name} in the served schema, by
    (where, name): the path's `name` and the query's `name` are two."""
    paths = client.get("/api/v1/openapi.json").json()["paths"]
    return {(p["in"], p["name"]): p for p in paths["/api/v1/stats/{name}"]["get"]["parameters"]}


def test_the_schema_lists_exactly_the_periods_and_resolutions_a_stat_accepts(token_client):
    parameters = stat_parameters(token_client)
    for name, extra in (("period", "&since=2026-03-06"), ("res", "&period=30d")):
        choices = parameters["query", name]["schema"]["enum"]
        for choice in choices:
            response = token_client.get(f"/api/v1/stats/logins?{name}={choice}{extra}")
            assert response.status_code == 200, (name, choice, response.json())
        response = token_client.get(f"/api/v1/stats/logins?{name}=2w{extra}")
        assert response.status_code == 400
        assert response.json()["details"][0]["field"] == name


def test_a_stat_name_in_the_schema_is_one_of_the_registered_stats(token_client):
    assert stat_parameters(token_client)["path", "name"]["schema"]["enum"] == sorted(STATS)


def test_a_stat_registered_later_is_in_the_next_schema(token_client):
    @register
    class Late(Stat):
        name = "late_plugin_stat"
        title = "Late"

    try:
        enum = stat_parameters(token_client)["path", "name"]["schema"]["enum"]
        assert "late_plugin_stat" in enum
    finally:
        del STATS["late_plugin_stat"]
