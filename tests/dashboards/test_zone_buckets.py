"""Counts per bucket in zones whose bucket edges cut UTC hours in two
(Asia/Kolkata +05:30, Asia/Kathmandu +05:45, Lord Howe Island's 30-minute
DST shift): the hourly pre-aggregate answers them too, and they equal the
same counts from raw `events`, to the event on either side of each edge."""

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from django.db.models import F

from audit.buckets import fetch, straddles
from audit.ingest import ingest
from audit.models import (
    DailyCount,
    DailyLoginUser,
    HourlyCount,
    HourlyLoginUser,
    MonthlyLoginUser,
    WeeklyLoginUser,
)
from dashboards.stats import STATS
from tests.dashboards.conftest import both, event, login, make_window, stat_rows, utc

NOW = datetime(2026, 4, 10, 12, 0, tzinfo=UTC)


# Local midnight of March 6 is 18:30 UTC on March 5 in Kolkata, 18:15 in
# Kathmandu. Each edge has events just before and just after it, and the
# hour it cuts has its own pre-aggregate row (18:00 UTC).
EDGE_EVENTS = [
    login("2026-03-05T17:59:00Z"),
    login("2026-03-05T18:00:00Z"),
    login("2026-03-05T18:14:59Z", "bob"),
    login("2026-03-05T18:15:00Z", "bob", success=False),
    login("2026-03-05T18:29:59Z"),
    login("2026-03-05T18:30:00Z", success=False),
    login("2026-03-05T18:59:59Z", "bob"),
    login("2026-03-05T19:00:00Z"),
    login("2026-03-06T18:20:00Z", "carol"),
    login("2026-03-06T18:40:00Z", "carol"),
    event("2026-03-05T18:10:00Z", "user_created", "dave", "user", caller="ops"),
    event("2026-03-05T18:50:00Z", "user_created", "erin", "user", caller="ops"),
]


@pytest.fixture
def edges(db):
    ingest(EDGE_EVENTS, now=NOW)


def test_a_kolkata_day_begins_at_18_30_utc_inside_an_hourly_row(edges):
    days = make_window(NOW, since="2026-03-05", until="2026-03-07", tz="Asia/Kolkata", res="1d")
    rows = both("logins", days)
    # Mar 5 (from 18:30 UTC Mar 4): 17:59, 18:00, 18:14:59, 18:15 (failed), 18:29:59.
    # Mar 6: 18:30 (failed), 18:59:59, 19:00 and carol's 18:20 on Mar 6.
    # Mar 7 (from 18:30 UTC Mar 6): carol's 18:40.
    assert rows == [
        [utc(2026, 3, 4, 18, 30), 4, 1],
        [utc(2026, 3, 5, 18, 30), 3, 1],
        [utc(2026, 3, 6, 18, 30), 1, 0],
    ]
    by_type = {(r[0], r[1]): r[2] for r in both("events_by_type", days)}
    assert by_type[utc(2026, 3, 4, 18, 30), "user_created"] == 1  # dave at 18:10
    assert by_type[utc(2026, 3, 5, 18, 30), "user_created"] == 1  # erin at 18:50


def test_a_kathmandu_day_begins_at_18_15_utc(edges):
    days = make_window(NOW, since="2026-03-05", until="2026-03-07", tz="Asia/Kathmandu", res="1d")
    # Before 18:15 UTC: 17:59, 18:00, bob's 18:14:59; from it on, the rest of the hour.
    assert both("logins", days) == [
        [utc(2026, 3, 4, 18, 15), 3, 0],
        [utc(2026, 3, 5, 18, 15), 3, 2],
        [utc(2026, 3, 6, 18, 15), 2, 0],
    ]


def test_half_hour_zones_count_equally_hourly_weekly_monthly_and_with_filters(edges):
    for tz in ("Asia/Kolkata", "Asia/Kathmandu", "Pacific/Chatham", "Australia/Lord_Howe"):
        for res in ("1h", "1d", "7d", "30d"):
            win = make_window(
                NOW, since="2026-03-05T12:00", until="2026-03-07T03:00", tz=tz, res=res
            )
            assert both("events_by_type", win), (tz, res)
            assert both("events_by_type", win, event_type=["user_login"], success=False)
            assert both("logins", win)
            failures = both("failures_by_type", win)
            assert both("period_summary", win)
            assert both("active_users", win), (tz, res)
            if tz == "Asia/Kolkata":
                # From 06:30 UTC Mar 5 to 21:30 UTC Mar 6: every login.
                assert failures == [["user_login", 2, 10, 20.0]]


