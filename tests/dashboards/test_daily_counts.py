"""The top users, projects and organizations from their pre-aggregates
(daily caller and project counts, org_memberships): exact at partial days,
after late events and after a prune."""

from datetime import UTC, datetime, timedelta
from io import StringIO

import time_machine
from django.core.management import call_command

from audit import triggers
from audit.ingest import ingest
from audit.models import DailyCallerCount, DailyProjectCount, Entity, Event, OrgMembership
from demo.history import generate
from tests.dashboards.conftest import NOW, both, event, login, make_window, member, stat_rows

CATEGORY = {"category": "Research"}


def test_a_window_counts_its_partial_days_from_events_and_its_whole_days_once(db):
    ingest(
        [
            event("2026-03-01T09:00:00Z", "user_created", "alice", "user", caller="alice"),
            event("2026-03-01T09:00:00Z", "user_created", "bob", "user", caller="bob"),
            login("2026-03-02T05:59:59Z", "alice"),  # before the window
            login("2026-03-02T06:00:00Z", "alice"),  # its first instant
            login("2026-03-02T23:00:00Z", "alice", success=False),
            login("2026-03-03T12:00:00Z", "bob"),  # the one whole UTC day
            login("2026-03-04T00:00:00Z", "bob"),
            login("2026-03-04T17:59:59Z", "bob"),  # its last instant
            login("2026-03-04T18:00:00Z", "bob"),  # after it
        ],
        now=NOW,
    )
    window = make_window(since="2026-03-02T06:00:00Z", until="2026-03-04T18:00:00Z")
    assert stat_rows("top_users", window) == [["bob", 3, 3, 0], ["alice", 2, 2, 1]]
    assert stat_rows("top_users", window) == stat_rows("top_users", window, "raw")


def test_top_projects_rank_by_each_measure_over_the_same_events(db):
    def experiment(ts: str, name: str, project: str, success: bool = True) -> dict:
        return event(
            ts,
            "experiment_created",
            name,
            "experiment",
            success=success,
            payload={"project": project},
        )

    ingest(
        [
            event("2026-03-01T10:00:00Z", "project_created", "iot", "project", payload=CATEGORY),
            event("2026-03-01T10:00:00Z", "project_created", "dns", "project", payload=CATEGORY),
            member("2026-03-01T11:00:00Z", "project_member_added", "iot", "project", "bob"),
            member("2026-03-01T12:00:00Z", "project_member_added", "iot", "project", "eve"),
            experiment("2026-03-02T10:00:00Z", "e1", "dns"),
            experiment("2026-03-03T10:00:00Z", "e2", "dns"),
            experiment("2026-03-03T11:00:00Z", "e3", "iot", success=False),
        ],
        now=NOW,
    )
    window = make_window(since="2026-03-01T06:00:00Z", until="2026-03-05T00:00:00Z")
    # iot: created, two members, a failed experiment; dns: created, two experiments.
    assert stat_rows("top_projects", window) == [["iot", 4, 0, 0, 0], ["dns", 3, 2, 0, 0]]
    # Ranked by experiments, a row still counts all of its project's events.
    assert stat_rows("top_projects", window, by="experiments") == [["dns", 3, 2, 0, 0]]
    for by in ("events", "experiments", "realizations"):
        assert stat_rows("top_projects", window, by=by) == stat_rows(
            "top_projects", window, "raw", by=by
        )


def _isi_and_usc(*removals: tuple[str, str]) -> None:
    """isi with bob, usc with bob and eve, then the (time, member) removals from usc."""
    ingest(
        [
            event("2026-03-01T10:00:00Z", "org_created", "isi", "organization", payload=CATEGORY),
            event("2026-03-01T10:00:00Z", "org_created", "usc", "organization", payload=CATEGORY),
            member("2026-03-02T10:00:00Z", "org_member_added", "isi", "organization", "bob"),
            member("2026-03-02T10:00:00Z", "org_member_added", "usc", "organization", "bob"),
            member("2026-03-02T11:00:00Z", "org_member_added", "usc", "organization", "eve"),
            *(member(at, "org_member_deleted", "usc", "organization", who) for at, who in removals),
        ],
        now=NOW,
    )


