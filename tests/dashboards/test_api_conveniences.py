"""What the older stats services offered, on the stats API and the pages'
windows: CSV by the Accept header, gzip-compressed JSON, and relative times
(since=now-7d)."""

import csv
import gzip
import io
import json

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


def vary(response) -> set[str]:
    return {v.strip() for v in response.get("Vary", "").split(",") if v.strip()}


# --- CSV by content negotiation ---------------------------------------------------------


def test_accept_text_csv_gets_a_stat_as_the_same_csv_as_format_csv(token_client, dataset):
    asked = token_client.get(f"/api/v1/stats/logins?{WINDOW}&format=csv")
    negotiated = token_client.get(f"/api/v1/stats/logins?{WINDOW}", HTTP_ACCEPT="text/csv")
    assert negotiated.status_code == 200
    assert negotiated["Content-Type"].startswith("text/csv")
    assert negotiated.content == asked.content
    assert negotiated.content.decode().splitlines()[0] == "bucket,succeeded,failed"
    assert "Accept" in vary(negotiated)


@pytest.mark.parametrize(
    "accept",
    [
        None,
        "application/json",
        "*/*",
        # A browser's: text/html is not on offer, and */* means the default.
        "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
        "text/csv;q=0.5, application/json",
    ],
)
def test_other_accept_headers_get_json_and_the_answer_says_it_varies(token_client, dataset, accept):
    headers = {"HTTP_ACCEPT": accept} if accept else {}
    response = token_client.get(f"/api/v1/stats/logins?{WINDOW}", **headers)
    assert response["Content-Type"].startswith("application/json")
    assert response.json()["name"] == "logins"
    assert "Accept" in vary(response)


def test_the_list_of_stats_comes_as_csv_one_row_per_stat(token_client):
    for headers, query in (({"HTTP_ACCEPT": "text/csv"}, ""), ({}, "?format=csv")):
        response = token_client.get(f"/api/v1/stats/{query}", **headers)
        assert response["Content-Type"].startswith("text/csv")
        rows = list(csv.reader(io.StringIO(response.content.decode())))
        assert rows[0] == ["name", "title", "description", "chart", "parameters", "url"]
        by_name = {row[0]: row for row in rows[1:]}
        assert by_name["top_projects"][4:] == ["n by", "/api/v1/stats/top_projects"]
        assert "Accept" in vary(response)


def test_format_in_the_query_string_wins_over_the_accept_header(token_client, dataset):
    response = token_client.get(
        f"/api/v1/stats/logins?{WINDOW}&format=json", HTTP_ACCEPT="text/csv"
    )
    assert response.json()["name"] == "logins"


# --- gzip ----------------------------------------------------------------------------


def test_json_answers_are_gzipped_for_a_client_that_accepts_gzip(token_client):
    plain = token_client.get("/api/v1/stats/")
    packed = token_client.get("/api/v1/stats/", HTTP_ACCEPT_ENCODING="gzip, deflate, br")
    assert "Content-Encoding" not in plain
    assert packed["Content-Encoding"] == "gzip"
    assert json.loads(gzip.decompress(packed.content)) == plain.json()
    assert len(packed.content) < len(plain.content) / 3
    assert int(packed["Content-Length"]) == len(packed.content)
    assert "Accept-Encoding" in vary(packed) and "Accept-Encoding" in vary(plain)


def test_the_schema_itself_comes_gzipped(db):
    response = Client().get("/api/v1/openapi.json", HTTP_ACCEPT_ENCODING="gzip")
    assert response["Content-Encoding"] == "gzip"
    assert json.loads(gzip.decompress(response.content))["openapi"].startswith("3.1")


@pytest.mark.parametrize("accept_encoding", ["gzip;q=0", "identity", "br", ""])
def test_a_client_that_does_not_accept_gzip_gets_plain_json(token_client, accept_encoding):
    response = token_client.get("/api/v1/stats/", HTTP_ACCEPT_ENCODING=accept_encoding)
    assert "Content-Encoding" not in response
    assert response.json()["stats"]


