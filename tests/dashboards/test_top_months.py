"""The most active users and projects and the failed logins by user over
long windows, read from the monthly counts for whole UTC months, the daily
ones for the whole days around them and `events` for the partial days,
equal the same rankings counted from `events` alone (the failed logins'
last attempt, last error and count of users included): for random windows with edges on and off UTC
months, days and hours, in several zones, and after writes in SQL."""

import random
from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection
from psycopg import sql

from audit.buckets import month_plan
from audit.ingest import ingest
from dashboards.stats import STATS
from dashboards.stats.ranking import bounded_top, touched_months
from dashboards.stats.top import CALLER_CANDIDATES_SQL, CALLER_HEADS_SQL, PROJECT_MEASURES
from demo.history import generate
from tests import factories
from tests.dashboards.conftest import make_window, stat_rows

NOW = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
ZONES = ["UTC", "America/New_York", "Asia/Kolkata", "Asia/Kathmandu", "Pacific/Auckland"]
EVERY = 1000  # more than every caller and project: whole rankings are compared


@pytest.fixture
def history(db) -> None:
    ingest(list(generate(3000, days=420, seed=17, end=NOW)), now=NOW)


def _edge(rng: random.Random) -> datetime:
    """A moment of the history: a UTC month start, a day start, an hour, a
    local midnight of a zone, or any second."""
    moment = NOW - timedelta(seconds=rng.randrange(420 * 86400))
    kind = rng.choice(["month", "day", "hour", "local", "second"])
    if kind == "month":
        return moment.replace(day=1, hour=0, minute=0, second=0)
    if kind == "day":
        return moment.replace(hour=0, minute=0, second=0)
    if kind == "hour":
        return moment.replace(minute=0, second=0)
    if kind == "local":
        return moment.replace(hour=18, minute=30, second=0)  # midnight in Kolkata
    return moment


def _windows(rng: random.Random):
    for period in ("30d", "90d", "1y", "all"):
        yield make_window(period=period, tz=rng.choice(ZONES))
    for _ in range(14):
        start, end = sorted((_edge(rng), _edge(rng)))
        if start != end:
            query = {"since": start.isoformat(), "until": end.isoformat(), "tz": rng.choice(ZONES)}
            yield make_window(**query)


def _assert_failed_logins_equal(window, n: int) -> None:
    stat = STATS["failed_logins"]
    found = stat.compute(window, {"n": n}, "auto")
    assert found.rows == stat.compute(window, {"n": n}, "raw").rows, (window, n)
    # The count of every user who failed, however many rows are shown.
    assert found.extra == stat.compute(window, {"n": 0}, "raw").extra, (window, n)


def _assert_both_equal(window) -> None:
    _assert_failed_logins_equal(window, EVERY)
    users = stat_rows("top_users", window, n=EVERY)
    assert users == stat_rows("top_users", window, "raw", n=EVERY), window
    for by in PROJECT_MEASURES:
        projects = stat_rows("top_projects", window, n=EVERY, by=by)
        assert projects == stat_rows("top_projects", window, "raw", n=EVERY, by=by), (window, by)


def test_top_users_and_projects_from_months_equal_raw_events(history):
    rng = random.Random(23)
    with_months = 0
    for window in _windows(rng):
        plan = month_plan(window.start, window.end)
        with_months += bool(plan and plan["first_month"] < plan["end_month"])
        _assert_both_equal(window)
    # The year, all time and the longer random windows read whole months.
    assert with_months >= 5
    year = make_window(period="1y")
    assert stat_rows("top_users", year, n=3)
    assert stat_rows("top_projects", year, n=3)
    assert stat_rows("failed_logins", year, n=3)


def test_the_top_tables_stay_exact_after_inserts_updates_and_deletes_in_sql(history):
    # A new user with an event on each side of every UTC month edge of the year.
    year = make_window(period="1y")
    factories.row(event_type="user_created", caller="ops", subject="zed", timestamp=year.start)
    edges = [datetime(y, m, 1, tzinfo=UTC) for y in (2025, 2026) for m in range(1, 13)]
    for edge in [e for e in edges if year.start < e < NOW]:
        for at in (edge - timedelta(microseconds=1), edge):
            for _ in range(15):
                factories.row(caller="zed", subject="zed", timestamp=at)
            failed = {"event_type": "user_login", "success": False, "error_message": "bad password"}
            factories.row(caller="zed", subject="zed", timestamp=at, **failed)
    _assert_both_equal(year)
    assert ["zed", 2 * 16 * 12] in [row[:2] for row in stat_rows("top_users", year, n=EVERY)]
    assert stat_rows("failed_logins", year, n=1)[0][:2] == ["zed", 2 * 12]
    with connection.cursor() as cursor:
        # Half of zed's events move to another user, some out of the window.
        cursor.execute(
            "UPDATE events SET caller = 'amy', timestamp = timestamp - interval '200 days'"
            " WHERE ctid IN (SELECT ctid FROM events WHERE caller = 'zed' AND subject = 'zed'"
            " ORDER BY timestamp LIMIT 200)"
        )
        cursor.execute("DELETE FROM events WHERE caller = 'zed' AND timestamp >= '2026-02-01'")
    _assert_both_equal(year)
    _assert_both_equal(make_window(period="all"))


