"""Entity counts and one user's activity from their pre-aggregates
(entity_changes_hourly, _daily and _monthly, event_counts_daily_caller and
event_counts_daily_caller_type): equal to the raw answers, and kept exact by
ingest, late events and rebuilds."""

import random
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.db.models import Count

from audit import triggers
from audit.aggregates import COUNT_TABLES
from audit.ingest import ingest
from audit.models import DailyCallerCount, DailyCallerTypeCount, Entity, Event
from dashboards.stats import STATS
from demo.history import generate
from tests.dashboards.conftest import NOW, both, event, make_window, member, stat_rows, utc

TABLES = {"hour": "entity_changes_hourly", "day": "entity_changes_daily"}
TABLES["month"] = "entity_changes_monthly"


def _changes(unit: str = "hour") -> list[tuple]:
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT kind, {unit}, state, delta FROM {TABLES[unit]} WHERE delta <> 0"
            " ORDER BY 1, 2, 3"
        )
        return cursor.fetchall()


def _changes_from_intervals(unit: str = "hour") -> list[tuple]:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT kind, at, state, sum(d) FROM ("
            " SELECT kind, date_trunc(%(unit)s, valid_from, 'UTC') AS at, state, 1 AS d"
            " FROM entity_intervals UNION ALL"
            " SELECT kind, date_trunc(%(unit)s, valid_to, 'UTC'), state, -1 FROM entity_intervals"
            " WHERE valid_to IS NOT NULL) AS s GROUP BY 1, 2, 3 HAVING sum(d) <> 0 ORDER BY 1, 2, 3",
            {"unit": unit},
        )
        return cursor.fetchall()


def _assert_changes_exact() -> None:
    for unit in TABLES:
        assert _changes(unit) == _changes_from_intervals(unit), unit


@pytest.fixture
def shuffled(db) -> None:
    events = list(generate(3000, days=200, seed=17, end=NOW))
    random.Random(5).shuffle(events)
    for start in range(0, len(events), 300):
        ingest(events[start : start + 300], now=NOW)


def test_hourly_daily_and_monthly_entity_changes_follow_late_events_rebuilds_and_prunes(shuffled):
    assert _changes(), "the history changed entities"
    assert len({row[1] for row in _changes("month")}) >= 6, "changes in every month"
    assert len({row[1] for row in _changes("day")}) >= 150, "changes on most days"
    _assert_changes_exact()
    triggers.rebuild_aggregates()
    _assert_changes_exact()
    cutoff = NOW - timedelta(days=120)
    Event.objects.filter(timestamp__lt=cutoff).delete()
    _assert_changes_exact()
    triggers.rebuild_aggregates(None, cutoff)
    _assert_changes_exact()


def test_counts_and_growth_from_hourly_changes_equal_raw_in_every_zone(shuffled):
    zones = ["UTC", "Asia/Kolkata", "Asia/Kathmandu", "Australia/Lord_Howe", "America/New_York"]
    rng = random.Random(2)
    for zone in zones:
        for res in ("1h", "1d", "7d", "30d"):
            end = NOW - timedelta(minutes=rng.randrange(0, 150 * 24 * 60))
            length = timedelta(days=3) if res == "1h" else timedelta(days=rng.randrange(2, 150))
            start = end - length - timedelta(minutes=rng.randrange(0, 60))
            win = make_window(since=start.isoformat(), until=end.isoformat(), tz=zone, res=res)
            counts = both("current_counts", win)
            assert any(row[2] for row in counts)
            growth = both("entity_growth", win)
            # The last bucket ends the window: growth agrees with the cards.
            assert growth[-1][1:] == [
                sum(r[2] for r in counts if r[0] == kind)
                for kind in ("user", "organization", "project", "experiment")
            ]


