"""The Redis cache behind rate limits: shared counting when Redis is up,
no 500s when it is down."""

import socket
import uuid

import pytest
import time_machine
from django.core.cache import caches
from django.test import Client

from audit.models import Event
from sphere_stats.env import Rate
from sphere_stats.models import ApiToken

EVENT = {
    "event_type": "user_login",
    "caller": "alice",
    "subject": "alice",
    "subject_type": "user",
    "success": True,
}
REDIS = "redis://127.0.0.1:6379/15"


def redis_cache(location: str) -> dict:
    return {
        "default": {
            "BACKEND": "sphere_stats.cache.ResilientRedisCache",
            "LOCATION": location,
            "OPTIONS": {"socket_connect_timeout": 0.5, "socket_timeout": 0.5},
        }
    }


def redis_is_running() -> bool:
    try:
        socket.create_connection(("127.0.0.1", 6379), timeout=0.5).close()
        return True
    except OSError:
        return False


def post(client: Client, **overrides):
    return client.post("/api/v1/events", {**EVENT, **overrides}, content_type="application/json")


def token_client() -> Client:
    raw = ApiToken.issue(f"cache-{uuid.uuid4()}", ["ingest"])[1]
    return Client(HTTP_AUTHORIZATION=f"Bearer {raw}")


@pytest.fixture
def drop_cache_connections():
    yield
    caches["default"].close()


def test_with_redis_down_ingest_still_stores_and_is_not_limited(
    db, settings, drop_cache_connections
):
    settings.CACHES = redis_cache("redis://127.0.0.1:1/0")  # nothing listens there
    settings.RATE_LIMITS = {**settings.RATE_LIMITS, "ingest": Rate(1, 60)}
    client = token_client()
    answers = [post(client, caller=f"u{i}").status_code for i in range(3)]
    assert answers == [201, 201, 201]
    assert Event.objects.count() == 3


def test_with_redis_down_the_facility_page_still_renders(
    db, settings, admin_client, drop_cache_connections
):
    settings.CACHES = redis_cache("redis://127.0.0.1:1/0")
    assert admin_client.get("/facilities/").status_code == 200


@pytest.mark.skipif(not redis_is_running(), reason="no Redis at 127.0.0.1:6379")
def test_rate_limits_count_in_redis(db, settings, drop_cache_connections):
    settings.CACHES = redis_cache(REDIS)
    caches["default"].clear()
    settings.RATE_LIMITS = {**settings.RATE_LIMITS, "ingest": Rate(2, 60)}
    client = token_client()
    with time_machine.travel("2026-05-01 12:00:10Z", tick=False):  # one rate window
        answers = [post(client, caller=f"u{i}").status_code for i in range(3)]
    assert answers == [201, 201, 429]
    # Redis holds the counter, where every worker and replica sees it.
    assert any(key for key in caches["default"]._cache.get_client().keys("*rl:ingest:*"))
    caches["default"].clear()
