"""The pure status rules: segments, changes, uptime days, staleness."""

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from facilities.status import (
    Allocation,
    Report,
    Segment,
    changes,
    current_status,
    daily_uptime,
    segments,
)

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
STALE = timedelta(minutes=15)


def test_a_report_exactly_stale_after_old_still_counts():
    last = Report(T0, "up")
    assert current_status(last, T0, T0 + STALE, STALE).status == "up"


def test_a_report_older_than_stale_after_shows_unknown_with_its_time():
    last = Report(T0, "down", "power")
    status = current_status(last, T0, T0 + STALE + timedelta(seconds=1), STALE)
    assert status.status == "unknown"
    assert status.stale
    assert status.last_report.timestamp == T0
    assert status.since == T0 + STALE


def test_a_facility_never_reported_is_unknown_without_a_since():
    status = current_status(None, None, T0, STALE)
    assert (status.status, status.since, status.stale) == ("unknown", None, False)


def test_a_gap_longer_than_stale_after_is_unknown_in_the_timeline():
    reports = [Report(T0, "up"), Report(T0 + timedelta(hours=1), "up")]
    segs = segments(reports, T0, T0 + timedelta(hours=1, minutes=5), STALE)
    assert [(s.status, s.end - s.start) for s in segs] == [
        ("up", STALE),
        ("unknown", timedelta(minutes=45)),
        ("up", timedelta(minutes=5)),
    ]


def test_the_report_before_the_window_holds_at_its_start():
    reports = [Report(T0 - timedelta(minutes=5), "maintenance"), Report(T0 + STALE / 3, "up")]
    segs = segments(reports, T0, T0 + STALE / 3 + timedelta(minutes=1), STALE)
    assert segs[0] == Segment(T0, T0 + STALE / 3, "maintenance")
    assert segs[1].status == "up"


def test_changes_keep_only_the_reports_that_changed_the_status_newest_first():
    reports = [
        Report(T0, "up"),
        Report(T0 + timedelta(minutes=5), "up"),
        Report(T0 + timedelta(minutes=10), "down", "power"),
        Report(T0 + timedelta(minutes=15), "down", "still power"),
        Report(T0 + timedelta(minutes=20), "up"),
    ]
    now = T0 + timedelta(minutes=21)
    assert [(c.status, c.message) for c in changes(reports, now, STALE)] == [
        ("up", ""),
        ("down", "power"),
        ("up", ""),
    ]


def test_each_silence_is_an_unknown_change_where_the_bar_turns_grey():
    reports = [
        Report(T0, "up"),
        Report(T0 + timedelta(hours=2), "up"),
        Report(T0 + timedelta(hours=2, minutes=10), "down", "power"),
    ]
    now = T0 + timedelta(hours=3)
    assert [(c.timestamp, c.status, c.message) for c in changes(reports, now, STALE)] == [
        (T0 + timedelta(hours=2, minutes=10) + STALE, "unknown", "stopped reporting"),
        (T0 + timedelta(hours=2, minutes=10), "down", "power"),
        (T0 + timedelta(hours=2), "up", ""),
        (T0 + STALE, "unknown", "stopped reporting"),
        (T0, "up", ""),
    ]
    bar = segments(reports, T0, now, STALE)
    assert [(s.start, s.status) for s in bar] == [
        (c.timestamp, c.status) for c in changes(reports, now, STALE)[::-1]
    ]


HOURS_6 = 6 * 3600


@pytest.mark.parametrize(
    ("age", "expected"),
    [
        (timedelta(hours=6), "up"),
        (timedelta(hours=6, seconds=1), "unknown"),
    ],
)
def test_a_report_with_an_interval_of_6_hours_holds_for_6_hours_then_goes_stale(age, expected):
    last = Report(T0, "up", interval=HOURS_6)
    status = current_status(last, T0, T0 + age, STALE)
    assert status.status == expected
    assert status.since == (T0 if expected == "up" else T0 + timedelta(hours=6))
    assert status.holds_until(STALE) == T0 + timedelta(hours=6)


