"""Each stat on the fixed dataset (tests/dashboards/conftest.py) against
answers computed by hand."""

from datetime import UTC, datetime
from pathlib import Path

import pytest

from audit.buckets import bucket_starts
from audit.ingest import ingest
from dashboards.stats import STATS
from tests.dashboards.conftest import NOW, NY, event, make_window


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def buckets(window):
    return bucket_starts(window.unit, window.tz_name, window.start, window.end)


def run(stat_name: str, window, **filters):
    stat = STATS[stat_name]
    values = {p.name: p.default for p in stat.params} | filters
    return stat.compute(window, values)


# Local days in New York: Mar 6 and 7 start at 05:00 UTC (EST), Mar 8 too but
# lasts 23 hours (DST starts at 07:00 UTC), Mar 9 starts at 04:00 UTC (EDT).
NY_DAYS = [utc(2026, 3, 6, 5), utc(2026, 3, 7, 5), utc(2026, 3, 8, 5), utc(2026, 3, 9, 4)]


@pytest.fixture(autouse=True)
def _history(dataset):
    return dataset


@pytest.fixture
def ny_days():
    return make_window(since="2026-03-06", until="2026-03-09", tz=NY, res="1d")


def test_it_cuts_days_at_local_midnight_across_the_dst_change(ny_days):
    assert buckets(ny_days) == NY_DAYS


def test_the_dst_day_has_23_hourly_buckets_in_new_york():
    window = make_window(since="2026-03-08", until="2026-03-08", tz=NY, res="1h")
    assert len(buckets(window)) == 23


def test_logins_fall_in_the_local_day_they_happened(ny_days):
    rows = run("logins", ny_days).rows
    # 23:30 EST Mar 6 | 00:30 EST Mar 7 | failed 23:00 EDT Mar 8 | failed 00:00 EDT Mar 9
    assert rows == [[NY_DAYS[0], 1, 0], [NY_DAYS[1], 1, 0], [NY_DAYS[2], 0, 1], [NY_DAYS[3], 0, 1]]


def test_the_same_logins_share_one_utc_day():
    window = make_window(since="2026-03-06", until="2026-03-09", tz="UTC", res="1d")
    rows = {r[0]: r[1:] for r in run("logins", window).rows}
    assert rows[utc(2026, 3, 7)] == [2, 0]
    assert rows[utc(2026, 3, 9)] == [0, 2]


def test_growth_counts_deletes_and_re_creations(ny_days):
    rows = run("entity_growth", ny_days).rows
    # users: alice+bob | bob declined at local midnight | carol | alice deleted
    # projects: botnets | deleted | re-created, and iot, first seen as the
    # project of an experiment | ; experiments: exp1 in two projects
    assert rows == [
        [NY_DAYS[0], 2, 1, 1, 0],
        [NY_DAYS[1], 1, 1, 0, 0],
        [NY_DAYS[2], 2, 1, 2, 2],
        [NY_DAYS[3], 1, 1, 2, 2],
    ]


def test_current_counts_show_states_and_change_over_the_period(ny_days):
    rows = {(r[0], r[1]): r[2:] for r in run("current_counts", ny_days).rows}
    # carol is frozen; alice (frozen late, then deleted) is gone; bob declined.
    assert rows["user", "frozen"] == [1, 0, 1]
    assert rows["user", "active"] == [0, 0, 0]
    assert rows["user", "pending"] == [0, 0, 0]
    # botnets was re-created (pending: never activated); iot, never
    # created, was seen as an experiment's project and so exists, active.
    assert rows["project", "pending"] == [1, 0, 1]
    assert rows["project", "active"] == [1, 0, 1]
    assert rows["experiment", "exists"] == [2, 0, 2]


def test_counts_in_the_middle_of_the_history():
    window = make_window(since="2026-03-06T00:00", until="2026-03-08T12:00", tz="UTC")
    rows = {(r[0], r[1]): r[2] for r in run("current_counts", window).rows}
    # At 12:00 UTC Mar 8: alice active, carol active (since 07:30), bob gone.
    assert rows["user", "active"] == 2
    assert rows["project", "pending"] == rows["project", "active"] == 0