def test_a_tiny_ingest_answer_goes_out_uncompressed(api_client):
    one = {
        "event_type": "user_login",
        "caller": "alice",
        "subject": "alice",
        "subject_type": "user",
        "success": True,
    }
    response = api_client.post(
        "/api/v1/events",
        data=json.dumps(one),
        content_type="application/json",
        HTTP_ACCEPT_ENCODING="gzip",
    )
    assert response.status_code == 201
    assert "Content-Encoding" not in response
    assert response.json()["accepted"] == 1


def test_csv_answers_are_not_compressed(token_client, dataset):
    response = token_client.get(
        f"/api/v1/stats/logins?{WINDOW}&format=csv", HTTP_ACCEPT_ENCODING="gzip"
    )
    assert "Content-Encoding" not in response
    assert response.content.startswith(b"bucket,")


def test_a_json_export_is_compressed_once(api_client, dataset):
    response = api_client.get(
        "/api/v1/events/export?format=json&period=all", HTTP_ACCEPT_ENCODING="gzip"
    )
    assert response["Content-Encoding"] == "gzip"
    # One gzip layer: decompressed once, it is the JSON array itself.
    events = json.loads(gzip.decompress(b"".join(response.streaming_content)))
    assert len(events) == len(dataset)


# --- relative times -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "start", "end"),
    [
        ("since=now-7d", "2026-03-03T12:00:00+00:00", "2026-03-10T12:00:00+00:00"),
        ("since=now-2w&until=now-1w", "2026-02-24T12:00:00+00:00", "2026-03-03T12:00:00+00:00"),
        ("since=now-90m&until=now-45m", "2026-03-10T10:30:00+00:00", "2026-03-10T11:15:00+00:00"),
        ("since=now-36h&until=now", "2026-03-09T00:00:00+00:00", "2026-03-10T12:00:00+00:00"),
        ("since=now-3600s", "2026-03-10T11:00:00+00:00", "2026-03-10T12:00:00+00:00"),
        (
            "since=now-1d&tz=America/New_York",
            "2026-03-09T08:00:00-04:00",
            "2026-03-10T08:00:00-04:00",
        ),
    ],
)
def test_a_stat_takes_times_relative_to_now(token_client, query, start, end):
    window = token_client.get(f"/api/v1/stats/logins?{query}").json()["window"]
    assert (window["period"], window["start"], window["end"]) == ("custom", start, end)


def test_relative_times_count_the_events_they_cover(token_client, dataset):
    # Logins before NOW: 04:30 and 05:30 on March 7, 03:00 and 04:00 on March 9.
    rows = token_client.get("/api/v1/stats/logins?since=now-2d&res=1d").json()["rows"]
    assert sum(ok + failed for _, ok, failed in rows) == 2
    rows = token_client.get("/api/v1/stats/logins?since=now-4d&res=1d").json()["rows"]
    assert sum(ok + failed for _, ok, failed in rows) == 4


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("since=now-7x", "since"),
        ("since=now%2B1d", "since"),
        ("since=now-", "since"),
        ("since=now-1d&until=now-1y", "until"),
        ("since=now-999999999w", "since"),
        ("since=now", "since"),  # an empty range: since must be before until
        ("since=now-1d&until=nowish", "until"),
    ],
)
def test_a_bad_relative_time_is_a_400_naming_the_field(token_client, query, field):
    response = token_client.get(f"/api/v1/stats/logins?{query}")
    assert response.status_code == 400
    assert response.json()["details"][0]["field"] == field


def test_the_400_says_how_to_write_a_relative_time(token_client):
    detail = token_client.get("/api/v1/stats/logins?since=now-7x").json()["details"][0]
    assert detail["message"] == (
        "'now-7x' is not a relative time such as now, now-45m or now-7d (units s, m, h, d, w)"
    )


def test_a_page_window_takes_relative_times(viewer_client, dataset):
    body = viewer_client.get("/?since=now-2d&until=now-1h").content.decode()
    controls = body.split('id="window-controls"', 1)[1].split("</form>", 1)[0]
    assert 'id="window-since"' in controls
    assert 'value="2026-03-08T12:00"' in controls
    assert 'value="2026-03-10T11:00"' in controls
    assert '<option value="custom" selected>' in controls


def test_a_page_with_a_bad_relative_time_says_so_and_shows_the_default(viewer_client, db):
    body = viewer_client.get("/?since=now-2y").content.decode()
    assert "is not a relative time" in body
