"""Top-N rankings proved from candidates: the first rows of a ranking over a
window, read from each touched UTC month's busiest keys and the exact counts
of those alone (the most active users, dashboards/stats/top.py;
docs/aggregates.md "The most active users: only the candidates")."""

from psycopg import sql

from audit.buckets import fetch, months_between, unit_ceil, unit_floor
from sphere_stats.windows import Window


def heads_sql(table: str, key: str, score: str) -> sql.Composed:
    """Each touched month's first `head` rows of a monthly table by `score`:
    a key outside them scored at most the last of them that month."""
    return sql.SQL(
        "SELECT g.month, h.key, h.score FROM unnest(%(months)s::timestamptz[]) AS g (month)"
        " CROSS JOIN LATERAL (SELECT {key} AS key, {score} AS score FROM {table} m"
        " WHERE m.month = g.month ORDER BY {score} DESC LIMIT %(head)s) AS h"
    ).format(table=sql.Identifier(table), key=sql.Identifier(key), score=sql.Identifier(score))


# How many rows of each month a round reads, per row asked for; a round that
# cannot prove its ranking is followed by one reading four times as many, up
# to HEAD_ROUNDS rounds, then every key is counted. One round: a second one
# proved little on the demo data (at 1M events, the 7-day users' second round
# read 401 candidates in 42 ms and still failed).
HEAD_PER_ROW, HEAD_EXTRA, HEAD_ROUNDS = 2, 50, 1


def bounded_top(
    heads: sql.Composable,
    candidates: sql.Composable,
    score: int,
    n: int,
    months: list,
    params: dict,
) -> list[tuple] | None:
    """The first n rows of a ranking over a month_plan, from candidates only;
    None when the bound cannot prove them in HEAD_ROUNDS rounds.

    A key's count in the window is at most the sum of its counts in the UTC
    months the window touches (`months`). The candidates are the first
    `head` keys of each such month (`heads`, heads_sql); a key outside them
    has, in every month, at most the last head count of that month, so at
    most their sum `bound` in all. `candidates` ranks the candidates
    (`keys`) by their exact counts, their `score` column first; once the
    n-th exceeds the bound, no other key can be in the first n, ties
    included (threshold algorithm, Fagin et al. 2001). Skewed activity
    proves it in the first round: a few hundred key lookups instead of every
    key's daily rows.
    """
    head = HEAD_PER_ROW * n + HEAD_EXTRA
    for _round in range(HEAD_ROUNDS):
        rows = fetch(heads, {"months": months, "head": head})
        lasts: dict = {}
        per_month: dict = {}
        for month, _key, value in rows:
            lasts[month] = value
            per_month[month] = per_month.get(month, 0) + 1
        full = {m: lasts[m] for m, count in per_month.items() if count == head}
        bound = sum(full.values())
        exhausted = not full
        if not exhausted and not _may_prove(rows, full, bound, n):
            head *= 4
            continue
        keys = sorted({key for _month, key, _value in rows})
        found = fetch(candidates, {**params, "keys": keys, "n": n})
        if exhausted or (len(found) == n and found[-1][score] > bound):
            return found
        head *= 4
    return None


def _may_prove(rows: list[tuple], full: dict, bound: int, n: int) -> bool:
    """Whether n candidates can count more than `bound`: each key's count is
    at most its head counts plus, in a full month whose head it is not in,
    that month's last head count. When fewer than n keys' such bounds
    exceed `bound`, the candidates' exact counts cannot prove the ranking,
    and reading them is skipped (even activity: the demo's projects)."""
    seen: dict = {}
    for month, key, value in rows:
        # A key's own count replaces the month's last one in its bound.
        seen[key] = seen.get(key, bound) + value - full.get(month, 0)
    return sum(upper > bound for upper in seen.values()) >= n


def touched_months(window: Window) -> list:
    """The starts of the UTC months [window.start, window.end) touches."""
    return months_between(unit_floor(window.start, "month"), unit_ceil(window.end, "month"))
