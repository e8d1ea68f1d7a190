"""Daily, weekly and monthly active users: distinct users with a successful
login per local day, week and month of the display zone.

They read login_users_daily (audit.DailyLoginUser: each user's successful
logins per UTC day, and the first and last quarter hour of the day with
one) for every local day that begins and ends on a quarter hour of two UTC
days, or is one; login_users_hourly (audit.HourlyLoginUser: successful
logins per UTC hour and user, and how many of them came before the hour's
15th, 30th and 45th minute) for the whole hours of the other days and for
an hour their midnight cuts on a quarter hour; and `events`
(idx_events_logins_ts) for the rest: the window's partial edge hours and an
hour in which the offset changes (audit.buckets finds them). A week or
month whole inside the window counts its users from login_users_weekly or
login_users_monthly: those of its first UTC week or month whose last login
came at or after its start, and those of the next whose first login came
before its end. Only the days of the window's cut first and last weeks and
months are paired and deduplicated.
"""

from datetime import datetime
from typing import NamedTuple

from psycopg import sql

from audit.buckets import HOUR, counted_before, cover, fetch, local_days, quarter_minute, straddles
from audit.models import DailyLoginUser, HourlyLoginUser, MonthlyLoginUser, WeeklyLoginUser
from dashboards.charts import TALLER, Overlay, Series, axes, layout, time_figure, time_traces, x_of
from dashboards.stats.registry import NO_OPTIONS, Column, Result, Stat, register
from sphere_stats.windows import Window

# A raw range of logins: [lo, hi) and the local day of all its rows, or None
# when each row finds its own.
LoginRange = tuple[datetime, datetime, datetime | None]
# An hour a local midnight cuts on a quarter hour: (hour, the minute, the day
# before the cut, the day after it), answered by the hour's quarter counts.
SplitHour = tuple[datetime, int, datetime, datetime]


class LoginPlan(NamedTuple):
    full_start: datetime  # the first whole hour
    full_end: datetime  # the end of the whole hours
    cut: list[datetime]  # whole hours kept out of every day's hours
    split: list[SplitHour]
    ranges: list[LoginRange]  # read from `events`


def _login_ranges(window: Window, source: str) -> LoginPlan:
    """Where each login of the window is read. The raw ranges are the
    partial hours at its edges, the hours in which the offset changes and,
    for a zone whose midnight falls off the quarter hours, both sides of
    each hour it cuts (each labelled with its day); source="raw" reads
    everything from `events`."""
    pieces = [] if source == "raw" else cover(window.start, window.end, ("hour",))
    hours = [(lo, hi) for unit, lo, hi in pieces if unit == "hour"]
    if not hours:
        return LoginPlan(window.end, window.end, [], [], [(window.start, window.end, None)])
    ((full_start, full_end),) = hours
    ranges: list[LoginRange] = [(window.start, full_start, None)]
    cut: list[datetime] = []
    split: list[SplitHour] = []
    # An hour a local midnight cuts lies outside every day's whole hours by
    # itself; one in which the offset changes is kept out by name.
    for hour, first, edge in straddles("day", window.tz_name, full_start, full_end):
        if edge is None:
            cut.append(hour)
            ranges.append((hour, hour + HOUR, None))
        elif (minute := quarter_minute(hour, edge)) is not None:
            split.append((hour, minute, first, edge))
        else:
            ranges += [(hour, edge, first), (edge, hour + HOUR, edge)]
    ranges.append((full_end, window.end, None))
    return LoginPlan(full_start, full_end, cut, split, [r for r in ranges if r[0] < r[1]])


