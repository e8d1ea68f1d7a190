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

# What each operation answers while Redis is unreachable, called with the
# operation's own arguments.
FALLBACKS = {
    "add": lambda *args, **kwargs: True,  # "added": a rate-limit window starts at one hit
    "get": lambda key, default=None, version=None: default,
    "get_many": lambda *args, **kwargs: {},
    "set": lambda *args, **kwargs: None,
    "set_many": lambda *args, **kwargs: [],
    "incr": lambda key, delta=1, version=None: delta,  # as if the window were new
    "delete": lambda *args, **kwargs: False,
    "delete_many": lambda *args, **kwargs: None,
    "touch": lambda *args, **kwargs: False,
    "has_key": lambda *args, **kwargs: False,
    "clear": lambda *args, **kwargs: None,
}


def _degrading(name: str, fallback):
    method = getattr(RedisCache, name)

    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        try:
            return method(self, *args, **kwargs)
        except (RedisError, OSError) as exc:
            logger.warning("cache unavailable (%s in %s); carrying on without it", exc, name)
            return fallback(*args, **kwargs)

    return wrapper


class ResilientRedisCache(RedisCache):
    """Django's RedisCache whose operations fall back instead of raising."""


for _name, _fallback in FALLBACKS.items():
    setattr(ResilientRedisCache, _name, _degrading(_name, _fallback))