def test_period_summary_counts_failures_and_login_users(ny_days):
    rows = {r[0]: r[1:] for r in run("period_summary", ny_days).rows}
    # value, previous, difference, change in percent (none from zero)
    assert rows["logins_succeeded"] == [2, 0, 2, None]
    assert rows["logins_failed"] == [2, 0, 2, None]
    assert rows["login_users"] == [1, 0, 1, None]
    assert rows["events"][0] == 26
    # 3 failures (two logins, one project creation) out of 26 events.
    assert rows["failure_rate"][0] == pytest.approx(11.54)


def test_events_by_type_put_a_midnight_event_in_the_new_day(ny_days):
    rows = {(r[0], r[1]): r[2] for r in run("events_by_type", ny_days).rows}
    assert rows[NY_DAYS[0], "user_created"] == 2  # alice, and bob at 23:59
    assert rows[NY_DAYS[1], "user_declined"] == 1  # bob at 00:00
    filtered = run("events_by_type", ny_days, event_type=["user_login"], success=False).rows
    assert filtered == [[NY_DAYS[2], "user_login", 1], [NY_DAYS[3], "user_login", 1]]


def test_active_users_per_day_week_and_month(ny_days):
    rows = run("active_users", ny_days).rows
    assert ["day", NY_DAYS[0], 1] in rows
    assert ["day", NY_DAYS[1], 1] in rows
    assert ["week", utc(2026, 3, 2, 5), 1] in rows
    assert ["month", utc(2026, 3, 1, 5), 1] in rows


def test_top_users_ranks_by_events_caused(ny_days):
    rows = run("top_users", ny_days, n=2).rows
    assert [r[0] for r in rows] == ["alice", "carol"]
    assert rows[0][2:] == [3, 1]  # three logins, one failed


def test_top_projects_count_their_own_and_experiment_events(ny_days):
    rows = run("top_projects", ny_days).rows
    assert rows[0] == ["botnets", 5, 1, 0, 0]
    by_experiments = run("top_projects", ny_days, by="experiments").rows
    assert sorted(r[0] for r in by_experiments) == ["botnets", "iot"]


def test_top_orgs_counts_members_after_removals(ny_days):
    # alice (creator) and carol; bob was removed.
    assert run("top_orgs", ny_days).rows == [["isi", 2, 0]]


def test_failed_logins_name_who_failed(ny_days):
    rows = run("failed_logins", ny_days).rows
    assert [(r[0], r[1], r[3]) for r in rows] == [
        ("alice", 1, "invalid credentials"),
        ("mallory", 1, "no such user"),
    ]


def test_failed_logins_say_how_many_users_failed_and_n_0_lists_them_all(ny_days):
    top = run("failed_logins", ny_days, n=1)
    assert [r[0] for r in top.rows] == ["alice"]
    assert top.extra["total"] == 2
    every = run("failed_logins", ny_days, n=0)
    assert [r[0] for r in every.rows] == ["alice", "mallory"]
    assert every.extra["total"] == 2


def test_failures_by_type_and_top_errors(ny_days):
    assert run("failures_by_type", ny_days).rows == [
        ["user_login", 2, 4, 50.0],
        ["project_created", 1, 3, 33.33],
    ]
    errors = run("top_errors", ny_days).rows
    assert {(r[0], r[1]) for r in errors} == {
        ("invalid credentials", "user_login"),
        ("no such user", "user_login"),
        ("quota exceeded", "project_created"),
    }


def test_period_summary_compares_with_a_busy_previous_period():
    # March 9 in New York (04:00 UTC March 9 to 04:00 UTC March 10) against
    # the 24 hours before it (from 04:00 UTC March 8).
    window = make_window(since="2026-03-09", until="2026-03-09", tz=NY)
    rows = {r[0]: r[1:] for r in run("period_summary", window).rows}
    # Now: mallory's failed login, carol frozen, alice frozen (late), alice deleted.
    # Before: carol's creation and activation, 3 isi and 1 botnets membership
    # changes, 2 project creations (one failed), 2 experiments, alice's failed login.
    assert rows["events"] == [4, 11, -7, -63.6]
    assert rows["logins_failed"] == [1, 1, 0, 0.0]
    assert rows["logins_succeeded"] == [0, 0, 0, None]
    # 1 of 4 against 2 of 11 (18.18%): 6.82 percentage points, 37.5% more.
    assert rows["failure_rate"] == [25.0, 18.18, 6.82, 37.5]


