"""The monthly counts per caller, per project and per login user
(event_counts_monthly_caller, event_counts_monthly_project,
login_users_monthly, failed_logins_monthly) and the weekly login users
(login_users_weekly), with the login users' first and last logins, equal a
GROUP BY of `events` by UTC month or week
whoever writes the rows: ingest, INSERT, UPDATE and DELETE in SQL, a rebuild
from a session in another zone. verify_aggregates reports their drift."""

from datetime import UTC, datetime, timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.db import connection

from audit import triggers
from audit.aggregates import COUNT_TABLES
from audit.ingest import ingest
from demo.history import generate
from tests import factories

NOW = datetime(2026, 4, 10, 12, 0, tzinfo=UTC)
WEEKLY_AND_MONTHLY = {t.table: t for t in COUNT_TABLES if t.unit in ("week", "month")}

# What each table must hold, written out here rather than taken from the
# declarations, so that a wrong declaration fails too.
EXPECTED = {
    "event_counts_monthly_caller": (
        "SELECT date_trunc('month', timestamp, 'UTC'), caller, count(*),"
        " count(*) FILTER (WHERE event_type = 'user_login'), count(*) FILTER (WHERE NOT success)"
        " FROM events GROUP BY 1, 2 ORDER BY 1, 2",
        "SELECT month, caller, events, logins, failures FROM event_counts_monthly_caller"
        " ORDER BY 1, 2",
    ),
    "event_counts_monthly_project": (
        "SELECT date_trunc('month', timestamp, 'UTC'), coalesce(payload->>'project', subject),"
        " count(*),"
        " count(*) FILTER (WHERE event_type = 'experiment_created' AND success),"
        " count(*) FILTER (WHERE event_type = 'realization_allocated' AND success),"
        " count(*) FILTER (WHERE event_type = 'materialization_allocated' AND success)"
        " FROM events WHERE payload->>'project' IS NOT NULL OR subject_type = 'project'"
        " GROUP BY 1, 2 ORDER BY 1, 2",
        "SELECT month, project, events, experiments, realizations, materializations"
        " FROM event_counts_monthly_project ORDER BY 1, 2",
    ),
    "login_users_monthly": (
        "SELECT date_trunc('month', timestamp, 'UTC'), subject, count(*), min(timestamp),"
        " max(timestamp) FROM events WHERE event_type = 'user_login' AND success"
        " GROUP BY 1, 2 ORDER BY 1, 2",
        "SELECT month, username, n, first_login, last_login FROM login_users_monthly ORDER BY 1, 2",
    ),
    "login_users_weekly": (
        "SELECT date_trunc('week', timestamp, 'UTC'), subject, count(*), min(timestamp),"
        " max(timestamp) FROM events WHERE event_type = 'user_login' AND success"
        " GROUP BY 1, 2 ORDER BY 1, 2",
        "SELECT week, username, n, first_login, last_login FROM login_users_weekly ORDER BY 1, 2",
    ),
    "failed_logins_monthly": (
        "SELECT date_trunc('month', timestamp, 'UTC'), subject, count(*) FROM events"
        " WHERE event_type = 'user_login' AND NOT success GROUP BY 1, 2 ORDER BY 1, 2",
        "SELECT month, username, n FROM failed_logins_monthly ORDER BY 1, 2",
    ),
}


def rows(query: str) -> list[tuple]:
    with connection.cursor() as cursor:
        cursor.execute(query)
        return cursor.fetchall()


def execute(statement: str, params: dict | None = None) -> int:
    with connection.cursor() as cursor:
        cursor.execute(statement, params or {})
        return cursor.rowcount


def assert_exact() -> None:
    assert set(WEEKLY_AND_MONTHLY) == set(EXPECTED)
    for table, (expected, stored) in EXPECTED.items():
        assert rows(stored) == rows(expected), table
    with connection.cursor() as cursor:
        for table in WEEKLY_AND_MONTHLY.values():
            assert table.differences(cursor, None, None) == [], table.table


@pytest.fixture
def history(db) -> None:
    ingest(list(generate(1200, days=150, seed=5, end=NOW)), now=NOW)


def test_monthly_counts_follow_ingest_and_equal_a_rebuild(history):
    assert len(rows("SELECT DISTINCT month FROM event_counts_monthly_caller")) >= 5
    assert rows("SELECT count(*) FROM event_counts_monthly_project")[0][0] > 0
    assert_exact()
    before = [rows(stored) for _, stored in EXPECTED.values()]
    triggers.rebuild_aggregates()
    assert [rows(stored) for _, stored in EXPECTED.values()] == before


