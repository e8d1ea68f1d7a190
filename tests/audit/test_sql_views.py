"""The stats_ views (audit migration 0014) for Metabase, Grafana and psql:
each equals the stat of the portal it mirrors and SQL over `events`, on a
demo history, in any session time zone, and each is documented."""

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection
from django.utils import timezone
from psycopg.types.datetime import TimestamptzLoader

from audit.catalog import MEMBER_REMOVALS
from audit.ingest import ingest
from audit.models import Entity, Event
from dashboards.stats.counts import entity_counts_at
from dashboards.stats.entity import members
from dashboards.stats.org_members import top_orgs_by_members
from demo.history import generate
from sphere_stats.windows import utc_floor
from tests.dashboards.conftest import NOW, both, login, make_window

VIEWS = (
    "stats_entities_now",
    "stats_memberships_now",
    "stats_logins_daily",
    "stats_events_daily",
    "stats_entities_daily",
)
DAY = timedelta(days=1)
# After every event of the history: a window ending here sees all of them.
LATER = NOW + timedelta(hours=1)


@pytest.fixture
def history(db) -> None:
    ingest(list(generate(2500, days=300, seed=11, end=NOW)), now=NOW)


def fetch(query: str, params: dict | None = None, zone: str = "UTC") -> list[tuple]:
    """Rows of `query` in a session whose time zone is `zone` (Metabase and
    Grafana set their own), timestamps as UTC datetimes."""
    connection.ensure_connection()
    with connection.connection.cursor() as cursor:
        # psycopg's own loader reads the session's zone; Django's takes it to be UTC.
        cursor.adapters.register_loader("timestamptz", TimestamptzLoader)
        cursor.execute("SELECT set_config('TimeZone', %(zone)s, false)", {"zone": zone})
        try:
            cursor.execute(query, params)
            rows = cursor.fetchall()
        finally:
            cursor.execute("SELECT set_config('TimeZone', 'UTC', false)")
    return [tuple(v.astimezone(UTC) if isinstance(v, datetime) else v for v in row) for row in rows]


def whole_days_window(**query: str):
    """A UTC window of whole days over the history."""
    first = utc_floor(Event.objects.order_by("timestamp").first().timestamp, "day")
    until = utc_floor(NOW, "day") + DAY
    return make_window(since=first.isoformat(), until=until.isoformat(), **query)


def test_entities_now_are_the_overviews_cards_for_a_window_ending_now(history):
    window = make_window(since=(NOW - 30 * DAY).isoformat(), until=LATER.isoformat())
    # both(): the same from the pre-aggregates and from the raw events.
    cards = {(kind, state): n for kind, state, n, _, _ in both("current_counts", window) if n}
    view = {(kind, state): n for kind, state, n in fetch("SELECT * FROM stats_entities_now")}
    assert view == cards
    assert {"user", "organization", "project", "experiment"} <= {kind for kind, _ in view}


def test_memberships_now_are_the_members_tables_of_every_existing_org_and_project(history):
    groups = Entity.objects.current().filter(kind__in=("organization", "project"), scope="")
    pages = sorted(
        (group.kind, group.name, kind, member, role, state, since)
        for group in groups
        for member, kind, role, state, since in members(group.kind, group.name, group.since)
    )
    view = sorted(
        fetch(
            "SELECT group_kind, group_name, member_kind, member, role, member_state, since "
            "FROM stats_memberships_now"
        )
    )
    assert view == pages
    assert {row[0] for row in view} == {"organization", "project"}
    assert {row[2] for row in view} == {"usermember", "projectmember"}
    # Not vacuous: members were removed, and the view left them out as the pages do.
    removed = Event.objects.filter(event_type__in=MEMBER_REMOVALS, success=True)
    assert removed.exists()


def test_member_counts_of_organizations_equal_the_replay_of_raw_membership_events(history):
    per_org = {
        org: (users, projects)
        for org, users, projects in fetch(
            "SELECT group_name, count(*) FILTER (WHERE member_kind = 'usermember'),"
            " count(*) FILTER (WHERE member_kind = 'projectmember') FROM stats_memberships_now"
            " WHERE group_kind = 'organization' GROUP BY 1"
        )
    }
    for source in ("raw", "auto"):
        ranked = top_orgs_by_members(10_000, LATER, source)
        assert {org: (users, projects) for org, users, projects in ranked} == per_org
    assert per_org


def test_logins_daily_are_the_logins_chart_and_daily_active_users_in_utc(history):
    window = whole_days_window(tz="UTC", res="1d")
    chart = [(day, ok, bad) for day, ok, bad in both("logins", window) if ok or bad]
    active = {day: users for per, day, users in both("active_users", window) if per == "day"}
    view = fetch("SELECT day, succeeded, failed, users FROM stats_logins_daily ORDER BY day")
    assert [(day, ok, bad) for day, ok, bad, _ in view] == chart
    assert {day: users for day, _, _, users in view if users} == active
    # A day with failed logins only has a row, with no users.
    assert any(ok == 0 and users == 0 for _, ok, _, users in view)
    assert view == fetch(
        "SELECT date_trunc('day', timestamp, 'UTC') AS day,"
        " count(*) FILTER (WHERE success), count(*) FILTER (WHERE NOT success),"
        " count(DISTINCT subject) FILTER (WHERE success)"
        " FROM events WHERE event_type = 'user_login' GROUP BY 1 ORDER BY 1"
    )