@pytest.fixture
def allocations():
    def allocation(ts, event_type, name, facility, success=True):
        payload = {
            "project": "botnets",
            "experiment": "exp1",
            "facility": facility,
            "resources": ["n001"],
        }
        return event(
            ts,
            event_type,
            name,
            event_type.split("_")[0],
            caller="carol",
            target=facility,
            success=success,
            error=None if success else "no free resources",
            payload=payload,
        )

    ingest(
        [
            allocation("2026-03-08T18:00:00Z", "realization_allocated", "r1", "isi"),
            allocation("2026-03-08T18:10:00Z", "realization_allocated", "r2", "isi"),
            allocation("2026-03-08T18:20:00Z", "realization_allocated", "r3", "isi", False),
            allocation("2026-03-09T10:00:00Z", "realization_freed", "r2", "isi"),
            allocation("2026-03-08T19:00:00Z", "materialization_allocated", "m1", "utah"),
            allocation("2026-03-08T19:05:00Z", "materialization_allocated", "m2", "utah"),
            allocation("2026-03-08T19:10:00Z", "realization_allocated", "r4", "utah"),
            allocation("2026-03-09T11:00:00Z", "materialization_allocated", "m3", "utah", False),
            # After the window: counted in neither.
            allocation("2026-03-10T11:00:00Z", "realization_allocated", "r5", "isi"),
        ],
        now=NOW,
    )


def test_top_facilities_is_empty_without_allocations(ny_days):
    assert run("top_facilities", ny_days).rows == []


def test_top_facilities_rank_by_successful_allocations(ny_days, allocations):
    # utah: r4, m1, m2 (m3 failed); isi: r1, r2 (r3 failed; freeing is no allocation).
    assert run("top_facilities", ny_days).rows == [["utah", 1, 2, 1], ["isi", 2, 0, 1]]
    assert run("top_facilities", ny_days, n=1).rows == [["utah", 1, 2, 1]]


def test_current_counts_of_resources_and_organizations(ny_days, allocations):
    rows = {(r[0], r[1]): r[2:] for r in run("current_counts", ny_days).rows}
    # now, at the period start, change: r1 and r4 (r2 freed, r3 failed), m1 and
    # m2 (m3 failed); isi, created on March 6 at 15:00 UTC, after the start.
    assert rows["realization", "active"] == [2, 0, 2]
    assert rows["materialization", "active"] == [2, 0, 2]
    assert rows["organization", "pending"] == [1, 0, 1]
    # Half-way, at 18:15 UTC on March 8: r1 and r2 only.
    middle = make_window(since="2026-03-06T00:00", until="2026-03-08T18:15", tz="UTC")
    rows = {(r[0], r[1]): r[2] for r in run("current_counts", middle).rows}
    assert rows["realization", "active"] == 2
    assert rows["materialization", "active"] == 0


def test_entity_events_and_activity_for_one_project(ny_days):
    counts = run("entity_events", ny_days, kind="project", name="botnets", project="").rows
    assert {r[0]: (r[1], r[2]) for r in counts} == {
        "project_created": (2, 0),
        "project_deleted": (1, 0),
        "project_member_added": (1, 0),
        "experiment_created": (1, 0),
    }
    days = run("entity_activity", ny_days, kind="project", name="botnets", project="").rows
    assert days == [[NY_DAYS[0], 1], [NY_DAYS[1], 1], [NY_DAYS[2], 3]]


def test_an_experiment_is_named_within_its_project(ny_days):
    counts = run("entity_events", ny_days, kind="experiment", name="exp1", project="iot").rows
    assert counts[0][:3] == ["experiment_created", 1, 0]


def test_every_stat_has_a_title_description_and_test():
    source = Path(__file__).read_text()
    for name, stat in STATS.items():
        assert stat.title and stat.description
        assert f'"{name}"' in source, f"no test mentions {name}"
