"""org_membership_events holds each successful membership event of an
organization, whoever writes `events`: a row per event, gone with it, a
missing payload kind or target included; organizations by members over a
window that ends in the past replay them, and over one that ended moments
ago, with a change since, too."""

from datetime import UTC, datetime, timedelta

import time_machine
from django.db import connection

from audit.aggregates import MEMBERSHIP_EVENTS
from audit.ingest import ingest
from tests import factories
from tests.dashboards.conftest import NOW, event, make_window, member, stat_rows

T = datetime(2026, 3, 5, 10, tzinfo=UTC)
CATEGORY = {"category": "Research"}


def stored() -> list[tuple]:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT org, kind, member, n, removals FROM org_membership_events ORDER BY at, member"
        )
        return cursor.fetchall()


def execute(statement: str, params: dict | None = None) -> int:
    """Run a statement on `events`; the table then still equals `events`."""
    with connection.cursor() as cursor:
        cursor.execute(statement, params)
        rowcount = cursor.rowcount
        assert MEMBERSHIP_EVENTS.differences(cursor, None, None) == []
        return rowcount


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


def _usc_and_isi(removed_at: datetime) -> None:
    ingest(
        [
            event("2026-03-01T10:00:00Z", "org_created", "isi", "organization", payload=CATEGORY),
            event("2026-03-01T10:00:00Z", "org_created", "usc", "organization", payload=CATEGORY),
            member("2026-03-02T10:00:00Z", "org_member_added", "isi", "organization", "bob"),
            member("2026-03-02T10:00:00Z", "org_member_added", "usc", "organization", "bob"),
            member("2026-03-02T11:00:00Z", "org_member_added", "usc", "organization", "eve"),
            member(removed_at.isoformat(), "org_member_deleted", "usc", "organization", "bob"),
        ],
        now=NOW,
    )


def test_top_orgs_of_a_window_that_ended_moments_ago_counts_its_members_then(db):
    # bob left usc a minute after the window ended: its latest rows say one
    # member, but two were members when the window ended.
    end = datetime(2026, 3, 4, tzinfo=UTC)
    _usc_and_isi(end + timedelta(minutes=1))
    window = make_window(since="2026-03-01T00:00:00Z", until=end.isoformat())
    with time_machine.travel(end + timedelta(minutes=2), tick=False):
        assert stat_rows("top_orgs", window) == [["usc", 2, 0], ["isi", 1, 0]]
        later = make_window(since="2026-03-01T00:00:00Z", until="2026-03-04T00:02:00Z")
        assert stat_rows("top_orgs", later) == [["isi", 1, 0], ["usc", 1, 0]]


def test_top_orgs_of_a_window_that_ended_long_ago_replays_every_org(db):
    _usc_and_isi(datetime(2026, 3, 5, 10, tzinfo=UTC))
    window = make_window(since="2026-03-01T00:00:00Z", until="2026-03-04T00:00:00Z")
    with time_machine.travel(NOW, tick=False):
        assert stat_rows("top_orgs", window) == [["usc", 2, 0], ["isi", 1, 0]]
        assert stat_rows("top_orgs", window) == stat_rows("top_orgs", window, "raw")