def _assert_first_n_equal(window, n: int) -> None:
    _assert_failed_logins_equal(window, n)
    assert stat_rows("top_users", window, n=n) == stat_rows("top_users", window, "raw", n=n), (
        window,
        n,
    )
    for by in PROJECT_MEASURES:
        found = stat_rows("top_projects", window, n=n, by=by)
        assert found == stat_rows("top_projects", window, "raw", n=n, by=by), (window, n, by)


def test_the_first_users_and_projects_of_any_window_equal_the_raw_ranking(history):
    # Small n: the ranking is proved from each month's busiest callers and
    # projects, and must be the raw one, order and ties included.
    rng = random.Random(29)
    for window in _windows(rng):
        for n in (1, 2, 5, 10):
            _assert_first_n_equal(window, n)


@pytest.mark.parametrize("rounds", [1, 2, 4])
def test_a_ranking_the_first_heads_cannot_prove_is_still_exact(history, monkeypatch, rounds):
    # One row a month per row asked for, and every window tried: the bound
    # fails often, so rounds read more rows, and after the last one every
    # caller is counted.
    monkeypatch.setattr("dashboards.stats.ranking.HEAD_PER_ROW", 1)
    monkeypatch.setattr("dashboards.stats.ranking.HEAD_EXTRA", 0)
    monkeypatch.setattr("dashboards.stats.ranking.HEAD_ROUNDS", rounds)
    rng = random.Random(31)
    for window in _windows(rng):
        for n in (1, 3):
            _assert_first_n_equal(window, n)


def test_users_tied_at_the_cut_are_ranked_by_name_and_other_callers_left_out(db, monkeypatch):
    monkeypatch.setattr("dashboards.stats.ranking.HEAD_PER_ROW", 1)
    monkeypatch.setattr("dashboards.stats.ranking.HEAD_EXTRA", 0)
    day = NOW - timedelta(days=3)
    # Twelve users with three events each, named so the index meets them out
    # of name order within a month, and one with five; "ops" (not a user)
    # caused the most events of all.
    names = [f"u{i:02d}" for i in range(12)]
    for name in ["top", *names]:
        factories.row(event_type="user_created", caller="ops", subject=name, timestamp=day)
    for i, name in enumerate(reversed(names)):
        # Each user also has events earlier in the month, outside the window,
        # more the later its name sorts: its month count is no tie-breaker.
        for k in range(3 + i):
            at = day + timedelta(minutes=k) if k < 3 else day - timedelta(days=5, minutes=k)
            factories.row(caller=name, subject=name, timestamp=at)
    for k in range(5):
        factories.row(caller="top", subject="top", timestamp=day + timedelta(minutes=k))
    window = make_window(since=(day - timedelta(days=1)).isoformat(), until=NOW.isoformat())
    for n in (1, 2, 4, 12):
        found = stat_rows("top_users", window, n=n)
        assert found == stat_rows("top_users", window, "raw", n=n), n
        assert [row[:2] for row in found] == [["top", 5], *[[u, 3] for u in names]][:n]


def test_candidates_are_read_only_when_their_counts_could_prove_the_ranking(db, monkeypatch):
    # Heads of n + 1 rows a month. Twelve users with three events each, and
    # "ops" (not a user) with twelve, cannot be told apart by the month's
    # counts: no second candidate can count more than the bound, so reading
    # them is skipped. One user busier than ops is proved from them.
    monkeypatch.setattr("dashboards.stats.ranking.HEAD_PER_ROW", 1)
    monkeypatch.setattr("dashboards.stats.ranking.HEAD_EXTRA", 1)
    day = NOW - timedelta(days=3)
    names = [f"u{i:02d}" for i in range(12)]
    for name in names:
        factories.row(event_type="user_created", caller="ops", subject=name, timestamp=day)
        for k in range(3):
            factories.row(caller=name, subject=name, timestamp=day + timedelta(minutes=k))
    window = make_window(since=(day - timedelta(days=1)).isoformat(), until=NOW.isoformat())
    plan = month_plan(window.start, window.end)
    months = touched_months(window)
    never_read = sql.SQL("SELECT 1 / 0")  # a division by zero if it ran
    assert bounded_top(CALLER_HEADS_SQL, never_read, 1, 2, months, plan) is None
    for k in range(20):
        factories.row(caller="u07", subject="u07", timestamp=day + timedelta(hours=1, minutes=k))
    proved = bounded_top(CALLER_HEADS_SQL, CALLER_CANDIDATES_SQL, 1, 1, months, plan)
    assert proved == [tuple(row) for row in stat_rows("top_users", window, "raw", n=1)]
    assert [row[:2] for row in proved] == [("u07", 23)]