def test_an_interval_shorter_than_stale_after_still_holds_stale_after():
    last = Report(T0, "down", "power", interval=60)
    assert current_status(last, T0, T0 + STALE, STALE).status == "down"
    assert current_status(last, T0, T0 + STALE + timedelta(seconds=1), STALE).stale


def test_heartbeats_within_their_interval_are_one_run_and_a_missed_one_is_a_silence():
    # Heartbeats 5 hours apart, each saying the next comes within 6; the
    # one after 15:00 never comes, so the bar is grey from 21:00 to 23:00.
    reports = [Report(T0 + timedelta(hours=h), "up", interval=HOURS_6) for h in (0, 5, 10, 15)] + [
        Report(T0 + timedelta(hours=23), "up", interval=HOURS_6)
    ]
    now = T0 + timedelta(hours=24)
    assert [(s.status, s.start, s.end) for s in segments(reports, T0, now, STALE)] == [
        ("up", T0, T0 + timedelta(hours=21)),
        ("unknown", T0 + timedelta(hours=21), T0 + timedelta(hours=23)),
        ("up", T0 + timedelta(hours=23), now),
    ]
    assert [(c.status, c.timestamp) for c in changes(reports, now, STALE)] == [
        ("up", T0 + timedelta(hours=23)),
        ("unknown", T0 + timedelta(hours=21)),
        ("up", T0),
    ]


def test_an_incident_report_cuts_a_heartbeats_interval_short():
    reports = [
        Report(T0, "up", interval=HOURS_6),
        Report(T0 + timedelta(hours=1), "down", "power"),  # no interval: 15 minutes
    ]
    now = T0 + timedelta(hours=2)
    assert [(s.status, s.end - s.start) for s in segments(reports, T0, now, STALE)] == [
        ("up", timedelta(hours=1)),
        ("down", STALE),
        ("unknown", timedelta(minutes=45)),
    ]


def test_uptime_over_heartbeats_counts_the_time_between_them_as_known():
    # A day of heartbeats 4 hours apart with a 2-hour outage: 22 of 24 hours up.
    day = datetime(2026, 3, 1, tzinfo=UTC)
    reports = [Report(day + timedelta(hours=h), "up", interval=5 * 3600) for h in (0, 4, 8)]
    reports += [Report(day + timedelta(hours=9 + m / 60), "down") for m in range(0, 120, 10)]
    reports += [Report(day + timedelta(hours=h), "up", interval=5 * 3600) for h in (11, 15, 19)]
    now = day + timedelta(days=1)
    uptime = daily_uptime(segments(reports, day, now, STALE), ZoneInfo("UTC"), now, days=2)
    only = uptime.days[0]  # the second is today, which begins at `now`
    assert only.seconds == {"up": 22 * 3600, "down": 2 * 3600}
    assert only.up_percent == round(100 * 22 / 24, 2)


def test_uptime_days_are_cut_at_midnight_in_the_display_zone():
    zone = ZoneInfo("America/Los_Angeles")
    # Down from 06:00 to 10:00 UTC on 1 March: 22:00-02:00 Pacific (UTC-8),
    # so the outage is split across the local days of 28 February and 1 March.
    start = datetime(2026, 2, 27, 8, 0, tzinfo=UTC)
    now = datetime(2026, 3, 2, 20, 0, tzinfo=UTC)
    segs = [
        Segment(start, datetime(2026, 3, 1, 6, 0, tzinfo=UTC), "up"),
        Segment(
            datetime(2026, 3, 1, 6, 0, tzinfo=UTC), datetime(2026, 3, 1, 10, 0, tzinfo=UTC), "down"
        ),
        Segment(datetime(2026, 3, 1, 10, 0, tzinfo=UTC), now, "up"),
    ]
    days = {d.date: d for d in daily_uptime(segs, zone, now, days=4).days}
    feb28, mar1 = days[date(2026, 2, 28)], days[date(2026, 3, 1)]
    assert feb28.seconds["down"] == 2 * 3600
    assert mar1.seconds["down"] == 2 * 3600
    assert feb28.status == mar1.status == "down"
    assert feb28.up_percent == round(100 * 22 / 24, 2)
    # In UTC the whole outage falls on 1 March.
    utc_days = {d.date: d for d in daily_uptime(segs, ZoneInfo("UTC"), now, days=4).days}
    assert "down" not in utc_days[date(2026, 2, 28)].seconds
    assert utc_days[date(2026, 3, 1)].seconds["down"] == 4 * 3600


