"""Every stat from the pre-aggregates equals the same stat from the raw
`events` table, for random windows, zones and resolutions, on a demo history
ingested in shuffled batches (late and out-of-order events)."""

import random
from datetime import datetime, timedelta

import pytest

from audit import triggers
from audit.ingest import ingest
from audit.models import (
    DailyCallerCount,
    DailyCallerTypeCount,
    DailyErrorCount,
    DailyFacilityCount,
    DailyFailedLogin,
    DailyProjectCount,
    Entity,
    EntityInterval,
    Event,
    HourlyCount,
    OrgMembership,
)
from dashboards.stats import STATS
from demo.history import generate
from tests.dashboards.conftest import NOW, make_window

ZONES = [
    "UTC",
    "America/New_York",
    "Europe/London",
    "Asia/Kolkata",  # +05:30: the hourly pre-aggregate cannot answer, raw does
    "Asia/Kathmandu",  # +05:45
    "Australia/Lord_Howe",  # a 30-minute DST shift
    "Pacific/Auckland",
]


@pytest.fixture
def shuffled_history(db) -> list[dict]:
    events = list(generate(4000, days=400, seed=7, end=NOW))
    rng = random.Random(3)
    rng.shuffle(events)
    for start in range(0, len(events), 500):
        ingest(events[start : start + 500], now=NOW)
    # Re-sending a batch changes nothing.
    assert ingest(events[:200], now=NOW).accepted == 0
    return events


def _snapshot() -> tuple:
    return (
        sorted(Entity.objects.values_list()),
        sorted(
            EntityInterval.objects.values_list(
                "kind", "scope", "name", "state", "valid_from", "valid_to"
            )
        ),
        sorted(HourlyCount.objects.values_list("bucket", "event_type", "success", "n")),
        sorted(DailyCallerCount.objects.values_list()),
        sorted(DailyCallerTypeCount.objects.values_list()),
        sorted(DailyProjectCount.objects.values_list()),
        sorted(DailyFacilityCount.objects.values_list()),
        sorted(DailyErrorCount.objects.values_list()),
        sorted(DailyFailedLogin.objects.values_list()),
        sorted(
            OrgMembership.objects.values_list("org", "kind", "member", "last_at", "removed"),
            key=str,
        ),
    )


def test_incremental_aggregates_equal_a_rebuild_from_scratch(shuffled_history):
    incremental = _snapshot()
    assert all(incremental), "the demo history filled every pre-aggregate"
    triggers.rebuild_aggregates()
    assert _snapshot() == incremental


def test_in_order_ingest_with_late_events_equals_a_rebuild(db):
    # The usual case: events arrive in time order, in small batches; some
    # late events are held back and sent at the end.
    events = sorted(generate(3000, days=300, seed=5, end=NOW), key=lambda e: e["timestamp"])
    late = events[100:3000:97]
    on_time = [e for e in events if e not in late]
    for start in range(0, len(on_time), 40):
        ingest(on_time[start : start + 40], now=NOW)
    assert Entity.objects.count() > 100
    ingest(late, now=NOW)
    incremental = _snapshot()
    triggers.rebuild_aggregates()
    assert _snapshot() == incremental


def test_aggregates_follow_deleted_events_without_a_rebuild(shuffled_history):
    cutoff = NOW - timedelta(days=200)
    before = _snapshot()
    Event.objects.filter(timestamp__lt=cutoff).delete()
    deleted = _snapshot()
    assert deleted != before
    triggers.rebuild_aggregates()
    assert _snapshot() == deleted


def _random_query(rng: random.Random) -> dict:
    query = {"tz": rng.choice(ZONES)}
    if rng.random() < 0.5:
        query["period"] = rng.choice(["24h", "7d", "30d", "90d", "1y", "all"])
    else:
        end = NOW - timedelta(minutes=rng.randrange(0, 300 * 24 * 60))
        start = end - timedelta(minutes=rng.randrange(60, 120 * 24 * 60))
        query["since"] = start.isoformat()
        query["until"] = end.isoformat()
    if rng.random() < 0.7:
        query["res"] = rng.choice(["1h", "1d", "7d", "30d"])
    return query


