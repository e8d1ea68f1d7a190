"""GET /api/v1/events (JSON or CSV pages), /api/v1/events/<uuid> and the
export's choice of format by the Accept header."""

import base64
import json
import uuid
from urllib.parse import parse_qs, urlparse

import pytest
import time_machine

from tests.factories import like

pytestmark = pytest.mark.django_db


# Each with a small UUID of its own (uuid.UUID(int=n)), for the paging tests.
event = like(timestamp="2026-04-23T20:00:00Z")


@pytest.fixture
def events(post_events):
    rows = [
        event(event_uuid=uuid.UUID(int=1), timestamp="2026-04-20T10:00:00Z"),
        event(
            event_uuid=uuid.UUID(int=2),
            timestamp="2026-04-21T10:00:00Z",
            success=False,
            error_message="bad password",
        ),
        event(
            event_uuid=uuid.UUID(int=3),
            timestamp="2026-04-22T10:00:00Z",
            caller="bob",
            subject="bob",
        ),
        event(
            event_uuid=uuid.UUID(int=4),
            timestamp="2026-04-23T10:00:00Z",
            event_type="org_created",
            subject_type="organization",
            subject="isi",
            payload={"category": "Research"},
        ),
        event(
            event_uuid=uuid.UUID(int=5),
            timestamp="2026-04-24T10:00:00Z",
            event_type="org_member_added",
            subject_type="organization",
            subject="isi",
            target="bob",
            payload={"kind": "usermember", "role": "member"},
        ),
    ]
    assert post_events(rows).status_code == 201
    return rows


def uuids(response) -> list[int]:
    return [uuid.UUID(e["event_uuid"]).int - 1 for e in response.json()["events"]]


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("", [4, 3, 2, 1, 0]),
        ("event_type=org_created&event_type=org_member_added", [4, 3]),
        ("subject_type=organization", [4, 3]),
        ("subject=bob", [2]),
        ("caller=bob", [2]),
        ("target=bob", [4]),
        ("success=false", [1]),
        # The explorer's words for the outcome mean the same here.
        ("success=failed", [1]),
        ("success=succeeded", [4, 3, 2, 0]),
        ("success=any", [4, 3, 2, 1, 0]),
        ("entity=user:bob", [4, 2]),
        ("since=2026-04-22T00:00:00Z", [4, 3, 2]),
        ("until=2026-04-22T10:00:00Z", [1, 0]),
        ("since=2026-04-21T00:00:00Z&until=2026-04-23T00:00:00Z&subject=alice", [1]),
    ],
)
def test_each_filter_narrows_the_list_newest_first(api_client, events, query, expected):
    response = api_client.get(f"/api/v1/events?{query}")
    assert response.status_code == 200
    assert uuids(response) == expected


def test_paging_walks_identical_timestamps_without_gaps_or_repeats(api_client, post_events):
    # All at the same instant.
    post_events([event(event_uuid=uuid.UUID(int=i + 1)) for i in range(25)])
    seen, url = [], "/api/v1/events?limit=7&event_type=user_login"
    while url:
        page = api_client.get(url).json()
        seen.extend(e["event_uuid"] for e in page["events"])
        url = page["next"] and (urlparse(page["next"]).path + "?" + urlparse(page["next"]).query)
    assert len(seen) == 25
    assert len(set(seen)) == 25
    assert seen == sorted(seen, reverse=True)


def test_the_next_link_keeps_the_filters(api_client, events):
    page = api_client.get("/api/v1/events?limit=1&subject_type=organization").json()
    assert "subject_type=organization" in page["next"]
    second = api_client.get(page["next"].replace("http://testserver", "")).json()
    assert uuids_from(second) == [3] and second["next"] is None