RANGES = sql.SQL(
    "unnest(%(raw_lo)s::timestamptz[], %(raw_hi)s::timestamptz[], %(raw_label)s::timestamptz[])"
    " AS r (lo, hi, label)"
)
# The users of a local day whose part inside the whole hours, [s_lo, s_hi),
# begins and ends on quarter hours of two UTC days (Asia/Kolkata's runs from
# 18:30 to 18:30 UTC, New York's from 05:00 to 05:00): from its first UTC
# day those whose last login came at or after its start, from the next one
# those whose first came before its end. Some 120 rows of login_users_daily
# per UTC day at 10M events, instead of some 600 hourly ones; each day's
# two sets are merged by a small hash of their own.
BY_QUARTERS = (
    "SELECT username FROM {daily} WHERE day = d.lo_day AND last_quarter >= d.lo_q"
    " AND (d.hi_day > d.lo_day OR first_quarter < d.hi_q)"
    " UNION SELECT username FROM {daily} WHERE day = d.hi_day AND d.hi_day > d.lo_day"
    " AND d.hi_q > 0 AND first_quarter < d.hi_q"
)
# A local week or month read from login_users_weekly or _monthly (`weeks`,
# `months`: whole inside the window, from its UTC unit `a` to the next one,
# `b`): from `a` the users whose last login came at or after its start, from
# `b` those whose first came before its end. A UTC week or month (lo = a,
# hi = b) counts its rows from the primary key alone.
BOUNDED = (
    "SELECT '{unit}', b.lo, c.n FROM {buckets} AS b CROSS JOIN LATERAL ("
    " SELECT CASE WHEN b.lo = b.a AND b.hi = b.b"
    "  THEN (SELECT count(*) FROM {{{rows}}} WHERE {unit} = b.a)"
    "  ELSE (SELECT count(*) FROM (SELECT username FROM {{{rows}}}"
    "   WHERE {unit} = b.a AND last_login >= b.lo UNION SELECT username FROM {{{rows}}}"
    "   WHERE {unit} = b.b AND b.hi > b.b AND first_login < b.hi) AS u) END AS n OFFSET 0) AS c"
    " WHERE c.n > 0"
)
# Whole units of the zone inside the window whose ends fall in two
# consecutive UTC units, from `days` (a week or month of London's summer
# too; not one shortened by the hour the clocks go forward inside it).
UNITS = (
    "SELECT lo, hi, a, b FROM (SELECT {unit} AS lo, max(hi) AS hi,"
    "  date_trunc('{unit}', {unit}, 'UTC') AS a, date_trunc('{unit}', max(hi), 'UTC') AS b"
    "  FROM days GROUP BY {unit} HAVING bool_and(whole) AND min(lo) = {unit}"
    "  AND max(hi) = ({unit} AT TIME ZONE %(tz)s + interval '1 {unit}') AT TIME ZONE %(tz)s) AS u"
    " WHERE b = (a AT TIME ZONE 'UTC' + interval '1 {unit}') AT TIME ZONE 'UTC'"
)
# A day counted on its own: one read whole from login_users_daily of a week
# and a month read from their tables. Every other day's users are paired.
COUNTED_DAY = (
    "(utc_day OR by_quarters AND whole)"
    " AND week IN (SELECT lo FROM weeks) AND month IN (SELECT lo FROM months)"
)
ACTIVE_USERS_SQL = (
    # The local days over the window, each with its week and month, its
    # part inside the whole hours (s_lo, s_hi: the window's partial edge
    # hours are read from `events`) and its whole UTC hours (h_lo, h_hi),
    # computed once per day. How each day is read:
    # - utc_day: a whole UTC day, one day's rows of login_users_daily;
    # - by_quarters: BY_QUARTERS. Not a day cut twice inside one UTC day
    #   (the first of a short window), which the first and last logins
    #   cannot answer, nor one with an hour in which the offset changes;
    # - any other day: its whole hours from login_users_hourly.
    # `whole`: no edge hour of the window falls in the day.
    # A week or month whole inside the window (`weeks`, `months`, UNITS)
    # counts its users from login_users_weekly or _monthly (BOUNDED), and
    # its days' pairs are left out of its deduplication below. A day of
    # such a week and month is counted on its own (COUNTED_DAY), not paired.
    "WITH days AS ("
    "  SELECT *, NOT utc_day AND s_lo < s_hi AND hi_day <= lo_day + interval '1 day'"
    "   AND extract(epoch FROM s_lo) %% 900 = 0 AND extract(epoch FROM s_hi) %% 900 = 0"
    "   AND NOT (lo_day = hi_day AND lo_q > 0)"
    "   AND NOT EXISTS (SELECT FROM unnest(%(cut)s::timestamptz[]) AS c (hour)"
    "    WHERE c.hour + interval '1 hour' > s_lo AND c.hour < s_hi) AS by_quarters,"
    "   s_lo = lo AND s_hi = hi AS whole FROM ("
    "  SELECT *, h_lo = lo AND h_hi = hi AND hi - lo = interval '24 hours'"
    "   AND date_trunc('day', lo, 'UTC') = lo AS utc_day,"
    "   date_trunc('day', s_lo, 'UTC') AS lo_day, date_trunc('day', s_hi, 'UTC') AS hi_day,"
    "   (extract(epoch FROM s_lo - date_trunc('day', s_lo, 'UTC')) / 900)::int AS lo_q,"
    "   (extract(epoch FROM s_hi - date_trunc('day', s_hi, 'UTC')) / 900)::int AS hi_q FROM ("
    "  SELECT lo, hi, date_trunc('week', lo, %(tz)s) AS week,"
    "   date_trunc('month', lo, %(tz)s) AS month,"
    "   greatest(lo, %(full_start)s::timestamptz) AS s_lo,"
    "   least(hi, %(full_end)s::timestamptz) AS s_hi,"
    "   greatest(date_trunc('hour', lo + interval '1 hour' - interval '1 microsecond',"
    "    'UTC'), %(full_start)s::timestamptz) AS h_lo,"
    "   least(date_trunc('hour', hi, 'UTC'), %(full_end)s::timestamptz) AS h_hi FROM {local_days}"
    # OFFSET 0 keeps each level a subquery of its own: merged into one,
    # every use of a column recomputes its expression (date_trunc in a
    # named zone, some 1 us a call), and the days took twice as long.
    "  OFFSET 0) AS d OFFSET 0) AS d"
    f"), weeks AS ({UNITS.format(unit='week')}"
    f"), months AS ({UNITS.format(unit='month')}"
    "), pairs AS MATERIALIZED ("
    # A whole UTC day's rows are one per user already, and a whole day read
    # by quarters is deduplicated on its own. No other part below yields
    # such a day, so these pairs skip the deduplication of the rest, and
    # take their week and month from their day's row as they are read:
    # joining them to the days after was a quarter of the statement's time
    # in UTC. A COUNTED_DAY is not paired.
    "  SELECT d.lo AS day, d.week, d.month, u.username FROM days AS d CROSS JOIN LATERAL ("
    "   SELECT username FROM {daily} WHERE day = d.lo OFFSET 0) AS u"
    f"  WHERE d.utc_day AND NOT ({COUNTED_DAY})"
    "  UNION ALL SELECT d.lo, d.week, d.month, u.username FROM days AS d"
    f"  CROSS JOIN LATERAL ({BY_QUARTERS}) AS u"
    f"  WHERE d.by_quarters AND d.whole AND NOT ({COUNTED_DAY})"
    "  UNION ALL SELECT p.day, d.week, d.month, p.username FROM ("
    # PostgreSQL deduplicates these parts' pairs by hashing or sorting them.
    # Byte order ("C") compares the names without the database's collation
    # rules, which only order them.
    '  SELECT d.lo, u.username COLLATE "C" FROM days AS d CROSS JOIN LATERAL ('
    "   SELECT DISTINCT username FROM {hourly}"
    "   WHERE hour >= d.h_lo AND hour < d.h_hi AND hour <> ALL(%(cut)s::timestamptz[])) AS u"
    "  WHERE NOT d.utc_day AND NOT d.by_quarters"
    "  UNION SELECT d.lo, u.username FROM days AS d"
    f"  CROSS JOIN LATERAL ({BY_QUARTERS}) AS u WHERE d.by_quarters AND NOT d.whole"
    # A cut hour's users with a login before the cut count for the day
    # before it, those with one after it for the day after, where that day
    # is read by hours: the hours read by key only for those days.
    "  UNION SELECT s.day, h.username"
    "  FROM (SELECT s.hour, s.minute, v.side, v.day"
    "  FROM unnest(%(split_hour)s::timestamptz[], %(split_minute)s::int[],"
    "   %(split_before)s::timestamptz[], %(split_after)s::timestamptz[])"
    "   AS s (hour, minute, before, after)"
    "  CROSS JOIN LATERAL (VALUES (true, s.before), (false, s.after)) AS v (side, day)"
    "  JOIN days AS sd ON sd.lo = v.day AND NOT sd.by_quarters OFFSET 0) AS s"
    # Each cut hour's rows by key (OFFSET 0 keeps the lookup per hour): a
    # join was planned as a hash of the whole table, which grows with it.
    "  CROSS JOIN LATERAL (SELECT * FROM {hourly} WHERE hour = s.hour OFFSET 0) AS h"
    f"  CROSS JOIN LATERAL (SELECT {counted_before('h', 's.minute')}) AS q (early)"
    "  WHERE CASE WHEN s.side THEN q.early > 0 ELSE h.n > q.early END"
    # A labelled range's users are found apart (a half hour's logins, a few
    # users); an unlabelled one's rows each find their day.
    "  UNION SELECT r.label, e.subject FROM {ranges}"
    "  CROSS JOIN LATERAL (SELECT DISTINCT subject FROM events"
    "   WHERE event_type = 'user_login' AND success"
    "   AND timestamp >= r.lo AND timestamp < r.hi) AS e WHERE r.label IS NOT NULL"
    "  UNION SELECT date_trunc('day', e.timestamp, %(tz)s), e.subject FROM {ranges}"
    "  CROSS JOIN LATERAL (SELECT timestamp, subject FROM events"
    "   WHERE event_type = 'user_login' AND success"
    "   AND timestamp >= r.lo AND timestamp < r.hi OFFSET 0) AS e WHERE r.label IS NULL"
    "  ) AS p (day, username) JOIN days AS d ON d.lo = p.day"
    # DISTINCT in a subquery, not count(DISTINCT …): hashed, not sorted.
    ") SELECT 'day', day, count(*) FROM pairs GROUP BY 2"
    " UNION ALL SELECT 'week', week, count(*) FROM (SELECT DISTINCT week, username FROM pairs"
    "  WHERE week NOT IN (SELECT lo FROM weeks)) AS w GROUP BY 2"
    " UNION ALL SELECT 'month', month, count(*) FROM (SELECT DISTINCT month, username FROM pairs"
    "  WHERE month NOT IN (SELECT lo FROM months)) AS m GROUP BY 2"
    " UNION ALL SELECT 'day', d.lo, c.n FROM days AS d CROSS JOIN LATERAL ("
    "  SELECT CASE WHEN d.utc_day THEN (SELECT count(*) FROM {daily} WHERE day = d.lo)"
    f"  ELSE (SELECT count(*) FROM ({BY_QUARTERS}) AS u) END AS n OFFSET 0) AS c"
    f" WHERE {COUNTED_DAY} AND c.n > 0"
    " UNION ALL "
    + BOUNDED.format(unit="week", buckets="weeks", rows="weekly")
    + " UNION ALL "
    + BOUNDED.format(unit="month", buckets="months", rows="monthly")
)


