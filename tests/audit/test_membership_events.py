"""org_membership_events holds each successful membership event of an
organization, whoever writes `events`: a row per event, gone with it, a
missing payload kind or target included. Organizations by members read it
(tests/dashboards/test_daily_counts.py)."""

from datetime import UTC, datetime, timedelta

from django.db import connection

from audit.aggregates import MEMBERSHIP_EVENTS
from tests import factories
from tests.audit.adopt_helpers import exact_after

T = datetime(2026, 3, 5, 10, tzinfo=UTC)


def stored() -> list[tuple]:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT org, kind, member, n, removals FROM org_membership_events ORDER BY at, member"
        )
        return cursor.fetchall()


def execute(statement: str) -> int:
    return exact_after(MEMBERSHIP_EVENTS, statement)


def test_each_membership_event_is_a_row_until_it_is_deleted(db):
    def added(when, who, **fields):
        fields.setdefault("payload", {"kind": "usermember", "role": "member", "state": "active"})
        fields.setdefault("subject_type", "organization")
        fields.setdefault("event_type", "org_member_added")
        return factories.row(subject="isi", target=who, timestamp=when, **fields)

    added(T, "bob")
    added(T + timedelta(hours=1), None)  # no member named
    added(T + timedelta(hours=2), "eve", payload={})  # no kind
    added(T + timedelta(hours=3), "ann", success=False)  # failed: not a membership
    added(T + timedelta(hours=4), "amy", event_type="project_member_added", subject_type="project")
    factories.row(
        event_type="org_member_deleted",
        subject="isi",
        subject_type="organization",
        target="bob",
        timestamp=T + timedelta(hours=5),
        payload={"kind": "usermember"},
    )
    assert stored() == [
        ("isi", "usermember", "bob", 1, 0),
        ("isi", "usermember", None, 1, 0),
        ("isi", None, "eve", 1, 0),
        ("isi", "usermember", "bob", 1, 1),
    ]
    # The rows with a NULL key go with their events, as the others do.
    assert execute("DELETE FROM events WHERE subject = 'isi' AND target IS NULL") == 1
    assert execute("DELETE FROM events WHERE target = 'eve'") == 1
    assert stored() == [("isi", "usermember", "bob", 1, 0), ("isi", "usermember", "bob", 1, 1)]
    # An update is a delete and an insert: the removal becomes a failure.
    assert execute("UPDATE events SET success = false WHERE event_type = 'org_member_deleted'")
    assert stored() == [("isi", "usermember", "bob", 1, 0)]