# One user's own events (caller), events about them by others, and their
# memberships changed by others; each is counted once.
ZOE = [
    event("2026-03-08T10:00:00Z", "user_created", "zoe", "user", caller="zoe"),
    event("2026-03-08T11:00:00Z", "user_activated", "zoe", "user", caller="ops"),
    event("2026-03-08T23:30:00Z", "user_login", "zoe", "user", caller="zoe"),
    event("2026-03-09T00:30:00Z", "user_login", "zoe", "user", caller="zoe", success=False),
    member("2026-03-09T01:00:00Z", "org_member_added", "isi", "organization", "zoe"),
    member("2026-03-09T02:00:00Z", "project_member_added", "p1", "project", "zoe", caller="zoe"),
    event("2026-03-09T03:00:00Z", "user_login", "mallory", "user", caller="mallory"),
    # Someone else's login named zoe's subject: about her, by another caller.
    event("2026-03-09T04:00:00Z", "user_login", "zoe", "user", caller="admin-zoe"),
]


@pytest.fixture
def zoe(db) -> None:
    ingest(ZOE, now=NOW)


def activity(tz: str, **query: str) -> list:
    return both("entity_activity", make_window(tz=tz, **query), kind="user", name="zoe", project="")


def test_a_users_activity_counts_own_events_others_and_memberships_once(zoe):
    assert activity("UTC") == [[utc(2026, 3, 8), 3], [utc(2026, 3, 9), 4]]
    # Kolkata's March 9 runs from 18:30 UTC on March 8.
    assert activity("Asia/Kolkata") == [
        [utc(2026, 3, 7, 18, 30), 2],
        [utc(2026, 3, 8, 18, 30), 5],
    ]
    # New York's March 8 (05:00 UTC to 04:00 UTC, DST starts in it) holds all
    # but admin-zoe's login at 04:00 UTC, New York's midnight of March 9.
    assert activity("America/New_York") == [
        [utc(2026, 3, 8, 5), 6],
        [utc(2026, 3, 9, 4), 1],
    ]
    # A window ending on March 8 shows that day whole, and nothing after it.
    assert activity("UTC", since="2026-03-01", until="2026-03-08T10:30Z") == [[utc(2026, 3, 8), 3]]


def test_a_users_own_events_come_from_the_daily_pre_aggregate_in_utc(zoe):
    # A daily row no event backs shows up only if the stat reads the daily
    # pre-aggregate (the UTC days that are whole local days).
    DailyCallerCount.objects.create(
        day=utc(2026, 3, 5), caller="zoe", events=5, logins=0, failures=0
    )
    stat = STATS["entity_activity"]
    filters = {"kind": "user", "name": "zoe", "project": ""}
    rows = stat.compute(make_window(tz="UTC"), filters, "auto").rows
    assert rows[0] == [utc(2026, 3, 5), 5]
    assert stat.compute(make_window(tz="UTC"), filters, "raw").rows[0] == [utc(2026, 3, 8), 3]


def test_outside_utc_the_daily_counts_are_corrected_by_the_hours_that_differ(zoe):
    # New York's March 5 (05:00 UTC Mar 5 to 05:00 UTC Mar 6) takes UTC March
    # 5's daily row; its events before 05:00 UTC belong to March 4 and are
    # taken off. No event backs the rows, so only a read shows them.
    DailyCallerCount.objects.create(
        day=utc(2026, 3, 5), caller="zoe", events=5, logins=0, failures=0
    )
    ingest([event("2026-03-05T04:00:00Z", "user_login", "zoe", "user", caller="zoe")], now=NOW)
    stat = STATS["entity_activity"]
    filters = {"kind": "user", "name": "zoe", "project": ""}
    rows = stat.compute(make_window(tz="America/New_York"), filters, "auto").rows
    # The real login (04:00 UTC = 23:00 EST Mar 4) counts on March 4; the
    # daily row now holds 5 + 1, less that login: 5 on March 5.
    assert rows[:2] == [[utc(2026, 3, 4, 5), 1], [utc(2026, 3, 5, 5), 5]]


def test_outside_utc_a_day_is_corrected_from_the_nearest_third_hour(zoe):
    # Kolkata's March 6 begins at 18:30 UTC on March 5. March 5's row (no
    # event backs it) says 9 events, 2 of them before 18:00 UTC: with none
    # between 18:00 and 18:30 in `events`, 7 fall on Kolkata's March 6 and
    # 2 stay on its March 5. Only a read of the row's count before 18:00
    # tells them apart.
    DailyCallerCount.objects.create(
        day=utc(2026, 3, 5), caller="zoe", events=9, logins=0, failures=0, before_18=2
    )
    stat = STATS["entity_activity"]
    filters = {"kind": "user", "name": "zoe", "project": ""}
    rows = stat.compute(make_window(tz="Asia/Kolkata"), filters, "auto").rows
    assert rows[:2] == [[utc(2026, 3, 4, 18, 30), 2], [utc(2026, 3, 5, 18, 30), 7]]