def test_a_dst_day_has_23_hours_and_today_ends_now():
    zone = ZoneInfo("America/New_York")
    # Clocks sprang forward on Sunday 8 March 2026.
    start = datetime(2026, 3, 7, 5, 0, tzinfo=UTC)
    now = datetime(2026, 3, 9, 17, 0, tzinfo=UTC)  # 13:00 EDT
    days = daily_uptime([Segment(start, now, "up")], zone, now, days=3).days
    assert [d.date for d in days] == [date(2026, 3, 7), date(2026, 3, 8), date(2026, 3, 9)]
    assert days[1].seconds["up"] == 23 * 3600
    assert days[2].seconds["up"] == 13 * 3600


def test_a_day_takes_its_worst_reported_state_and_ignores_silence_for_the_percentage():
    zone = ZoneInfo("UTC")
    day = datetime(2026, 3, 1, tzinfo=UTC)
    now = day + timedelta(days=1)
    segs = [
        Segment(day, day + timedelta(hours=6), "unknown"),
        Segment(day + timedelta(hours=6), day + timedelta(hours=12), "maintenance"),
        Segment(day + timedelta(hours=12), day + timedelta(hours=13), "degraded"),
        Segment(day + timedelta(hours=13), now, "up"),
    ]
    only = daily_uptime(segs, zone, now - timedelta(seconds=1), days=1).days[0]
    assert only.status == "degraded"
    assert only.up_percent == round(100 * 11 / 18, 2)
    assert "Maintenance 25.0%" in only.describe()


def test_a_day_without_any_report_is_unknown():
    now = datetime(2026, 3, 1, 12, tzinfo=UTC)
    segs = [Segment(datetime(2026, 3, 1, tzinfo=UTC), now, "unknown")]
    only = daily_uptime(segs, ZoneInfo("UTC"), now, days=1).days[0]
    assert only.status == "unknown"
    assert only.up_percent is None


def allocation_of(project: str, experiment: str) -> Allocation:
    return Allocation("materialization", "m", project, experiment, (), 0, T0, "alice")


def test_an_experiment_link_is_its_page_with_the_names_quoted():
    assert allocation_of("carolp", "botnet").experiment_url == "/experiments/carolp/botnet/"
    assert allocation_of("carol p", "bot#1").experiment_url == "/experiments/carol%20p/bot%231/"


def test_an_allocation_naming_no_experiment_links_nowhere():
    assert allocation_of("carolp", "").experiment_url == ""
    assert allocation_of("a/b", "botnet").experiment_url == ""


def test_the_uptime_key_counts_days_by_their_worst_state_and_lists_the_bad_ones():
    zone = ZoneInfo("UTC")
    start = datetime(2026, 3, 1, tzinfo=UTC)
    now = start + timedelta(days=4, hours=12)
    segs = [
        Segment(start, start + timedelta(days=1), "unknown"),
        Segment(start + timedelta(days=1), start + timedelta(days=2, hours=20), "up"),
        Segment(start + timedelta(days=2, hours=20), start + timedelta(days=2, hours=22), "down"),
        Segment(start + timedelta(days=2, hours=22), start + timedelta(days=4), "up"),
        Segment(start + timedelta(days=4), now, "maintenance"),
    ]
    uptime = daily_uptime(segs, zone, now, days=5)
    counts = {c["label"]: c["days"] for c in uptime.day_counts()}
    assert counts == {"Up": 2, "Degraded": 0, "Down": 1, "Maintenance": 1, "Unknown": 1}
    assert uptime.summary() == (
        "Worst status of each day: 2 days up, 1 day down, 1 day maintenance, 1 day unknown,"
        " over 5 days"
    )
    # Newest first; the silent first day is only counted, not listed.
    troubled = uptime.troubled_days()
    assert [(d.date, d.status) for d in troubled] == [
        (date(2026, 3, 5), "maintenance"),
        (date(2026, 3, 3), "down"),
    ]
    assert troubled[1].shares == "Up 91.7%, Down 8.3%"