def test_the_hours_a_kolkata_day_does_not_cut_come_from_the_pre_aggregate(edges):
    # A pre-aggregate row that no event backs shows up in the answer only if
    # the stat reads the pre-aggregate: 03:00 UTC lies wholly inside March 6
    # in Kolkata, while 18:00 UTC is cut by midnight and partly read raw.
    # Planted in both the hourly and the daily counts, as an event would be:
    # the UTC day of March 6 is read from the daily ones, its hours after
    # 18:00 moved to March 7 from the hourly ones.
    HourlyCount.objects.create(
        bucket=utc(2026, 3, 6, 3), event_type="user_login", success=True, n=7
    )
    row = {"day": utc(2026, 3, 6), "event_type": "user_login", "success": True}
    DailyCount.objects.get_or_create(**row, defaults={"n": 0})
    DailyCount.objects.filter(**row).update(n=F("n") + 7)
    days = make_window(NOW, since="2026-03-05", until="2026-03-07", tz="Asia/Kolkata", res="1d")
    rows = {r[0]: r[1:] for r in STATS["logins"].compute(days, {}, "auto").rows}
    assert rows[utc(2026, 3, 5, 18, 30)] == [3 + 7, 1]


def test_active_users_of_a_kolkata_day_split_the_hour_midnight_cuts(edges):
    days = make_window(NOW, since="2026-03-05", until="2026-03-07", tz="Asia/Kolkata", res="1d")
    rows = both("active_users", days)
    # Mar 5 (to 18:30 UTC): alice, and bob at 18:14:59. Mar 6: bob at 18:59:59,
    # alice at 19:00, carol at 18:20 on Mar 6. Mar 7: carol's 18:40.
    assert [r for r in rows if r[0] == "day"] == [
        ["day", utc(2026, 3, 4, 18, 30), 2],
        ["day", utc(2026, 3, 5, 18, 30), 3],
        ["day", utc(2026, 3, 6, 18, 30), 1],
    ]
    # One week (from Monday Mar 2) and one month, cut to the period.
    assert [r for r in rows if r[0] != "day"] == [
        ["week", utc(2026, 3, 1, 18, 30), 3],
        ["month", utc(2026, 2, 28, 18, 30), 3],
    ]


def test_active_users_of_a_kolkata_day_come_from_each_utc_days_first_and_last_login(edges):
    # As for the logins above: a row no event backs shows up only if read.
    # A Kolkata day runs from 18:30 UTC (quarter 74 of the UTC day) to
    # 18:30 UTC. On March 5 UTC, yan's logins all came before 18:30, so he
    # counts on March 5 only; xia's all after it, on March 6 only; wen's
    # on both sides of it, on both days. zed's login at 03:00 UTC on March 6
    # counts on March 6; his login after 18:30 that day on March 7.
    for day, name, first, last in [
        (utc(2026, 3, 5), "yan", 10, 73),
        (utc(2026, 3, 5), "xia", 74, 90),
        (utc(2026, 3, 5), "wen", 73, 74),
        (utc(2026, 3, 6), "zed", 12, 80),
    ]:
        DailyLoginUser.objects.create(
            day=day, username=name, n=2, first_quarter=first, last_quarter=last
        )
    days = make_window(NOW, since="2026-03-05", until="2026-03-07", tz="Asia/Kolkata", res="1d")
    rows = {
        r[1]: r[2] for r in STATS["active_users"].compute(days, {}, "auto").rows if r[0] == "day"
    }
    assert rows[utc(2026, 3, 4, 18, 30)] == 2 + 2  # alice, bob; yan, wen
    assert rows[utc(2026, 3, 5, 18, 30)] == 3 + 3  # bob, alice, carol; xia, wen, zed
    assert rows[utc(2026, 3, 6, 18, 30)] == 1 + 1  # carol; zed