def uuids_from(page: dict) -> list[int]:
    return [uuid.UUID(e["event_uuid"]).int - 1 for e in page["events"]]


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("limit=0", "limit"),
        ("limit=1001", "limit"),
        ("since=tuesday", "since"),
        ("success=maybe", "success"),
        ("entity=bob", "entity"),
        ("cursor=garbage", "cursor"),
    ],
)
def test_bad_parameters_get_a_400_naming_them(api_client, query, field):
    response = api_client.get(f"/api/v1/events?{query}")
    assert response.status_code == 400
    assert response.json()["details"][0]["field"] == field


def test_one_event_by_uuid(api_client, events):
    response = api_client.get(f"/api/v1/events/{events[3]['event_uuid']}")
    assert response.status_code == 200
    assert response.json()["payload"] == {"category": "Research"}


def test_an_unknown_uuid_is_a_404_and_a_malformed_one_a_400(api_client):
    missing = api_client.get(f"/api/v1/events/{uuid.uuid4()}")
    assert missing.status_code == 404
    assert "error" in missing.json()
    assert api_client.get("/api/v1/events/nope").status_code == 400


# --- Link headers, CSV pages, relative times ---------------------------------------------


def test_each_page_but_the_last_has_a_link_header_to_the_next(api_client, events):
    first = api_client.get("/api/v1/events?limit=3")
    assert first["Link"] == f'<{first.json()["next"]}>; rel="next"'
    last = api_client.get(first.json()["next"].replace("http://testserver", ""))
    assert last.json()["next"] is None
    assert "Link" not in last


@pytest.mark.parametrize(
    ("query", "headers"),
    [("format=csv", {}), ("", {"HTTP_ACCEPT": "text/csv"})],
)
def test_a_page_comes_as_csv_with_the_next_page_in_the_link_header(
    api_client, events, query, headers
):
    response = api_client.get(f"/api/v1/events?limit=2&{query}", **headers)
    assert response["Content-Type"].startswith("text/csv")
    lines = response.content.decode().splitlines()
    assert lines[0].startswith("event_uuid,timestamp,event_type,")
    assert [line.split(",")[0] for line in lines[1:]] == [
        events[4]["event_uuid"],
        events[3]["event_uuid"],
    ]
    link = response["Link"]
    assert link.startswith("<http://testserver/api/v1/events?") and link.endswith('>; rel="next"')
    assert "Accept" in response["Vary"]
    following = api_client.get(
        link[1:].split(">", 1)[0].replace("http://testserver", ""), **headers
    )
    assert [line.split(",")[0] for line in following.content.decode().splitlines()[1:]] == [
        events[2]["event_uuid"],
        events[1]["event_uuid"],
    ]


def test_an_empty_csv_page_is_the_header_alone(api_client, events):
    response = api_client.get("/api/v1/events?format=csv&subject=nobody")
    assert response.content.decode().splitlines() == [response.content.decode().strip()]
    assert response.content.startswith(b"event_uuid,")
    assert "Link" not in response


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("since=now-2d", [4, 3]),
        ("until=now-3d", [1, 0]),
        ("since=now-4d&until=now-2d", [2, 1]),
        ("since=now-1w", [4, 3, 2, 1, 0]),
        ("until=now", [4, 3, 2, 1, 0]),
        ("since=now", []),
    ],
)
def test_the_list_takes_times_relative_to_now(api_client, events, query, expected):
    with time_machine.travel("2026-04-25T10:00:00Z", tick=False):
        response = api_client.get(f"/api/v1/events?{query}")
    assert response.status_code == 200
    assert uuids(response) == expected


def test_the_next_link_pins_a_relative_time_to_the_first_page(api_client, events):
    with time_machine.travel("2026-04-25T10:00:00Z", tick=False):
        page = api_client.get("/api/v1/events?limit=1&since=now-7d").json()
    query = parse_qs(urlparse(page["next"]).query)
    assert query["since"] == ["2026-04-18T10:00:00+00:00"]
    # Read a week later, the next page still holds what the first page meant.
    with time_machine.travel("2026-05-02T10:00:00Z", tick=False):
        rest = api_client.get(page["next"].replace("http://testserver", "")).json()
    assert uuids_from(rest) == [3]


