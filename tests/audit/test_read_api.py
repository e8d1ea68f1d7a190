"""GET /api/v1/events and /api/v1/events/<uuid>."""

import uuid
from urllib.parse import urlparse

import pytest

pytestmark = pytest.mark.django_db


def make(i: int, **overrides) -> dict:
    base = {
        "event_uuid": str(uuid.UUID(int=i + 1)),
        "timestamp": "2026-04-23T20:00:00Z",
        "event_type": "user_login",
        "caller": "alice",
        "subject": "alice",
        "subject_type": "user",
        "success": True,
    }
    base.update(overrides)
    return base


@pytest.fixture
def events(post_events):
    rows = [
        make(0, timestamp="2026-04-20T10:00:00Z"),
        make(1, timestamp="2026-04-21T10:00:00Z", success=False, error_message="bad password"),
        make(2, timestamp="2026-04-22T10:00:00Z", caller="bob", subject="bob"),
        make(
            3,
            timestamp="2026-04-23T10:00:00Z",
            event_type="org_created",
            subject_type="organization",
            subject="isi",
            payload={"category": "Research"},
        ),
        make(
            4,
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
    post_events([make(i) for i in range(25)])  # all at the same instant
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