def _random_filters(stat, rng: random.Random, names: dict[str, list[str]], types: list[str]):
    """Each parameter of the stat at a random value of its kind."""
    filters = {}
    for param in stat.params:
        if param.name == "kind":
            value = rng.choice(["user", "project"])
        elif param.name == "name":
            value = rng.choice(names[filters["kind"]])
        elif param.name == "event_type":
            value = rng.sample(types, rng.randint(0, 3))
        elif param.type == "boolean":
            value = rng.choice([None, True, False])
        elif param.choices:
            value = rng.choice(param.choices)
        elif param.type == "integer":
            value = rng.choice([param.minimum, param.default, param.maximum])
        else:
            value = param.default
        filters[param.name] = value
    return filters


# "all" spans the whole history (the demo's 400 days), at every resolution
# that keeps it under MAX_BUCKETS; then windows whose edges fall on UTC
# midnights or not (the daily pre-aggregates answer whole UTC days and read
# the partial days at either edge from `events`), one without a whole UTC
# day, one ending in the future; then random windows.
ALL_TIME = [
    {"period": "all", "tz": "UTC"},
    {"period": "all", "tz": "America/New_York", "res": "1d"},
    {"period": "all", "tz": "Asia/Kolkata", "res": "30d"},
]
EDGES = [
    {"since": "2025-12-01T00:00:00+00:00", "until": "2026-01-15T00:00:00+00:00", "tz": "UTC"},
    {"since": "2025-12-01T00:00:00+00:00", "until": "2026-01-15T17:45:00+00:00", "tz": "UTC"},
    {"since": "2025-11-30T06:15:00+00:00", "until": "2026-01-15T00:00:00+00:00", "tz": "UTC"},
    # Local midnights of a +05:30 zone: both edges are partial UTC days.
    {
        "since": "2025-12-01T00:00:00+05:30",
        "until": "2026-02-01T00:00:00+05:30",
        "tz": "Asia/Kolkata",
    },
    {"since": "2026-01-10T03:00:00+00:00", "until": "2026-01-11T02:00:00+00:00", "tz": "UTC"},
    {"since": "2026-02-27T09:00:00+00:00", "until": "2026-03-12T09:00:00+00:00", "tz": "UTC"},
]


def test_every_stat_is_equal_from_preaggregates_and_raw_events(shuffled_history):
    rng = random.Random(11)
    names = {
        kind: list(Entity.objects.filter(kind=kind).values_list("name", flat=True))
        for kind in ("user", "project")
    }
    types = sorted(set(Event.objects.order_by().values_list("event_type", flat=True)))
    first = min(datetime.fromisoformat(e["timestamp"]) for e in shuffled_history)
    compared = 0
    answered = dict.fromkeys(STATS, 0)
    seen: dict[str, set] = {"by": set(), "success": set(), "event_type": set()}
    for query in [*ALL_TIME, *EDGES, *(_random_query(rng) for _ in range(12))]:
        try:
            window = make_window(**query)
        except ValueError:
            continue  # too many buckets for the chosen resolution
        if query.get("period") == "all":
            assert window.start == first, query
        for name, stat in STATS.items():
            filters = _random_filters(stat, rng, names, types)
            auto = stat.compute(window, filters, "auto")
            raw = stat.compute(window, filters, "raw")
            assert auto.rows == raw.rows, (name, query, filters)
            if auto.rows:
                answered[name] += 1
            for key, values in seen.items():
                if key in filters:
                    values.add(str(filters[key]))
            compared += 1
    assert compared > 100
    # The filters varied: every ranking of top_projects, both outcomes and
    # several type selections of events_by_type.
    assert len(seen["by"]) == 4 and len(seen["success"]) == 3 and len(seen["event_type"]) > 5
    # The top-N stats were compared on real rankings, not on empty answers.
    assert min(answered[name] for name in ("top_users", "top_projects", "top_orgs")) > 10


@pytest.mark.parametrize("res", ["1d", "7d", "30d"])
def test_counts_over_whole_days_equal_raw_events_in_every_zone(shuffled_history, res):
    # Whole UTC days come from the daily counts, each in the bucket most of
    # its hours go to, the others moved from the hourly counts; a DST change
    # (Lord Howe, Auckland, New York, London) or a cut hour (Kolkata,
    # Kathmandu) falls inside these 300 days.
    since = (NOW - timedelta(days=300, hours=5, minutes=17)).isoformat()
    for tz in ZONES:
        window = make_window(since=since, until=NOW.isoformat(), tz=tz, res=res)
        for name in ("events_by_type", "logins", "failures_by_type", "period_summary"):
            stat = STATS[name]
            filters = {p.name: p.default for p in stat.params}
            auto = stat.compute(window, filters, "auto")
            assert auto.rows, (name, tz, res)
            assert auto.rows == stat.compute(window, filters, "raw").rows, (name, tz, res)