@pytest.mark.parametrize("query", ["since=now-7y", "since=now-", "until=tomorrow"])
def test_a_bad_time_is_a_400_that_mentions_relative_times(api_client, query):
    response = api_client.get(f"/api/v1/events?{query}")
    assert response.status_code == 400
    detail = response.json()["details"][0]
    assert detail["field"] == query.split("=")[0]
    assert "a relative time such as now, now-45m or now-7d" in detail["message"]


@pytest.mark.parametrize(
    ("accept", "content_type"),
    [
        ("application/x-ndjson", "application/x-ndjson"),
        ("application/json", "application/json"),
        ("text/csv", "text/csv"),
        ("*/*", "text/csv"),
    ],
)
def test_an_export_without_format_follows_the_accept_header(
    api_client, events, accept, content_type
):
    response = api_client.get("/api/v1/events/export", HTTP_ACCEPT=accept)
    assert response["Content-Type"].startswith(content_type)
    assert "Accept" in response["Vary"]
    body = b"".join(response.streaming_content).decode()
    if content_type == "application/x-ndjson":
        assert len(body.splitlines()) == 5


# --- values PostgreSQL cannot take --------------------------------------------


@pytest.fixture
def odd_payloads(post_events):
    rows = [
        event(
            event_uuid=uuid.UUID(int=11),
            timestamp="2026-04-20T10:00:00Z",
            payload={"note": "NaN", "level": 0},
        ),
        event(
            event_uuid=uuid.UUID(int=12),
            timestamp="2026-04-21T10:00:00Z",
            payload={"note": "1e999", "level": 1},
        ),
    ]
    assert post_events(rows).status_code == 201
    return rows


@pytest.mark.parametrize(
    ("value", "expected"),
    [("NaN", [10]), ("Infinity", []), ("-Infinity", []), ("1e999", [11]), ("-1e999", [])],
)
def test_a_payload_value_no_json_number_can_be_matches_as_text(
    api_client, odd_payloads, value, expected
):
    # Sent to PostgreSQL as a number, these were a 500 (JSONB has no NaN).
    response = api_client.get(f"/api/v1/events?payload=note%3D{value}")
    assert response.status_code == 200, response.content
    assert uuids(response) == expected
    assert api_client.get(f"/api/v1/events?payload=level%3D{value}").json()["events"] == []


def test_a_number_too_small_for_a_float_does_not_match_zero(api_client, odd_payloads):
    # 1e-999 reads as 0.0 in Python: it must not find level 0.
    assert uuids(api_client.get("/api/v1/events?payload=level%3D1e-999")) == []
    assert uuids(api_client.get("/api/v1/events?payload=level%3D0")) == [10]


def _cursor(document) -> str:
    return base64.urlsafe_b64encode(json.dumps(document).encode()).decode().rstrip("=")


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("since=0001-01-01T00:00:00Z", "since"),
        ("until=9999-12-31T23:59:59Z", "until"),
        ("since=now-300000w", "since"),
        ("period=custom&since=0001-01-01", "since"),
        ("period=custom&since=2026-01-01&until=9999-12-31", "until"),
        (f"payload=k%3D{'x' * 2000}", "payload"),
        (f"tz={'Europe/Berlin' * 50}", "tz"),
        (f"cursor={_cursor(['2026-04-23T20:00:00+00:00', 5])}", "cursor"),
        (f"cursor={_cursor(['2026-04-23T20:00:00', str(uuid.UUID(int=1))])}", "cursor"),
        (f"cursor={'A' * 400}", "cursor"),
        ("limit=9999999999999999999999", "limit"),
    ],
)
def test_values_out_of_range_are_400s_naming_the_parameter(api_client, events, query, field):
    response = api_client.get(f"/api/v1/events?{query}")
    assert response.status_code == 400, response.content
    assert response.json()["details"][0]["field"] == field