def test_top_orgs_before_a_later_change_replays_that_org(db):
    # After the first window ends: usc's answer then is not its latest.
    _isi_and_usc(("2026-03-05T10:00:00Z", "bob"), ("2026-03-05T10:00:00Z", "eve"))
    then = make_window(since="2026-03-01T00:00:00Z", until="2026-03-04T00:00:00Z")
    assert stat_rows("top_orgs", then) == [["usc", 2, 0], ["isi", 1, 0]]
    assert stat_rows("top_orgs", then) == stat_rows("top_orgs", then, "raw")
    later = make_window(since="2026-03-01T00:00:00Z", until="2026-03-06T00:00:00Z")
    assert stat_rows("top_orgs", later) == [["isi", 1, 0]]  # usc has no members left
    assert stat_rows("top_orgs", later) == stat_rows("top_orgs", later, "raw")


def test_top_orgs_of_a_window_that_ended_moments_ago_counts_its_members_then(db):
    # bob left usc a minute after the window ended: its latest rows say one
    # member, but two were members when the window ended.
    _isi_and_usc(("2026-03-04T00:01:00Z", "bob"))
    window = make_window(since="2026-03-01T00:00:00Z", until="2026-03-04T00:00:00Z")
    with time_machine.travel(datetime(2026, 3, 4, 0, 2, tzinfo=UTC), tick=False):
        assert stat_rows("top_orgs", window) == [["usc", 2, 0], ["isi", 1, 0]]
        assert stat_rows("top_orgs", window) == stat_rows("top_orgs", window, "raw")
        later = make_window(since="2026-03-01T00:00:00Z", until="2026-03-04T00:02:00Z")
        assert stat_rows("top_orgs", later) == [["isi", 1, 0], ["usc", 1, 0]]


def _counts() -> tuple:
    return (
        sorted(DailyCallerCount.objects.values_list()),
        sorted(DailyProjectCount.objects.values_list()),
        sorted(
            OrgMembership.objects.values_list("org", "kind", "member", "last_at", "removed"),
            key=str,
        ),
    )


def test_a_prune_keeps_the_top_n_pre_aggregates_exact(db):
    with time_machine.travel(NOW, tick=False):
        ingest(list(generate(2500, days=300, seed=9, end=NOW)), now=NOW)
        old = Event.objects.filter(timestamp__lt=NOW - timedelta(days=150)).count()
        before = _counts()
        call_command(
            "prune_events",
            "--older-than",
            "150",
            "--batch-size",
            "77",
            stdout=StringIO(),
            stderr=StringIO(),
        )
    assert old > 0 and Event.objects.count() < 2500
    pruned = _counts()
    assert pruned != before
    events = DailyCallerCount.objects.values_list("events", flat=True)
    assert min(events) > 0, "no row is left at zero"
    triggers.rebuild_aggregates()
    assert _counts() == pruned
    # And the stats still equal a count of the remaining events, across the cutoff.
    window = make_window(since=(NOW - timedelta(days=200)).isoformat(), until=NOW.isoformat())
    for name in ("top_users", "top_projects", "top_orgs"):
        assert stat_rows(name, window) == stat_rows(name, window, "raw"), name
        assert stat_rows(name, window), name


def test_a_delete_with_sql_is_taken_out_at_once_and_a_rebuild_changes_nothing(db):
    ingest(list(generate(1500, days=60, seed=4, end=NOW)), now=NOW)
    # Deleted from the middle of two days, with no command: the triggers on
    # `events` lower both days at once.
    start, end = NOW - timedelta(days=20, hours=5), NOW - timedelta(days=19, hours=2)
    before = _counts()
    Event.objects.filter(timestamp__gte=start, timestamp__lt=end).delete()
    deleted = _counts()
    assert deleted != before
    triggers.rebuild_aggregates(start, end)
    assert _counts() == deleted
    triggers.rebuild_aggregates()
    assert _counts() == deleted


