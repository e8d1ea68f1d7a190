"""GET /api/v1/facilities and /api/v1/facilities/<slug>."""

import csv
import io
from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.test import Client

from tests.factories import allocation, facility, report

NOW = datetime(2026, 4, 23, 21, 0, tzinfo=UTC)

pytestmark = pytest.mark.django_db


@pytest.fixture
def client(read_token) -> Client:
    return Client(HTTP_AUTHORIZATION=f"Bearer {read_token}")


@pytest.fixture(autouse=True)
def demo(db):
    facility("isi", name="USC ISI", capacity_nodes=64)
    facility("tacc", name="TACC", capacity_nodes=120)
    report("isi", NOW - timedelta(hours=30), "up")
    report("isi", NOW - timedelta(minutes=5), "maintenance", "scheduled OS upgrade")
    allocation(
        "materialization", "allocated", "isi", NOW - timedelta(hours=3), resources=["isi-n001"]
    )
    with time_machine.travel(NOW, tick=False):
        yield


def test_the_list_gives_every_facility_with_status_and_resources(client):
    response = client.get("/api/v1/facilities")
    assert response.status_code == 200
    by_slug = {f["slug"]: f for f in response.json()}
    assert by_slug["isi"]["status"]["status"] == "maintenance"
    assert by_slug["isi"]["status"]["message"] == "scheduled OS upgrade"
    assert by_slug["isi"]["status"]["since"] == (NOW - timedelta(minutes=5)).isoformat()
    assert by_slug["isi"]["resources"] == {
        "in_use": 1,
        "capacity": 64,
        "active_realizations": 0,
        "active_materializations": 1,
    }
    assert by_slug["tacc"]["status"]["status"] == "unknown"
    assert by_slug["tacc"]["status"]["last_report_at"] is None


def test_each_status_says_until_when_it_holds_without_another_report(client):
    report("tacc", NOW - timedelta(hours=2), "up", interval=6 * 3600)
    by_slug = {f["slug"]: f["status"] for f in client.get("/api/v1/facilities").json()}
    # A heartbeat promising the next within 6 hours; a report without one
    # holds FACILITY_STALE_AFTER (15 minutes).
    assert (by_slug["tacc"]["status"], by_slug["tacc"]["holds_until"]) == (
        "up",
        (NOW + timedelta(hours=4)).isoformat(),
    )
    assert by_slug["isi"]["holds_until"] == (NOW + timedelta(minutes=10)).isoformat()
    rows = csv.DictReader(io.StringIO(client.get("/api/v1/facilities?format=csv").text))
    assert {r["slug"]: r["holds_until"] for r in rows}["tacc"] == (
        NOW + timedelta(hours=4)
    ).isoformat()


@pytest.mark.parametrize(
    ("path", "headers"),
    [("/api/v1/facilities?format=csv", {}), ("/api/v1/facilities", {"HTTP_ACCEPT": "text/csv"})],
    ids=["format", "accept"],
)
def test_the_list_as_csv_holds_the_same_facilities_as_the_json(client, path, headers):
    response = client.get(path, **headers)
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")
    assert "Accept" in response["Vary"]
    rows = {r["slug"]: r for r in csv.DictReader(io.StringIO(response.content.decode()))}
    assert rows["isi"]["status"] == "maintenance"
    assert rows["isi"]["since"] == (NOW - timedelta(minutes=5)).isoformat()
    assert (rows["isi"]["nodes_in_use"], rows["isi"]["nodes_capacity"]) == ("1", "64")
    assert rows["tacc"]["status"] == "unknown"
    assert set(rows) == {f["slug"] for f in client.get("/api/v1/facilities").json()}


def test_the_detail_gives_changes_and_daily_uptime_in_the_asked_zone(client):
    response = client.get("/api/v1/facilities/isi?tz=Asia/Tokyo")
    assert response.status_code == 200
    body = response.json()
    # Up 30 hours ago, then silent until the maintenance report.
    assert [c["status"] for c in body["changes"]] == ["maintenance", "unknown", "up"]
    assert body["changes"][1]["message"] == "stopped reporting"
    assert body["uptime"]["time_zone"] == "Asia/Tokyo"
    days = body["uptime"]["days"]
    assert len(days) == 90
    # 21:00 UTC on 23 April is already 24 April in Tokyo.
    assert days[-1]["date"] == "2026-04-24"
    assert days[-1]["status"] == "maintenance"
    assert body["materializations"][0]["resources"] == ["isi-n001"]


def test_it_needs_a_token(db):
    assert Client().get("/api/v1/facilities").status_code == 401


def test_it_needs_the_read_scope(ingest_token):
    client = Client(HTTP_AUTHORIZATION=f"Bearer {ingest_token}")
    assert client.get("/api/v1/facilities").status_code == 403


def test_an_unknown_facility_is_a_404_in_the_error_shape(client):
    response = client.get("/api/v1/facilities/nowhere")
    assert response.status_code == 404
    assert response.json()["error"] == "No facility 'nowhere'."


def test_a_bad_time_zone_is_a_400_naming_the_field(client):
    response = client.get("/api/v1/facilities/isi?tz=Not/AZone")
    assert response.status_code == 400
    assert response.json()["details"][0]["field"] == "tz"