def test_a_kolkata_day_cut_twice_inside_one_utc_day_reads_its_hours(edges):
    # The window opens at 06:00 UTC on March 5: its first Kolkata day then
    # runs from 06:00 to 18:30 UTC, inside one UTC day, whose first and
    # last logins cannot say who logged in between. Its hours answer it,
    # the cut hour 18:00 by its quarter counts: yan's one login came before
    # the cut (n30), xia's after it.
    HourlyLoginUser.objects.create(hour=utc(2026, 3, 5, 9), username="zed", n=1)
    HourlyLoginUser.objects.create(hour=utc(2026, 3, 5, 18), username="yan", n=1, n30=1)
    HourlyLoginUser.objects.create(hour=utc(2026, 3, 5, 18), username="xia", n=2, n15=0, n30=0)
    win = make_window(
        NOW, since="2026-03-05T11:30", until="2026-03-07", tz="Asia/Kolkata", res="1d"
    )
    assert win.start == utc(2026, 3, 5, 6)
    rows = {
        r[1]: r[2] for r in STATS["active_users"].compute(win, {}, "auto").rows if r[0] == "day"
    }
    assert rows[utc(2026, 3, 4, 18, 30)] == 2 + 2  # alice, bob; zed, yan
    assert rows[utc(2026, 3, 5, 18, 30)] == 3  # bob, alice, carol: xia's day is read by day


def test_the_quarter_counts_of_a_cut_hour_place_each_user_on_the_right_side(edges):
    # 18:00 UTC Mar 5: alice at 18:00 and 18:29:59, bob at 18:14:59 and
    # 18:59:59 (his 18:15 failed).
    row = {r.username: r for r in HourlyLoginUser.objects.filter(hour=utc(2026, 3, 5, 18))}
    assert (row["alice"].n, row["alice"].n15, row["alice"].n30, row["alice"].n45) == (2, 1, 2, 2)
    assert (row["bob"].n, row["bob"].n15, row["bob"].n30, row["bob"].n45) == (2, 1, 1, 1)


def test_a_resent_or_late_login_counts_its_user_once_in_its_own_hour(edges):
    assert ingest(EDGE_EVENTS, now=NOW).accepted == 0
    late = login("2026-03-05T18:05:00Z", "alice")
    ingest([late], now=NOW)
    assert HourlyLoginUser.objects.get(hour=utc(2026, 3, 5, 18), username="alice").n == 3
    assert not HourlyLoginUser.objects.filter(username="nobody").exists()
    # A failed login makes no one active.
    assert not HourlyLoginUser.objects.filter(hour=utc(2026, 3, 5, 18), n=0).exists()


# Lord Howe Island leaves DST at 02:00 +11 on 5 April 2026 (15:00 UTC on
# April 4), back to 01:30 +10:30: local 01:30-02:00 happens twice, and local
# midnight moves from 13:00 UTC (a whole hour) to 13:30 UTC (inside one).
LORD_HOWE = "Australia/Lord_Howe"
DST_EVENTS = [
    login(f"2026-04-0{day}T{hm}:00Z", user)
    for day, hm, user in [
        (3, "12:59", "alice"),
        (3, "13:00", "alice"),
        (4, "12:59", "bob"),
        (4, "13:00", "bob"),
        (4, "14:10", "alice"),
        (4, "14:40", "alice"),
        (4, "14:59", "bob"),
        (4, "15:00", "bob"),
        (4, "15:20", "carol"),
        (4, "15:30", "carol"),
        (4, "15:45", "alice"),
        (4, "16:10", "alice"),
        (5, "13:20", "bob"),
        (5, "13:29", "bob"),
        (5, "13:30", "carol"),
        (5, "13:40", "carol"),
        (6, "13:29", "alice"),
        (6, "13:31", "alice"),
    ]
]


@pytest.fixture
def dst_change(db):
    ingest(DST_EVENTS, now=NOW)


