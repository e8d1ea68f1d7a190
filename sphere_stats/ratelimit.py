"""Per-token rate limits for the API, and login throttling, in Django's cache.

The cache is Redis when REDIS_URL is set (shared by every worker and every
web replica), local memory otherwise (per worker process, so the effective
limit is the configured one times the number of workers).

Counters are fixed windows: the key names the window it counts, so a counter
needs one atomic increment per request and expires by itself.
"""

import time

from django.conf import settings
from django.core.cache import cache
from django.http import HttpRequest

from sphere_stats.api import ApiError


def _hit(key: str, window: int) -> int:
    """Count one hit on `key` (which expires after `window` seconds); the new count."""
    # incr() is atomic in Redis and under a lock in locmem, so concurrent
    # requests never lose a count. Most hits find their window's key, so
    # incr() comes first: one cache operation per request, not two.
    try:
        return cache.incr(key)
    except ValueError:
        pass
    # The window's first hit. add() is a no-op when the key exists: of two
    # first hits at once, one adds and the other counts on.
    if cache.add(key, 1, timeout=window + 1):
        return 1
    try:
        return cache.incr(key)
    except ValueError:
        # Expired between add() and incr(): this hit opens a new window.
        cache.set(key, 1, timeout=window + 1)
        return 1


def rate_limit(request: HttpRequest, bucket: str) -> None:
    """Count a request against its token's `bucket` limit (settings.RATE_LIMITS);
    raise a 429 ApiError with Retry-After when it is over.

    Call it first thing in a ninja operation that has token auth:
    `rate_limit(request, "ingest")`.
    """
    rate = settings.RATE_LIMITS.get(bucket)
    token = getattr(request, "auth", None)
    if rate is None or token is None:
        return
    now = time.time()
    window = int(now // rate.seconds)
    count = _hit(f"rl:{bucket}:{token.pk}:{window}", rate.seconds)
    if count > rate.requests:
        retry_after = max(1, int((window + 1) * rate.seconds - now + 0.999))
        raise ApiError(
            429,
            f"Rate limit exceeded: at most {rate.requests} {bucket} requests per "
            f"{rate.seconds} s for this token. Retry after {retry_after} s.",
            headers={"Retry-After": str(retry_after)},
        )


# --- login throttling -----------------------------------------------------------------


def client_ip(request: HttpRequest) -> str:
    """The client's address: REMOTE_ADDR, or the header a trusted proxy sets
    (settings.CLIENT_IP_HEADER, e.g. HTTP_X_REAL_IP behind the compose nginx)."""
    header = settings.CLIENT_IP_HEADER
    if header:
        value = request.META.get(header, "")
        # X-Forwarded-For may hold a chain; the proxy appends the real peer last.
        value = value.split(",")[-1].strip()
        if value:
            return value
    return request.META.get("REMOTE_ADDR", "") or "unknown"


def _login_keys(username: str, ip: str) -> list[tuple[str, int]]:
    window = settings.LOGIN_FAILURE_WINDOW
    slot = int(time.time() // window)
    # Per username and address: a guesser at one account. Per address: a
    # guesser trying many usernames. (Not per username alone: anyone could
    # then lock a user out.)
    return [
        (f"login:u:{username.lower()}:{ip}:{slot}", settings.LOGIN_FAILURE_LIMIT),
        (f"login:ip:{ip}:{slot}", settings.LOGIN_FAILURE_LIMIT_PER_IP),
    ]


def login_blocked(username: str, ip: str) -> bool:
    """True when this username/address has failed too often in this window."""
    keys = _login_keys(username, ip)
    counts = cache.get_many([key for key, _ in keys])
    return any(counts.get(key, 0) >= limit for key, limit in keys)


def login_failed(username: str, ip: str) -> None:
    for key, _ in _login_keys(username, ip):
        _hit(key, settings.LOGIN_FAILURE_WINDOW)


def login_succeeded(username: str, ip: str) -> None:
    cache.delete(_login_keys(username, ip)[0][0])