def active_users(window: Window, source: str = "auto") -> list[tuple[str, datetime, int]]:
    """(unit, bucket, distinct users logged in) for days, weeks and months of
    the display zone. A week or month whole inside the window counts its
    users from login_users_weekly or _monthly (BOUNDED), a day of such a
    week and month on its own. For the rest the distinct (local day, user)
    pairs are found once, and the cut weeks and months regrouped from them
    (a local week or month is whole local days).

    The pairs come from login_users_daily for the days cut on quarter hours
    (one or two keys of its primary key per day), from login_users_hourly
    for the whole hours of the other local days (one range of its primary
    key per day, so no row needs its local day computed) and the hours cut
    on a quarter hour, and from `events` for the raw ranges (_login_ranges).
    """
    full_start, full_end, cut, split, ranges = _login_ranges(window, source)
    lows, highs, labels = [list(c) for c in zip(*ranges, strict=True)] if ranges else ([], [], [])
    hours, minutes, befores, afters = (
        [list(c) for c in zip(*split, strict=True)] if split else ([], [], [], [])
    )
    query = sql.SQL(ACTIVE_USERS_SQL).format(
        local_days=local_days(),
        hourly=sql.Identifier(HourlyLoginUser._meta.db_table),
        daily=sql.Identifier(DailyLoginUser._meta.db_table),
        weekly=sql.Identifier(WeeklyLoginUser._meta.db_table),
        monthly=sql.Identifier(MonthlyLoginUser._meta.db_table),
        ranges=RANGES,
    )
    params = {
        "tz": window.tz_name,
        "start": window.start,
        "end": window.end,
        "full_start": full_start,
        "full_end": full_end,
        "cut": cut,
        "split_hour": hours,
        "split_minute": minutes,
        "split_before": befores,
        "split_after": afters,
        "raw_lo": lows,
        "raw_hi": highs,
        "raw_label": labels,
    }
    order = {"day": 0, "week": 1, "month": 2}
    return sorted(fetch(query, params), key=lambda r: (order[r[0]], r[1]))