def test_monthly_counts_follow_inserts_updates_and_deletes_in_sql(history):
    # Rows on both sides of a UTC month's edge (a Sunday) and of the next
    # week's, one a microsecond before each.
    edge, monday = datetime(2026, 3, 1, tzinfo=UTC), datetime(2026, 3, 2, tzinfo=UTC)
    tick = timedelta(microseconds=1)
    for i, at in enumerate((edge - tick, edge, edge + timedelta(hours=5), monday - tick, monday)):
        factories.row(caller="zed", subject="zed", timestamp=at, success=bool(i % 2))
        factories.row(
            event_type="experiment_created",
            caller="zed",
            subject=f"exp{i}",
            subject_type="experiment",
            payload={"project": "edgeproj"},
            timestamp=at,
        )
    assert_exact()
    # A statement inserting many rows at once, copied from other months.
    copied = execute(
        "INSERT INTO events (event_uuid, timestamp, event_type, caller, subject, subject_type,"
        " target, success, error_message, payload)"
        " SELECT gen_random_uuid(), timestamp + interval '17 days', event_type, caller, subject,"
        " subject_type, target, success, error_message, payload FROM events"
        " WHERE timestamp < %(before)s",
        {"before": NOW - timedelta(days=60)},
    )
    assert copied > 100
    assert_exact()
    # Updates that move rows into another month and to another caller or project.
    assert execute(
        "UPDATE events SET timestamp = timestamp + interval '9 days' WHERE caller = 'zed'"
    )
    assert execute(
        "UPDATE events SET caller = 'moved', payload = payload || '{\"project\": \"other\"}'"
        " WHERE ctid IN (SELECT ctid FROM events WHERE caller <> 'zed'"
        " ORDER BY event_uuid LIMIT 300)"
    )
    assert_exact()
    # Deletes, down to a caller's last event of a month: its row goes with it.
    assert execute("DELETE FROM events WHERE caller = 'zed'") == 10
    assert execute(
        "DELETE FROM events WHERE timestamp >= %(lo)s AND timestamp < %(hi)s",
        {"lo": datetime(2026, 1, 1, tzinfo=UTC), "hi": datetime(2026, 2, 1, tzinfo=UTC)},
    )
    assert_exact()
    assert not rows("SELECT 1 FROM event_counts_monthly_caller WHERE caller = 'zed'")
    assert not rows(
        "SELECT 1 FROM event_counts_monthly_caller WHERE month = '2026-01-01T00:00:00Z'"
    )


def test_a_rebuild_from_a_session_in_another_zone_recounts_whole_utc_months(history):
    # A month added to a timestamptz in New York's zone would end on the
    # 28th at a New York midnight; the rebuild must still cover March whole.
    factories.row(caller="late", subject="late", timestamp=datetime(2026, 3, 31, 23, tzinfo=UTC))
    execute("DELETE FROM event_counts_monthly_caller WHERE month = '2026-03-01T00:00:00Z'")
    execute("SET TIME ZONE 'America/New_York'")
    try:
        with connection.cursor() as cursor:
            WEEKLY_AND_MONTHLY["event_counts_monthly_caller"].rebuild(
                cursor, datetime(2026, 3, 15, tzinfo=UTC), datetime(2026, 3, 16, tzinfo=UTC)
            )
    finally:
        execute("SET TIME ZONE 'UTC'")
    assert rows(
        "SELECT events FROM event_counts_monthly_caller"
        " WHERE month = '2026-03-01T00:00:00Z' AND caller = 'late'"
    ) == [(1,)]
    assert_exact()


def test_verify_aggregates_reports_monthly_drift_and_repairs_it(history):
    execute(
        "UPDATE event_counts_monthly_project SET events = events + 2 WHERE (month, project) ="
        " (SELECT month, project FROM event_counts_monthly_project ORDER BY 1, 2 LIMIT 1)"
    )
    out = StringIO()
    with pytest.raises(SystemExit) as exit_:
        call_command("verify_aggregates", stdout=out, stderr=StringIO())
    assert exit_.value.code == 1
    assert "event_counts_monthly_project" in out.getvalue()
    call_command("verify_aggregates", "--repair", stdout=StringIO(), stderr=StringIO())
    assert_exact()