def test_lord_howe_days_follow_its_30_minute_dst_change(dst_change):
    days = make_window(NOW, since="2026-04-03", until="2026-04-06", tz=LORD_HOWE, res="1d")
    # April 5 lasts 24.5 hours: 13:00 UTC April 4 to 13:30 UTC April 5.
    assert both("logins", days) == [
        [utc(2026, 4, 2, 13), 1, 0],  # 12:59 Apr 3
        [utc(2026, 4, 3, 13), 2, 0],  # 13:00 Apr 3, 12:59 Apr 4
        [utc(2026, 4, 4, 13), 11, 0],  # 13:00 Apr 4 to 13:29 Apr 5
        [utc(2026, 4, 5, 13, 30), 3, 0],  # 13:30, 13:40 Apr 5, 13:29 Apr 6
    ]


def test_lord_howe_hours_across_the_dst_change_equal_raw_events(dst_change):
    for res in ("1h", "1d", "7d", "30d"):
        win = make_window(
            NOW, since="2026-04-04T10:00", until="2026-04-06T02:00", tz=LORD_HOWE, res=res
        )
        rows = both("logins", win)
        assert both("active_users", win), res
        # From 23:00 UTC Apr 3 to 15:30 UTC Apr 5.
        assert sum(r[1] for r in rows) == 14, res
    # 20:00 +11 to 04:00 +10:30 (09:00 to 17:30 UTC), through the repeated half hour.
    hours = make_window(
        NOW, since="2026-04-04T20:00", until="2026-04-05T04:00", tz=LORD_HOWE, res="1h"
    )
    assert sum(r[1] for r in both("logins", hours)) == 10


def test_a_window_of_a_few_minutes_in_kolkata_is_counted_from_raw_events(edges):
    win = make_window(
        NOW, since="2026-03-05T18:20Z", until="2026-03-05T18:40Z", tz="Asia/Kolkata", res="1h"
    )
    assert both("logins", win) == [[utc(2026, 3, 5, 17, 30), 1, 0], [utc(2026, 3, 5, 18, 30), 0, 1]]


def test_the_year_is_cut_once_per_zone_and_unit(db):
    # PostgreSQL's date_trunc finds the cut hours (once per zone, unit and
    # year, then cached): the database, whatever ran before.
    # One day per day: the hour before each Kolkata midnight; none in UTC.
    cut = straddles("day", "Asia/Kolkata", utc(2026, 1, 1), utc(2026, 2, 1))
    assert [h for h, _, _ in cut] == [
        utc(2025, 12, 31, 18) + timedelta(days=d) for d in range(1, 32)
    ]
    assert all(edge == hour + timedelta(minutes=30) for hour, _, edge in cut)
    assert straddles("day", "UTC", utc(2026, 1, 1), utc(2026, 2, 1)) == []


def test_fetch_reads_timestamps_as_aware_utc_to_the_microsecond(db):
    """fetch loads timestamptz with psycopg's C loader rather than Django's:
    a Kolkata midnight and a microsecond still come back as the same aware
    UTC datetimes the ORM gives, whatever zone the query cut them in."""
    (bucket, precise, negative) = fetch(
        "SELECT date_trunc('day', %(t)s::timestamptz, 'Asia/Kolkata'), %(t)s::timestamptz,"
        " '1969-07-20 20:17:40.5-05'::timestamptz",
        {"t": datetime(2026, 3, 6, 2, 0, 0, 123456, tzinfo=UTC)},
    )[0]
    assert bucket == datetime(2026, 3, 5, 18, 30, tzinfo=UTC)
    assert precise == datetime(2026, 3, 6, 2, 0, 0, 123456, tzinfo=UTC)
    assert negative == datetime(1969, 7, 21, 1, 17, 40, 500000, tzinfo=UTC)
    assert {v.utcoffset() for v in (bucket, precise, negative)} == {timedelta(0)}
    assert str(bucket) == "2026-03-05 18:30:00+00:00"


def ghost(model, name="ghost", *, first, last=None, **unit) -> None:
    """A weekly or monthly login row that no event backs."""
    model.objects.create(username=name, n=1, first_login=first, last_login=last or first, **unit)


