"""The failures' rankings of the top-N page: the most frequent errors and
the failed logins by user, each with the last time it was seen.

The errors read whole UTC days from failure_counts_daily
(audit.DailyErrorCount) and the partial days at both edges from `events`
(audit.buckets.whole_days); the failed logins whole UTC months from
failed_logins_monthly (audit.MonthlyFailedLogin), the days around them from
failed_logins_daily and the partial days from `events` (month_plan). The
last time of each ranked row is read from `events` in the one stretch that
holds it.
"""

from datetime import timedelta

from psycopg import sql

from audit.buckets import DAY_EDGES, DAY_SIGN, RAW_EDGES, RAW_SIGN, fetch, month_plan, whole_days
from audit.models import DailyErrorCount, DailyFailedLogin, MonthlyFailedLogin
from sphere_stats.windows import Window

# The last of a ranked row's events, found in the one stretch that holds it:
# the partial day at the window's end, else the last whole UTC day with the
# row's key, else the partial day at its start. Each (lo, hi) is one short
# backward scan of idx_events_failures_ts; the type is compared through
# coalesce (never NULL) so that it is a filter, not a BitmapAnd with
# idx_events_event_type, which reads every login of the table (0.09 s a row).
LAST_FAILURE_SQL = (
    "SELECT p.i, l.timestamp, l.error FROM unnest(%(lo)s::timestamptz[],"
    " %(hi)s::timestamptz[], %(types)s::text[], %(subjects)s::text[], %(errors)s::text[])"
    " WITH ORDINALITY AS p (lo, hi, event_type, subject, error, i)"
    " CROSS JOIN LATERAL (SELECT timestamp, coalesce(error_message, '') AS error FROM events"
    "  WHERE NOT success AND coalesce(event_type, '') = p.event_type"
    "  AND (p.subject IS NULL OR subject = p.subject)"
    "  AND (p.error IS NULL OR coalesce(error_message, '') = p.error)"
    "  AND timestamp >= p.lo AND timestamp < p.hi ORDER BY timestamp DESC LIMIT 1) AS l"
)


def _last_failures(days: dict, keys: list[tuple[str, str | None, str | None, object]]) -> list:
    """(timestamp, error) of the last failure of each (event_type, subject or
    None, error or None, latest) key, where `latest` is the newest of the
    key's raw timestamps and whole days (the ranking's max)."""
    day = timedelta(days=1)
    bounds = [
        (days["tail_lo"], days["tail_hi"])
        if latest >= days["tail_lo"]
        else (latest, latest + day)
        if latest >= days["first_day"]
        else (days["head_lo"], days["head_hi"])
        for *_, latest in keys
    ]
    params = {
        "lo": [lo for lo, _ in bounds],
        "hi": [hi for _, hi in bounds],
        "types": [k[0] for k in keys],
        "subjects": [k[1] for k in keys],
        "errors": [k[2] for k in keys],
    }
    found = {i: (at, error) for i, at, error in fetch(LAST_FAILURE_SQL, params)}
    return [found[i] for i in range(1, len(keys) + 1)]


ERRORS_RAW_SQL = (
    "SELECT coalesce(error_message, ''), event_type, count(*), max(timestamp) FROM events"
    " WHERE NOT success AND timestamp >= %(start)s AND timestamp < %(end)s"
    " GROUP BY 1, 2 ORDER BY 3 DESC, 1, 2 LIMIT %(n)s"
)
# `latest`: the newest raw timestamp of the key or the start of its newest
# whole day (every raw timestamp of the head precedes the first whole day,
# every one of the tail follows the last).
ERRORS_SQL = sql.SQL(
    "SELECT error, event_type, sum(n)::bigint, max(latest) FROM ("
    "  SELECT error_message, event_type, n, day FROM {daily}"
    "  WHERE day >= %(first_day)s AND day < %(end_day)s"
    "  UNION ALL SELECT coalesce(error_message, ''), event_type, count(*), max(timestamp)"
    "  FROM events WHERE NOT success AND {edges} GROUP BY 1, 2"
    ") AS s (error, event_type, n, latest) GROUP BY 1, 2 ORDER BY 3 DESC, 1, 2 LIMIT %(n)s"
).format(daily=sql.Identifier(DailyErrorCount._meta.db_table), edges=RAW_EDGES)


