"""The Redis cache: no 500s when it is down, and the rate limits, which are
counted in PostgreSQL, hold with it up or down."""

import uuid

import pytest
import time_machine
from django.core.cache import caches
from django.db import connection
from django.test import Client

from audit.models import Event
from sphere_stats.env import Rate
from sphere_stats.models import ApiToken
from tests.factories import ABSENT, event

# No event_uuid: each POST stores an event of its own.
EVENT = event(event_uuid=ABSENT, timestamp=ABSENT)
REDIS = "redis://127.0.0.1:6379/15"


def redis_cache(location: str) -> dict:
    return {
        "default": {
            "BACKEND": "sphere_stats.cache.ResilientRedisCache",
            "LOCATION": location,
            "OPTIONS": {"socket_connect_timeout": 0.5, "socket_timeout": 0.5},
        }
    }


def post(client: Client, **overrides):
    return client.post("/api/v1/events", {**EVENT, **overrides}, content_type="application/json")


def token_client() -> Client:
    raw = ApiToken.issue(f"cache-{uuid.uuid4()}", ["ingest"])[1]
    return Client(HTTP_AUTHORIZATION=f"Bearer {raw}")


@pytest.fixture
def drop_cache_connections():
    yield
    caches["default"].close()


def test_with_redis_down_ingest_still_stores_and_the_limit_still_holds(
    db, settings, drop_cache_connections
):
    # The limits are counted in PostgreSQL (sphere_stats/ratelimit.py), not in
    # the cache: an unreachable Redis neither fails requests nor lifts them.
    settings.CACHES = redis_cache("redis://127.0.0.1:1/0")  # nothing listens there
    settings.RATE_LIMITS = {**settings.RATE_LIMITS, "ingest": Rate(1, 60)}
    client = token_client()
    with time_machine.travel("2026-05-01 12:00:10Z", tick=False):  # one rate window
        answers = [post(client, caller=f"u{i}").status_code for i in range(3)]
    assert answers == [201, 429, 429]
    assert Event.objects.count() == 1


def test_with_redis_down_the_facility_page_still_renders(
    db, settings, admin_client, drop_cache_connections
):
    settings.CACHES = redis_cache("redis://127.0.0.1:1/0")
    assert admin_client.get("/facilities/").status_code == 200


def test_rate_limits_count_in_postgresql_even_with_redis_configured(
    db, settings, drop_cache_connections
):
    settings.CACHES = redis_cache(REDIS)  # up or not: the limits do not use it
    settings.RATE_LIMITS = {**settings.RATE_LIMITS, "ingest": Rate(2, 60)}
    client = token_client()
    with time_machine.travel("2026-05-01 12:00:10Z", tick=False):  # one rate window
        answers = [post(client, caller=f"u{i}").status_code for i in range(3)]
    assert answers == [201, 201, 429]
    # PostgreSQL holds the counter, where every worker and replica sees it.
    with connection.cursor() as cursor:
        cursor.execute("SELECT hits FROM sphere_stats_rate_counter WHERE key LIKE 'rl:ingest:%'")
        assert cursor.fetchall() == [(3,)]