@pytest.mark.parametrize("zone", ["UTC", "Europe/London"])
def test_active_users_of_whole_utc_days_and_partial_edge_days_each_count_a_user_once(db, zone):
    # Whole UTC days are read from login_users_daily (UTC, and London in
    # winter), the partial first and last days from hours and `events`, and
    # London's DST day (23 hours, March 29) from hours: alice logs in on
    # every one of them, twice on the edge days, inside and outside the
    # whole hours.
    logins = ["2026-03-24T00:40:00Z", "2026-03-24T10:00:00Z", "2026-03-25T09:00:00Z"]
    logins += ["2026-03-29T00:30:00Z", "2026-03-29T12:00:00Z", "2026-03-30T01:30:00Z"]
    logins += ["2026-03-31T08:00:00Z", "2026-03-31T12:20:00Z", "2026-03-31T12:50:00Z"]
    ingest([login(at) for at in logins] + [login("2026-03-25T09:00:00Z", "bob")], now=NOW)
    win = make_window(NOW, since="2026-03-24T00:30:00Z", until="2026-03-31T12:45:00Z", tz=zone)
    rows = both("active_users", win)
    days = {bucket: users for per, bucket, users in rows if per == "day"}
    assert sorted(days.values(), reverse=True)[:2] == [2, 1]  # Mar 25: alice and bob
    assert set(days.values()) <= {1, 2} and len([n for n in days.values() if n]) == 5
    assert [users for per, _, users in rows if per == "week"] == [2, 1]


@pytest.mark.parametrize("zone", ["UTC", "Europe/London"])
def test_whole_utc_weeks_and_months_count_their_users_from_the_weekly_and_monthly_rows(db, zone):
    # From Thursday January 1 to March 10, 2026 (London keeps UTC until
    # March 29): January, February and the weeks from Monday January 5 to
    # Sunday March 8 are whole; the first week, the last one and March are
    # cut to the period. alice logs in either side of a week's edge and of
    # a month's, bob in the first week and the last, carol in a whole week
    # of the cut March.
    logins = [login(at) for at in ("2026-01-11T23:59:59Z", "2026-01-12T00:00:00Z")]
    logins += [login(at) for at in ("2026-01-31T23:59:59Z", "2026-02-01T00:00:00Z")]
    logins += [login(at, "bob") for at in ("2026-01-02T09:00:00Z", "2026-03-09T09:00:00Z")]
    logins += [login("2026-03-03T10:00:00Z", "carol")]
    ingest(logins, now=NOW)
    win = make_window(NOW, since="2026-01-01", until="2026-03-10", tz=zone)

    def per(unit: str, rows: list) -> dict:
        return {bucket: users for each, bucket, users in rows if each == unit and users}

    rows = both("active_users", win)
    assert per("week", rows) == {
        utc(2025, 12, 29): 1,  # bob, the week cut to begin on Thursday
        utc(2026, 1, 5): 1,
        utc(2026, 1, 12): 1,
        utc(2026, 1, 26): 1,  # alice's Saturday and Sunday logins
        utc(2026, 3, 2): 1,
        utc(2026, 3, 9): 1,
    }
    assert per("month", rows) == {utc(2026, 1, 1): 2, utc(2026, 2, 1): 1, utc(2026, 3, 1): 2}

    # A row that no event backs shows up only where the stat reads it: the
    # whole weeks and months count the weekly and monthly rows, the cut
    # ones their days' users.
    for week in (utc(2025, 12, 29), utc(2026, 1, 12), utc(2026, 3, 9)):
        ghost(WeeklyLoginUser, week=week, first=week, last=week)
    for month in (utc(2026, 2, 1), utc(2026, 3, 1)):
        ghost(MonthlyLoginUser, month=month, first=month, last=month)
    planted = stat_rows("active_users", win)
    assert per("week", planted) == per("week", rows) | {utc(2026, 1, 12): 2}
    assert per("month", planted) == per("month", rows) | {utc(2026, 2, 1): 2}
    assert per("day", planted) == per("day", rows)