def top_errors(window: Window, n: int, source: str = "auto") -> list[tuple]:
    """Most frequent (error_message, event_type) among failures in the
    window, with the last time seen. Whole UTC days from
    failure_counts_daily, the partial days from `events`
    (idx_events_failures_ts), and each ranked row's last time from the one
    stretch that holds it (_last_failures)."""
    days = None if source == "raw" else whole_days(window.start, window.end)
    if days is None:
        return fetch(ERRORS_RAW_SQL, {"start": window.start, "end": window.end, "n": n})
    ranked = fetch(ERRORS_SQL, {**days, "n": n})
    last = _last_failures(days, [(t, None, error, latest) for error, t, _, latest in ranked])
    return [
        (error, t, count, at) for (error, t, count, _), (at, _) in zip(ranked, last, strict=True)
    ]


FAILED_LOGINS_RAW_SQL = (
    # The window count runs after GROUP BY and before LIMIT: every user is
    # grouped anyway to rank them, so knowing how many there are is free.
    "SELECT subject, count(*), max(timestamp),"
    " (array_agg(coalesce(error_message, '') ORDER BY timestamp DESC))[1],"
    " count(*) OVER () FROM events"
    " WHERE event_type = 'user_login' AND NOT success"
    " AND timestamp >= %(start)s AND timestamp < %(end)s"
    " GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT %(n)s"
)
# Every user's failures over a month_plan (each day and raw row with its
# side's sign), ranked; and each ranked user's latest failure, for
# _last_failures to search the one stretch that holds it: its newest in the
# window's partial last day (read apart, counting 0: the plan may have read
# that day as part of its month), else the last whole day it failed, read by
# key (idx_failed_logins_user), else the window's partial first day. The
# month rows say nothing of when in the month. The counts are summed as
# float8, exact for every integer below 2**53: a bigint's sum is a numeric,
# whose accumulator cost a tenth of the statement (a year at 10M events
# sums 136,000 rows of 23,500 users).
FAILED_LOGINS_SQL = sql.SQL(
    "WITH ranked AS ("
    " SELECT username, sum(n::float8)::bigint AS n, max(latest) AS latest,"
    "  count(*) OVER () AS total"
    " FROM ("
    "  SELECT username, n, NULL::timestamptz FROM {monthly}"
    "  WHERE month >= %(first_month)s AND month < %(end_month)s"
    "  UNION ALL SELECT username, {day_sign} * n, NULL FROM {daily} WHERE {day_edges}"
    "  UNION ALL SELECT subject, sign * n, NULL FROM ("
    "   SELECT subject, {raw_sign}, count(*) FROM events"
    "   WHERE event_type = 'user_login' AND NOT success AND {edges} GROUP BY 1, 2"
    "  ) AS r (subject, sign, n)"
    "  UNION ALL SELECT subject, 0, max(timestamp) FROM events"
    "  WHERE event_type = 'user_login' AND NOT success"
    "  AND timestamp >= %(last_lo)s AND timestamp < %(last_hi)s GROUP BY 1"
    " ) AS s (username, n, latest) GROUP BY 1 HAVING sum(n::float8) > 0"
    " ORDER BY 2 DESC, 1 LIMIT %(n)s"
    ") SELECT username, n, coalesce(latest, (SELECT max(day) FROM {daily} d"
    "  WHERE d.username = r.username AND d.day >= %(first_day)s AND d.day < %(end_day)s),"
    "  %(first_lo)s), total FROM ranked r ORDER BY 2 DESC, 1"
).format(
    monthly=sql.Identifier(MonthlyFailedLogin._meta.db_table),
    daily=sql.Identifier(DailyFailedLogin._meta.db_table),
    day_sign=DAY_SIGN,
    day_edges=DAY_EDGES,
    raw_sign=RAW_SIGN,
    edges=RAW_EDGES,
)


def failed_logins(window: Window, n: int | None, source: str = "auto") -> list[tuple]:
    """Failed logins in the window by username, most failures first: (user,
    failures, last attempt, last error, users in all). `n=None` returns
    every user, from `events` (idx_events_type_ts); a top n counts whole
    UTC months from failed_logins_monthly, the days around them from
    failed_logins_daily and the partial days from `events` (month_plan),
    and finds each ranked user's last attempt in the one stretch that
    holds it."""
    days = None if source == "raw" or n is None else whole_days(window.start, window.end)
    if days is None:
        return fetch(FAILED_LOGINS_RAW_SQL, {"start": window.start, "end": window.end, "n": n})
    plan = month_plan(window.start, window.end)
    params = {
        **plan,
        "first_day": days["first_day"],
        "end_day": days["end_day"],
        "first_lo": days["head_lo"],
        "last_lo": days["tail_lo"],
        "last_hi": days["tail_hi"],
        "n": n,
    }
    ranked = fetch(FAILED_LOGINS_SQL, params)
    last = _last_failures(days, [("user_login", user, None, at) for user, _, at, _ in ranked])
    return [
        (user, count, at, error, total)
        for (user, count, _, total), (at, error) in zip(ranked, last, strict=True)
    ]
