"""Computed stats are reused for STATS_CACHE_SECONDS, never longer: a page is
at most that stale, and `source=raw` is never cached."""

from datetime import timedelta

import pytest
import time_machine
from django.core.cache import cache

from audit.ingest import ingest
from tests.dashboards.conftest import NOW, event

LOGINS = "/api/v1/stats/logins?period=24h&res=1d"


def failed_logins(client) -> int:
    return sum(row[2] for row in client.get(LOGINS).json()["rows"])


def failed_login(minutes_ago: int) -> dict:
    ts = (NOW - timedelta(minutes=minutes_ago)).isoformat()
    return event(ts, "user_login", "alice", "user", caller="alice", success=False, error="bad")


@pytest.fixture(autouse=True)
def _cache_on(settings):
    settings.STATS_CACHE_SECONDS = 30
    cache.clear()
    yield
    cache.clear()


def test_a_stat_is_reused_within_the_ttl_and_recomputed_after(viewer_client):
    ingest([failed_login(50)], now=NOW)
    with time_machine.travel(NOW, tick=False) as clock:
        assert failed_logins(viewer_client) == 1
        ingest([failed_login(40)], now=NOW)
        # Same window, same slot: the cached answer.
        assert failed_logins(viewer_client) == 1
        clock.shift(timedelta(seconds=30))
        # The next slot: computed again, with the new event.
        assert failed_logins(viewer_client) == 2


def test_the_raw_source_is_never_cached(viewer_client):
    ingest([failed_login(50)], now=NOW)
    with time_machine.travel(NOW, tick=False):
        assert failed_logins(viewer_client) == 1
        ingest([failed_login(40)], now=NOW)
        raw = viewer_client.get(LOGINS + "&source=raw").json()
        assert sum(row[2] for row in raw["rows"]) == 2


def test_different_windows_and_zones_are_cached_apart(viewer_client):
    ingest([failed_login(50)], now=NOW)
    with time_machine.travel(NOW, tick=False):
        assert failed_logins(viewer_client) == 1
        ingest([failed_login(40)], now=NOW)
        tokyo = viewer_client.get(LOGINS + "&tz=Asia/Tokyo").json()
        assert sum(row[2] for row in tokyo["rows"]) == 2


def test_a_zero_ttl_turns_the_cache_off(viewer_client, settings):
    settings.STATS_CACHE_SECONDS = 0
    ingest([failed_login(50)], now=NOW)
    with time_machine.travel(NOW, tick=False):
        assert failed_logins(viewer_client) == 1
        ingest([failed_login(40)], now=NOW)
        assert failed_logins(viewer_client) == 2


def test_custom_ranges_to_different_future_ends_are_cached_apart(viewer_client):
    # NOW is 12:00 UTC on March 10: both ranges end in the future.
    ingest([failed_login(50)], now=NOW)
    custom = "/api/v1/stats/logins?since=2026-03-10&res=1d&until="
    with time_machine.travel(NOW, tick=False):
        two_days = viewer_client.get(custom + "2026-03-11").json()["rows"]
        three_days = viewer_client.get(custom + "2026-03-12").json()["rows"]
    assert [row[0][:10] for row in two_days] == ["2026-03-10", "2026-03-11"]
    assert [row[0][:10] for row in three_days] == ["2026-03-10", "2026-03-11", "2026-03-12"]
    assert two_days[0][2] == three_days[0][2] == 1


def test_a_custom_range_still_open_is_recomputed_after_the_ttl(viewer_client):
    ingest([failed_login(50)], now=NOW)
    url = "/api/v1/stats/logins?since=2026-03-10&until=2026-03-11&res=1d"
    with time_machine.travel(NOW, tick=False) as clock:
        assert sum(row[2] for row in viewer_client.get(url).json()["rows"]) == 1
        ingest([failed_login(40)], now=NOW)
        assert sum(row[2] for row in viewer_client.get(url).json()["rows"]) == 1
        clock.shift(timedelta(seconds=30))
        assert sum(row[2] for row in viewer_client.get(url).json()["rows"]) == 2
