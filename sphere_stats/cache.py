"""A Redis cache that degrades instead of failing when Redis is unreachable.

The cache holds only counters (rate limits, login failures) and a 30-second
copy of the facility usage table. Losing Redis must not turn ingest or pages
into 500s: a read misses, a write is dropped and the rate limits stop
counting until Redis is back (failing open keeps accepting audit events,
which matters more than throttling). Each failure is logged.
"""

import functools
import logging

from django.core.cache.backends.redis import RedisCache
from redis.exceptions import RedisError

logger = logging.getLogger(__name__)

# What each operation answers while Redis is unreachable.
FALLBACKS = {
    "add": True,  # "added": a rate-limit window starts at one hit
    "get": None,  # replaced by the caller's default
    "get_many": {},
    "set": None,
    "set_many": [],
    "delete": False,
    "delete_many": None,
    "touch": False,
    "has_key": False,
    "clear": None,
}


def _degrading(name: str, fallback):
    method = getattr(RedisCache, name)

    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        try:
            return method(self, *args, **kwargs)
        except (RedisError, OSError) as exc:
            logger.warning("cache unavailable (%s in %s); carrying on without it", exc, name)
            if name == "get":
                return kwargs.get("default", args[1] if len(args) > 1 else None)
            return fallback

    return wrapper


def _incr(self, key, delta=1, version=None):
    try:
        return RedisCache.incr(self, key, delta, version)
    except (RedisError, OSError) as exc:
        logger.warning("cache unavailable (%s in incr); carrying on without it", exc)
        return delta


class ResilientRedisCache(RedisCache):
    """Django's RedisCache whose operations fall back instead of raising."""

    incr = _incr


for _name, _fallback in FALLBACKS.items():
    setattr(ResilientRedisCache, _name, _degrading(_name, _fallback))