# Whole, half and quarter hours off UTC, a 30-minute DST shift, UTC+14.
ZONES = ("UTC", "Europe/London", "Asia/Kolkata", "America/New_York", "Asia/Kathmandu")
ZONES += ("Australia/Lord_Howe", "Pacific/Kiritimati")


def _busiest_users(n: int) -> list[str]:
    busiest = (
        Event.objects.filter(caller__in=Entity.objects.filter(kind="user").values("name"))
        .values_list("caller")
        .order_by()
        .annotate(n=Count("event_uuid"))
        .order_by("-n")[:n]
    )
    names = [name for name, _ in busiest]
    assert names
    return names


def test_the_busiest_users_activity_equals_raw_events_in_any_zone(shuffled):
    names = _busiest_users(3)
    for tz in ZONES:
        for name in names:
            rows = both(
                "entity_activity",
                make_window(tz=tz, period="30d"),
                kind="user",
                name=name,
                project="",
            )
            assert sum(n for _, n in rows) > 0


def test_a_users_events_per_type_count_own_others_and_memberships_once(zoe):
    rows = both("entity_events", make_window(tz="UTC"), kind="user", name="zoe", project="")
    assert [r[:3] for r in rows] == [
        ["user_login", 2, 1],  # her own two (one failed) and admin-zoe's about her
        ["org_member_added", 1, 0],
        ["project_member_added", 1, 0],
        ["user_activated", 1, 0],
        ["user_created", 1, 0],
    ]


def test_the_busiest_users_events_by_type_equal_raw_events_for_any_window(shuffled):
    # Windows that start and end mid-day (their partial days read from
    # `events`, the whole ones from event_counts_daily_caller_type), in
    # zones a whole or half hour off UTC, and one shorter than a day.
    rng = random.Random(9)
    lengths = [timedelta(hours=20), *(timedelta(days=rng.randrange(2, 150)) for _ in range(5))]
    for tz in ("UTC", "Asia/Kolkata", "America/New_York"):
        for name in _busiest_users(2):
            for length in lengths:
                end = NOW - timedelta(minutes=rng.randrange(0, 40 * 24 * 60))
                start = end - length - timedelta(minutes=rng.randrange(0, 24 * 60))
                win = make_window(since=start.isoformat(), until=end.isoformat(), tz=tz)
                rows = both("entity_events", win, kind="user", name=name, project="")
                if length > timedelta(days=30):
                    assert sum(ok + bad for _, ok, bad, *_ in rows) > 0


def test_a_users_events_by_type_read_whole_days_from_the_daily_pre_aggregate(zoe):
    # A row no event backs shows up only if the stat reads the table.
    DailyCallerTypeCount.objects.create(
        day=utc(2026, 3, 5), caller="zoe", event_type="experiment_created", success=False, n=4
    )
    filters = {"kind": "user", "name": "zoe", "project": ""}
    rows = stat_rows("entity_events", make_window(tz="UTC"), **filters)
    assert ["experiment_created", 0, 4] in [r[:3] for r in rows]
    raw = stat_rows("entity_events", make_window(tz="UTC"), "raw", **filters)
    assert "experiment_created" not in [r[0] for r in raw]
    # A window ending before March 5 ends does not hold that day whole.
    early = make_window(since="2026-03-01", until="2026-03-05T23:00Z", tz="UTC")
    assert "experiment_created" not in [r[0] for r in stat_rows("entity_events", early, **filters)]


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    ("unit", "before_it"),
    [("month", "0026_failed_logins_monthly"), ("day", "0029_memberships_org_since")],
)
def test_the_changes_migrations_sum_the_intervals_stored_before_them(unit, before_it):
    # Undone and done again on a database with entities: the table comes back
    # whole from entity_intervals, the triggers write it again, and the cards
    # and the chart equal the raw replay.
    ingest(list(generate(600, days=120, seed=3, end=NOW)), now=NOW)
    before = _changes(unit)
    assert before
    executor = MigrationExecutor(connection)
    executor.migrate([("audit", before_it)])
    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())
    assert _changes(unit) == before == _changes_from_intervals(unit)
    ingest(list(generate(200, days=20, seed=4, end=NOW)), now=NOW)
    _assert_changes_exact()
    both("current_counts", make_window(period="90d"))
    both("entity_growth", make_window(period="90d", tz="America/New_York"))