def test_events_daily_are_the_events_by_type_chart_in_utc(history):
    view = fetch("SELECT * FROM stats_events_daily ORDER BY 1, 2, 3")
    assert view == fetch(
        "SELECT date_trunc('day', timestamp, 'UTC'), event_type, success, count(*)"
        " FROM events GROUP BY 1, 2, 3 ORDER BY 1, 2, 3"
    )
    assert {success for _, _, success, _ in view} == {True, False}
    per_type: dict[tuple, int] = {}
    for day, event_type, _, n in view:
        per_type[day, event_type] = per_type.get((day, event_type), 0) + n
    chart = both("events_by_type", whole_days_window(tz="UTC", res="1d"))
    assert {(day, event_type): n for day, event_type, n in chart} == per_type


def test_entities_daily_are_the_counts_at_the_end_of_every_utc_day_until_today(history):
    view = fetch("SELECT day, kind, state, entities FROM stats_entities_daily ORDER BY 1, 2, 3")
    days = sorted({day for day, _, _, _ in view})
    # Every day, from the first entity's to today.
    assert days == [days[0] + i * DAY for i in range(len(days))]
    assert days[-1] == utc_floor(timezone.now(), "day")
    kinds = sorted({kind for _, kind, _, _ in view})
    at_ends = [day + DAY for day in days]
    for source in ("auto", "raw"):
        counts = entity_counts_at(at_ends, kinds, source)
        for day, expected in zip(days, counts, strict=True):
            found = {(k, s): n for d, k, s, n in view if d == day and n}
            assert found == expected, (source, day)
    # The last day ends after every event: what exists now.
    today = {(k, s): n for d, k, s, n in view if d == days[-1] and n}
    assert today == {(k, s): n for k, s, n in fetch("SELECT * FROM stats_entities_now")}


def test_a_grafana_time_filter_on_day_selects_whole_utc_days(history):
    lo, hi = utc_floor(NOW - 40 * DAY, "day"), utc_floor(NOW - 10 * DAY, "day")
    # What $__timeFilter(day) expands to: day BETWEEN '…Z' AND '…Z'.
    between = {"lo": lo.isoformat(), "hi": hi.isoformat()}
    logins = fetch(
        "SELECT day, succeeded FROM stats_logins_daily"
        " WHERE day BETWEEN %(lo)s AND %(hi)s ORDER BY 1",
        between,
        zone="America/New_York",
    )
    assert logins == fetch(
        "SELECT date_trunc('day', timestamp, 'UTC'), count(*) FILTER (WHERE success) FROM events"
        " WHERE event_type = 'user_login' AND timestamp >= %(lo)s AND timestamp < %(end)s"
        " GROUP BY 1 ORDER BY 1",
        {"lo": lo, "end": hi + DAY},
    )
    assert len(logins) > 20


@pytest.fixture
def logins_near_dst_changes(history) -> None:
    # New York's local day is 23 or 25 hours long on these UTC days: a view
    # that stepped a day as local '1 day' would lose or gain these hours.
    ingest(
        [
            login("2025-11-03T00:30:00Z", "only-after-fall-back"),
            login("2026-03-08T23:30:00Z", "only-after-spring-forward"),
        ],
        now=NOW,
    )


@pytest.mark.parametrize("zone", ["America/New_York", "Asia/Kolkata", "Australia/Lord_Howe"])
def test_every_view_answers_alike_in_any_session_time_zone(logins_near_dst_changes, zone):
    for view in VIEWS:
        query = f"SELECT * FROM {view}"
        assert sorted(fetch(query, zone=zone), key=repr) == sorted(fetch(query), key=repr), view


def test_every_view_and_column_is_commented_and_listed_in_the_docs(db):
    docs = (Path(settings.BASE_DIR) / "docs" / "sql_access.md").read_text()
    for view in VIEWS:
        columns = fetch(
            "SELECT a.attname, col_description(a.attrelid, a.attnum) FROM pg_attribute AS a"
            " WHERE a.attrelid = %(view)s::regclass AND a.attnum > 0 ORDER BY a.attnum",
            {"view": view},
        )
        (comment,) = fetch("SELECT obj_description(%(view)s::regclass)", {"view": view})[0]
        assert comment, view
        assert all(description for _, description in columns), (view, columns)
        names = ", ".join(name for name, _ in columns)
        assert re.search(rf"`{view} \({re.escape(names)}\)`", docs), (view, names)