@register
class ActiveUsers(Stat):
    name = "active_users"
    title = "Daily, weekly and monthly active users"
    description = (
        "Distinct users with a successful login per day, week (from Monday) and calendar "
        "month of the display time zone; the first and last weeks and months are cut to "
        "the period."
    )
    chart = "line"
    uses_preaggregates = True
    timeseries = True

    LINES = (
        ("day", "daily", "#2563eb"),
        ("week", "weekly", "#16a34a"),
        ("month", "monthly", "#7c3aed"),
    )

    def compute(self, window, filters, source="auto"):
        rows = [list(r) for r in active_users(window, source)]
        return Result(
            [Column("per"), Column("bucket", "datetime"), Column("users", "integer")], rows
        )

    def figure(self, result, window, options=NO_OPTIONS):
        traces = []
        logins = {"event_type": ["user_login"], "success": True}
        for per, label, color in self.LINES:
            rows = [r for r in result.rows if r[0] == per]
            hover = f"%{{y}} users logged in, {per} of %{{x}}"
            trace = {
                "type": "scatter",
                "mode": "lines+markers" if len(rows) < 40 else "lines",
                "name": label,
                "x": [x_of(r[1], window) for r in rows],
                "y": [r[2] for r in rows],
                "line": {"color": color, "shape": "hv"},
                "hovertemplate": f"{hover}<extra>{label}</extra>",
            }
            click = f"{hover}<br>Click to list their logins<extra>{label}</extra>"
            previous = Overlay(
                lambda rows, per=per: [(r[1], r[2]) for r in rows if r[0] == per],
                f"{label}, previous period",
                logins,
                add=False,
                color=color,
            )
            series = Series(trace, [r[1] for r in rows], logins, click)
            traces += time_traces(window, per, options, [series], previous)
        chart = layout(**axes(window, "Users who logged in (distinct)"), meta=TALLER)
        return time_figure(traces, chart, window, options.bands)