@pytest.mark.django_db(transaction=True)
def test_the_checkpoints_migration_counts_the_days_stored_before_it_each_time(db):
    # Undone and done again: the columns come back as zeros, and the
    # rebuild after `migrate` fills them from `events` every time.
    ingest(list(generate(600, days=60, seed=8, end=NOW)), now=NOW)
    (daily,) = [t for t in COUNT_TABLES if t.table == "event_counts_daily_caller"]
    for _ in range(2):
        # As an operator does: `migrate` runs audit.triggers.install after.
        call_command("migrate", "audit", "0036_daily_caller_types", verbosity=0)
        call_command("migrate", verbosity=0)
        with connection.cursor() as cursor:
            assert daily.differences(cursor, None, None) == []
        assert DailyCallerCount.objects.filter(before_21__gt=0).exists()
    (name,) = _busiest_users(1)
    both("entity_activity", make_window(tz="Asia/Kolkata"), kind="user", name=name, project="")


def org_created(ts: str) -> dict:
    return event(ts, "org_created", "isi", "organization", payload={"category": "Research"})


def _add_daily_change(day, delta: int) -> None:
    """A row of entity_changes_daily that no interval backs: only a read of
    the table shows it."""
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO entity_changes_daily (kind, day, state, delta)"
            " VALUES ('organization', %(day)s, 'active', %(delta)s)",
            {"day": day, "delta": delta},
        )


def test_a_daily_growth_chart_reads_whole_utc_days_from_the_daily_changes(db):
    ingest([org_created("2026-03-01T10:00:00Z")], now=NOW)
    _add_daily_change(utc(2026, 3, 5), 2)
    window = make_window(since="2026-03-01", until="2026-03-10", res="1d")
    rows = stat_rows("entity_growth", window)
    assert [row[0] for row in rows[:5]] == [utc(2026, 3, day) for day in range(1, 6)]
    assert [row[2] for row in rows] == [1] * 4 + [3] * (len(rows) - 4)
    assert [row[2] for row in stat_rows("entity_growth", window, "raw")] == [1] * len(rows)
    # The cards at a moment after that day count it too, from the same table.
    cards = stat_rows("current_counts", window)
    assert ["organization", "active", 2, 0, 2] in cards


def test_outside_utc_a_day_counts_in_its_main_bucket_and_moves_its_other_hours(db):
    # New York's weeks begin on Monday at 05:00 UTC (04:00 once DST starts on
    # Sunday March 8). UTC Wednesday March 4 lies inside the week of March 2:
    # its row counts there. UTC Monday March 9 gives its first four hours to
    # the week before: its daily row counts in the week of March 9, where
    # its other 20 hours go, so a row planted on it alone counts there, while
    # the org created at 02:00 UTC that day (a Sunday evening in New York)
    # moves with its hour's row to the week of March 2.
    ingest([org_created("2026-03-09T02:00:00Z")], now=NOW)
    _add_daily_change(utc(2026, 3, 4), 2)
    _add_daily_change(utc(2026, 3, 9), 5)
    window = make_window(since="2026-03-02", until="2026-03-20", res="7d", tz="America/New_York")
    rows = stat_rows("entity_growth", window)
    assert [row[0] for row in rows] == [utc(2026, 3, 2, 5), utc(2026, 3, 9, 4), utc(2026, 3, 16, 4)]
    assert [row[2] for row in rows] == [1 + 2, 3 + 5, 8]
    assert [row[2] for row in stat_rows("entity_growth", window, "raw")] == [1, 1, 1]
