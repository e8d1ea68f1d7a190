"""GET /api/v1/entities/<kind>/<name>: what an entity page shows, as JSON."""

import pytest
import time_machine
from django.test import Client

from sphere_stats.models import ApiToken
from tests.dashboards.conftest import NOW


@pytest.fixture(autouse=True)
def _frozen_now():
    with time_machine.travel(NOW, tick=False):
        yield


@pytest.fixture
def token_client(db) -> Client:
    return Client(HTTP_AUTHORIZATION=f"Bearer {ApiToken.issue('entities', ['read'])[1]}")


def get(client: Client, path: str, status: int = 200) -> dict:
    response = client.get(f"/api/v1/entities/{path}")
    assert response.status_code == status, response.content
    return response.json()


def counts(body: dict) -> dict[str, tuple[int, int]]:
    return {c["event_type"]: (c["succeeded"], c["failed"]) for c in body["counts"]}


def test_an_organization_has_its_state_history_and_current_members(token_client, dataset):
    body = get(token_client, "organization/isi")
    assert (body["kind"], body["name"], body["project"]) == ("organization", "isi", None)
    assert body["state"] == "pending"  # created, never activated
    assert body["since"] == "2026-03-06T15:00:00+00:00"
    assert (body["until"], body["predates_log"]) == (None, False)
    assert (body["created_by"], body["category"], body["description"]) == (
        "alice",
        "Research",
        "ISI",
    )
    # Bob was removed; Carol's role changed after she joined.
    assert [(m["member"], m["role"], m["since"]) for m in body["members"]] == [
        ("alice", "creator", "2026-03-06T15:00:01+00:00"),
        ("carol", "maintainer", "2026-03-08T18:00:00+00:00"),
    ]
    assert body["memberships"] is None
    assert body["page"] == "/orgs/isi/"


def test_a_recreated_project_shows_its_second_life(token_client, dataset):
    body = get(token_client, "project/botnets")
    assert (body["state"], body["since"]) == ("pending", "2026-03-08T16:00:00+00:00")
    assert (body["created_by"], body["description"]) == ("carol", "second life")
    assert [m["member"] for m in body["members"]] == ["carol"]
    assert counts(body)["project_created"] == (2, 0)
    assert counts(body)["project_deleted"] == (1, 0)


def test_a_user_has_their_memberships_and_counts_by_event_type(token_client, dataset):
    body = get(token_client, "user/carol")
    assert body["state"] == "frozen"
    assert body["members"] is None
    assert [(m["kind"], m["name"], m["role"]) for m in body["memberships"]] == [
        ("organization", "isi", "maintainer"),
        ("project", "botnets", "creator"),
    ]
    assert counts(body)["user_frozen"] == (1, 0)
    assert body["window"]["period"] == "30d"


def test_a_deleted_user_is_gone_since_its_deletion(token_client, dataset):
    body = get(token_client, "user/alice")
    assert (body["state"], body["until"]) == ("gone", "2026-03-09T20:00:00+00:00")
    assert counts(body)["user_login"] == (2, 1)


def test_the_counts_follow_the_window_relative_times_included(token_client, dataset):
    # Alice's logins: two on March 7, a failed one on March 9 (NOW is March 10, noon).
    body = get(token_client, "user/alice?since=now-2d")
    assert counts(body)["user_login"] == (0, 1)
    assert body["window"]["start"] == "2026-03-08T12:00:00+00:00"
    body = get(token_client, "user/alice?since=2026-03-06&until=2026-03-07&tz=America/New_York")
    assert counts(body)["user_login"] == (2, 0)


def test_an_experiment_is_named_with_its_project(token_client, dataset):
    body = get(token_client, "experiment/exp1?project=iot")
    assert (body["state"], body["project"], body["created_by"]) == ("exists", "iot", "carol")
    assert body["since"] == "2026-03-08T17:30:00+00:00"
    assert body["page"] == "/experiments/iot/exp1/"
    missing = get(token_client, "experiment/exp1", 400)
    assert missing["details"] == [{"field": "project", "message": "is required for an experiment"}]


def test_a_name_only_failed_events_mention_has_no_state(token_client, dataset):
    body = get(token_client, "project/nope")
    assert (body["state"], body["since"], body["members"]) == (None, None, [])
    assert counts(body)["project_created"] == (0, 1)


def test_an_unknown_entity_is_a_404_in_the_error_shape(token_client, dataset):
    body = get(token_client, "user/nobody", 404)
    assert body == {"error": "No user named 'nobody' in the audit log.", "details": []}
    body = get(token_client, "experiment/exp1?project=elsewhere", 404)
    assert "in project 'elsewhere'" in body["error"]


@pytest.mark.parametrize(
    ("path", "field"),
    [("facility/isi", "kind"), ("user/alice?since=now-1x", "since"), ("user/alice?tz=Mars", "tz")],
)
def test_bad_parameters_are_a_400_naming_the_field(token_client, dataset, path, field):
    assert get(token_client, path, 400)["details"][0]["field"] == field


def test_a_viewer_session_reads_it_and_anonymous_requests_are_refused(
    viewer_client, client, dataset
):
    assert get(viewer_client, "user/carol")["state"] == "frozen"
    assert client.get("/api/v1/entities/user/carol").status_code == 401


def test_the_schema_lists_the_operation_and_its_kinds(token_client):
    paths = token_client.get("/api/v1/openapi.json").json()["paths"]
    operation = paths["/api/v1/entities/{kind}/{name}"]["get"]
    kind = next(p for p in operation["parameters"] if p["name"] == "kind")
    assert kind["schema"]["enum"] == ["user", "organization", "project", "experiment"]
    assert {"200", "400", "401", "404"} <= set(operation["responses"])