def test_a_new_york_week_or_month_takes_its_users_from_two_utc_ones_by_their_logins(db):
    # New York's week of Monday January 12 runs from 05:00 UTC that day to
    # 05:00 UTC on the 19th: its users are those of the UTC week of the
    # 12th whose last login came at or after its start and those of the
    # UTC week of the 19th whose first login came before its end. Its
    # January runs from 05:00 UTC on January 1 to 05:00 on February 1.
    # alice's login is late on Sunday January 11 there, bob's on Saturday
    # January 31.
    ingest([login("2026-01-12T00:00:00Z"), login("2026-02-01T00:00:00Z", "bob")], now=NOW)
    win = make_window(NOW, since="2026-01-01", until="2026-03-10", tz="America/New_York")
    rows = both("active_users", win)
    assert [r for r in rows if r[0] != "day"] == [
        ["week", utc(2026, 1, 5, 5), 1],
        ["week", utc(2026, 1, 26, 5), 1],
        ["month", utc(2026, 1, 1, 5), 2],
    ]

    # Rows no event backs show up only where the stat reads them, each by
    # its first and last login: "early" logged in only just before New
    # York's week of the 12th began, "late" just before the next one began
    # and again after it, "after" just after it; "feb" in February just
    # before New York's February began and after it, "jan" on January 1
    # before New York's January began.
    tick = timedelta(microseconds=1)
    week, next_week, month = utc(2026, 1, 12), utc(2026, 1, 19), utc(2026, 2, 1)
    for model, name, unit, first, last in [
        (WeeklyLoginUser, "early", {"week": week}, utc(2026, 1, 12, 5) - tick, None),
        (
            WeeklyLoginUser,
            "late",
            {"week": next_week},
            utc(2026, 1, 19, 5) - tick,
            utc(2026, 1, 20),
        ),
        (WeeklyLoginUser, "after", {"week": next_week}, utc(2026, 1, 19, 5), None),
        (MonthlyLoginUser, "feb", {"month": month}, utc(2026, 2, 1, 5) - tick, utc(2026, 2, 3)),
        (MonthlyLoginUser, "jan", {"month": utc(2026, 1, 1)}, utc(2026, 1, 1, 4), None),
    ]:
        ghost(model, name, first=first, last=last, **unit)
    planted = stat_rows("active_users", win)
    assert [r for r in planted if r[0] != "day"] == [
        ["week", utc(2026, 1, 5, 5), 2],  # alice, early
        ["week", utc(2026, 1, 12, 5), 1],  # late
        ["week", utc(2026, 1, 19, 5), 2],  # late, after
        ["week", utc(2026, 1, 26, 5), 1],
        ["month", utc(2026, 1, 1, 5), 3],  # alice, bob, feb
        ["month", utc(2026, 2, 1, 5), 1],  # feb
    ]
    assert [r for r in planted if r[0] == "day"] == [r for r in rows if r[0] == "day"]


@pytest.mark.parametrize(
    "zone",
    ["Asia/Kolkata", "America/New_York", "Asia/Kathmandu", "Europe/London", "Pacific/Chatham"],
)
def test_active_users_of_local_weeks_and_months_equal_raw_events_at_every_edge(db, zone):
    # Logins a microsecond either side of every local week's and month's
    # edge from January to May 2026 (London's clocks go forward on March
    # 29, shortening that week; Chatham's back on April 5), each edge's
    # pair by its own user, and one user who logs in every 31 hours.
    tick = timedelta(microseconds=1)
    tz = ZoneInfo(zone)
    edges = [datetime(2026, 1, 5, tzinfo=tz) + timedelta(weeks=w) for w in range(20)]
    edges += [datetime(2026, m, 1, tzinfo=tz) for m in range(2, 6)]
    logins = [login("2026-01-01T00:00:00Z", "steady")]
    for i, edge in enumerate(sorted(set(edges))):
        at = edge.astimezone(UTC)
        logins += [login(at - tick, f"before{i}"), login(at, f"at{i}")]
        logins += [login(at - tick, f"both{i % 3}"), login(at, f"both{(i + 1) % 3}")]
    logins += [
        login(datetime(2026, 1, 1, tzinfo=UTC) + timedelta(hours=31 * k), "steady")
        for k in range(1, 100)
    ]
    later = datetime(2026, 6, 1, tzinfo=UTC)
    ingest(logins, now=later)
    win = make_window(later, since="2026-01-02", until="2026-05-20", tz=zone)
    rows = both("active_users", win)
    assert len([r for r in rows if r[0] == "week"]) == 21
    # February: the logins at its first instant and its last, and at both
    # sides of its four Mondays; then steady and the three "both" users.
    assert [r[2] for r in rows if r[0] == "month"][1:4] == [10 + 4, 12 + 4, 10 + 4]
