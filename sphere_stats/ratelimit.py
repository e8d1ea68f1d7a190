"""Per-token rate limits for the API, and login throttling, counted in PostgreSQL.

One table (sphere_stats_rate_counter, migration 0003) that every gunicorn
worker and every web replica writes to, so a limit is counted once however
many processes serve it, with or without Redis. Each count is one atomic upsert
(INSERT ... ON CONFLICT DO UPDATE ... RETURNING): concurrent requests queue on
the counter's row for that statement alone, and each sees a different count.
Django's database cache was no fit: its incr() is a read and then a write,
which two workers interleave and so lose counts.

Counters are fixed windows: the key names the window it counts, so a counter
needs one statement per hit (for a rate limit, one per lease: see _take);
rows of ended windows are pruned now and then.
"""

import threading
import time
from datetime import UTC, datetime

from django.conf import settings
from django.http import HttpRequest

from sphere_stats.api import ApiError
from sphere_stats.db import bulk_cursor, compact_sql

HIT_SQL = compact_sql("""
    INSERT INTO sphere_stats_rate_counter AS counter (key, hits, expires_at)
    -- In key order: two requests counting the same keys lock their rows in
    -- one order, and never deadlock.
    SELECT key, 1, expires_at
      FROM unnest(%(keys)s::text[], %(expires)s::timestamptz[]) AS hit(key, expires_at)
     ORDER BY key
    ON CONFLICT (key) DO UPDATE SET hits = counter.hits + 1
    RETURNING key, hits
""")
PRUNE_SQL = "DELETE FROM sphere_stats_rate_counter WHERE expires_at < %(now)s"
# How often one process prunes ended windows, at most.
PRUNE_EVERY_SECONDS = 60
_last_prune = 0.0


def _hit(keys: dict[str, float]) -> dict[str, int]:
    """Count one hit on each key (key: the Unix time its window ends); the new counts.

    Runs in the caller's transaction when there is one: call it before any
    atomic() block, or the counter's row stays locked until that commits.
    """
    names = sorted(keys)
    with bulk_cursor() as cursor:
        cursor.execute(
            HIT_SQL,
            {
                "keys": names,
                "expires": [datetime.fromtimestamp(keys[key], UTC) for key in names],
            },
        )
        rows = cursor.fetchall()
        _prune_now_and_then(cursor)
    return dict(rows)


def _prune_now_and_then(cursor) -> None:
    """Drop the counters of ended windows, once a PRUNE_EVERY_SECONDS per process."""
    global _last_prune
    if time.monotonic() - _last_prune > PRUNE_EVERY_SECONDS:
        _last_prune = time.monotonic()
        cursor.execute(PRUNE_SQL, {"now": datetime.fromtimestamp(time.time(), UTC)})


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
    key = f"rl:{bucket}:{token.pk}:{window}"
    if not _take(key, (window + 1) * rate.seconds, rate.requests):
        retry_after = max(1, int((window + 1) * rate.seconds - now + 0.999))
        raise ApiError(
            429,
            f"Rate limit exceeded: at most {rate.requests} {bucket} requests per "
            f"{rate.seconds} s for this token. Retry after {retry_after} s.",
            headers={"Retry-After": str(retry_after)},
        )


# A process takes hits of a rate limit from PostgreSQL in leases of up to
# 1/LEASE_FRACTION of the limit (at least one), and spends them without a
# round trip: one upsert per 15 requests at the default 3000/60 rather than
# one each, which on one token's hot counter row cost single-event ingest
# 45% of its rate. The limit still holds exactly as an upper bound; what a
# process leased and had no request for when the window ends is lost, so a
# token may be refused up to (processes x lease) requests early. Limits
# under LEASE_FRACTION x 2 lease one hit at a time: exact.
LEASE_FRACTION = 200
_leases: dict[str, tuple[int, float]] = {}  # key: (hits left, Unix time its window ends)
_leases_lock = threading.Lock()

TAKE_SQL = compact_sql("""
    INSERT INTO sphere_stats_rate_counter AS counter (key, hits, expires_at)
    VALUES (%(key)s, %(size)s, %(expires)s)
    ON CONFLICT (key) DO UPDATE SET hits = counter.hits + %(size)s
    RETURNING hits
""")


def _take(key: str, ends: float, limit: int) -> bool:
    """One hit of `limit` on `key` for this request: from this process's
    lease, or a new lease from PostgreSQL; False when the limit is spent."""
    with _leases_lock:
        left, _ = _leases.get(key, (0, ends))
        if left > 0:
            _leases[key] = (left - 1, ends)
            return True
    size = max(1, limit // LEASE_FRACTION)
    with bulk_cursor() as cursor:
        cursor.execute(
            TAKE_SQL,
            {"key": key, "size": size, "expires": datetime.fromtimestamp(ends, UTC)},
        )
        hits = cursor.fetchone()[0]
        _prune_now_and_then(cursor)
    granted = min(size, max(0, limit - (hits - size)))
    if granted == 0:
        return False
    now = time.time()
    with _leases_lock:
        for stale in [k for k, (_, end) in _leases.items() if end <= now]:
            del _leases[stale]
        left, _ = _leases.get(key, (0, ends))
        _leases[key] = (left + granted - 1, ends)
    return True


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


def login_attempt(username: str, ip: str) -> bool:
    """Count a login attempt before its password is checked; True when it is
    within the limits and may be checked.

    Counting first is what makes the limit hold: 40 attempts at once each
    take their own count from PostgreSQL, and only the first
    LOGIN_FAILURE_LIMIT of them reach the (slow) password hash. An attempt
    that succeeds is taken back (login_succeeded), so the counts are failures.
    """
    keys = _login_keys(username, ip)
    window = settings.LOGIN_FAILURE_WINDOW
    ends = (int(time.time() // window) + 1) * window
    counts = _hit({key: ends for key, _ in keys})
    return all(counts[key] <= limit for key, limit in keys)


def login_succeeded(username: str, ip: str) -> None:
    """The attempt logged in: the username's failures are forgotten, and the
    address's count gives back this attempt."""
    (user_key, _), (ip_key, _) = _login_keys(username, ip)
    with bulk_cursor() as cursor:
        cursor.execute(
            "DELETE FROM sphere_stats_rate_counter WHERE key = %(key)s", {"key": user_key}
        )
        cursor.execute(
            "UPDATE sphere_stats_rate_counter SET hits = hits - 1 WHERE key = %(key)s AND hits > 0",
            {"key": ip_key},
        )