def test_top_users_skip_callers_that_are_no_users_however_many_outrank_them(db):
    # Sixty services (callers with no user_created) outrank the one user:
    # more than the head of the ranking that is checked against the users.
    services = [
        event(
            f"2026-03-0{day}T12:00:00Z",
            "facility_status",
            f"site{i}",
            "facility",
            caller=f"svc{i:02}",
            payload={"status": "up"},
        )
        for i in range(60)
        for day in (2, 3)
    ]
    ingest(
        [
            *services,
            event("2026-03-01T09:00:00Z", "user_created", "zoe", "user", caller="zoe"),
            login("2026-03-02T10:00:00Z", "zoe"),
        ],
        now=NOW,
    )
    window = make_window(since="2026-03-01T06:00:00Z", until="2026-03-05T00:00:00Z")
    assert stat_rows("top_users", window, n=1) == [["zoe", 2, 1, 0]]
    assert stat_rows("top_users", window, n=1) == stat_rows("top_users", window, "raw", n=1)


def test_the_rebuild_command_restores_the_counts_alone_after_a_bulk_copy(db):
    # What bench/export.py does after copying events with SQL, past ingest.
    ingest(list(generate(800, days=30, seed=2, end=NOW)), now=NOW)
    counts = _counts()
    DailyCallerCount.objects.all().delete()
    DailyProjectCount.objects.all().delete()
    OrgMembership.objects.all().delete()
    entities = sorted(Entity.objects.values_list())
    Entity.objects.filter(kind="user").update(description="kept")
    out = StringIO()
    call_command("rebuild_aggregates", "--counts-only", stdout=out)
    assert "pre-aggregates rebuilt" in out.getvalue()
    assert _counts() == counts
    assert Entity.objects.filter(description="kept").count() == sum(
        1 for e in entities if e[0] == "user"
    )


def _failed_allocation(ts: str, facility: str, error: str) -> dict:
    return event(
        ts,
        "realization_allocated",
        "r1",
        "realization",
        target=facility,
        success=False,
        error=error,
        payload={
            "project": "iot",
            "experiment": "e1",
            "facility": facility,
            "resources": [f"{facility}-n001"],
        },
    )


def test_errors_and_failed_logins_say_when_each_was_last_seen_whatever_day_holds_it(db):
    # Window: 2026-03-02T06:00 to 2026-03-05T18:00, whole UTC days 3 and 4.
    ingest(
        [
            event("2026-03-01T09:00:00Z", "user_created", "alice", "user", caller="alice"),
            event("2026-03-01T09:00:00Z", "user_created", "bob", "user", caller="bob"),
            # alice: last seen at the window's start (its partial first day) only.
            login("2026-03-02T07:00:00Z", "alice", success=False),
            # bob: last in a whole day, then once more after the window.
            login("2026-03-03T08:00:00Z", "bob", success=False),
            login("2026-03-04T20:00:00Z", "bob", success=False),
            login("2026-03-05T19:00:00Z", "bob", success=False),
            # carol: in the partial last day.
            login("2026-03-03T01:00:00Z", "carol", success=False),
            login("2026-03-05T17:59:59Z", "carol", success=False),
            _failed_allocation("2026-03-02T06:00:00Z", "wisc", "no nodes"),
            _failed_allocation("2026-03-04T10:00:00Z", "wisc", "no nodes"),
            _failed_allocation("2026-03-04T11:00:00Z", "utah", "quota"),
            _failed_allocation("2026-03-05T18:00:00Z", "utah", "quota"),
        ],
        now=NOW,
    )
    window = make_window(since="2026-03-02T06:00:00Z", until="2026-03-05T18:00:00Z")
    logins = both("failed_logins", window)
    assert [(user, n, at.isoformat()) for user, n, at, _ in logins] == [
        ("bob", 2, "2026-03-04T20:00:00+00:00"),
        ("carol", 2, "2026-03-05T17:59:59+00:00"),
        ("alice", 1, "2026-03-02T07:00:00+00:00"),
    ]
    errors = both("top_errors", window)
    assert [(message, n, at.isoformat()) for message, _, n, at in errors] == [
        ("", 5, "2026-03-05T17:59:59+00:00"),  # the failed logins
        ("no nodes", 2, "2026-03-04T10:00:00+00:00"),
        ("quota", 1, "2026-03-04T11:00:00+00:00"),
    ]
    assert both("top_facilities", window) == [["wisc", 0, 0, 2], ["utah", 0, 0, 1]]
