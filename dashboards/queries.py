"""The queries behind the stats, each readable from the pre-aggregates or
straight from the raw `events` table (source="raw"), with equal answers.

dashboards reads audit's tables only; it never writes them. Pre-aggregates:
- event_counts_hourly (audit.HourlyCount): events per UTC hour, type and
  outcome. Whole hours of a window come from it, the partial hours at both
  edges from `events`; buckets regroup with date_trunc(unit, hour, zone).
  In zones such as Asia/Kolkata, the few hours a bucket edge cuts in two
  are also partly read from `events` (HourPlan).
- entities / entity_intervals (audit.aggregates): every entity's states over
  time; entity_changes_hourly (triggers on entity_intervals, audit migration
  0008): how many entered and left each state per UTC hour, from which
  counts at a moment and growth per bucket are sums over a few thousand rows.
- event_counts_daily_caller: a user's own events per UTC day, for the
  heatmap of their page (entity_daily).
"""

from bisect import bisect_left
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache

from django.db.models import Count, Q, QuerySet

from audit import aggregates, catalog
from audit.models import (
    DailyCallerCount,
    DailyProjectCount,
    Entity,
    EntityInterval,
    Event,
    HourlyCount,
    HourlyLoginUser,
    OrgMembership,
)
from sphere_stats.db import read_connection
from sphere_stats.windows import Window, utc_ceil, utc_floor

HOURLY = HourlyCount._meta.db_table
INTERVALS = EntityInterval._meta.db_table
ENTITIES = Entity._meta.db_table
# Written by triggers on entity_intervals (audit migration 0008); no model.
CHANGES = "entity_changes_hourly"
SOURCES = ("auto", "raw")
HOUR = timedelta(hours=1)


def _fetch(sql: str, params: list) -> list[tuple]:
    with read_connection().cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()


def first_event_time() -> datetime | None:
    """The oldest event's timestamp (idx_events_timestamp), for period=all."""
    row = _fetch("SELECT min(timestamp) FROM events", [])
    return row[0][0]


# Shorter than the shortest bucket of each unit in any zone (a local day can
# last 23 hours, a local hour 30 minutes on Lord Howe Island), so a sample at
# every stride hits every bucket.
STRIDES = {"hour": "30 minutes", "day": "12 hours", "week": "1 day", "month": "1 day"}


def buckets(window: Window) -> list[datetime]:
    """Every bucket start of the window, in order (UTC datetimes), cut by
    PostgreSQL exactly like the stats' date_trunc (DST included)."""
    rows = _fetch(
        "SELECT DISTINCT date_trunc(%s, g, %s) FROM generate_series("
        "%s::timestamptz, %s::timestamptz - interval '1 microsecond', %s::interval) AS g "
        "UNION SELECT date_trunc(%s, %s::timestamptz - interval '1 microsecond', %s) ORDER BY 1",
        [
            window.unit,
            window.tz_name,
            window.start,
            window.end,
            STRIDES[window.unit],
            window.unit,
            window.end,
            window.tz_name,
        ],
    )
    return [r[0] for r in rows]


# --- event counts (event_counts_hourly + edges) -------------------------------------


# A UTC hour with a bucket edge inside it, as the pre-aggregate sees it.
# `first` is the bucket of the hour's start; `edge` where the next bucket
# begins, or None when the zone's offset changes within the hour (the whole
# hour is then read from `events`).
Straddle = tuple[datetime, datetime, datetime | None]


@lru_cache(maxsize=512)
def _straddling_hours(unit: str, tz_name: str, year: int) -> tuple[Straddle, ...]:
    """The UTC hours of one UTC year that fall into two buckets of `unit` in
    the zone, cut by PostgreSQL's own date_trunc.

    Within an hour of constant offset, local time and so the bucket only
    grow: equal buckets at both ends mean one bucket, and a bucket that
    begins inside the hour is its only edge. An hour whose offset changes
    (DST, or a zone changing its rules) is kept whole, with no edge. Zone
    rules do not change while the server runs, so a year is cut once per
    process (about 10 ms) and every window inside it reuses that.
    """
    if tz_name == "UTC":
        return ()
    lo, hi = datetime(year, 1, 1, tzinfo=UTC), datetime(year + 1, 1, 1, tzinfo=UTC)
    rows = _fetch(
        "SELECT h, first, CASE WHEN o1 = o2 AND last > h AND last < h + interval '1 hour'"
        "  AND date_trunc(%s, last - interval '1 microsecond', %s) = first"
        "  AND date_trunc(%s, last, %s) = last THEN last END FROM ("
        "  SELECT h, date_trunc(%s, h, %s) AS first, date_trunc(%s, t, %s) AS last,"
        "   (h AT TIME ZONE %s) - (h AT TIME ZONE 'UTC') AS o1,"
        "   (t AT TIME ZONE %s) - (t AT TIME ZONE 'UTC') AS o2"
        "  FROM generate_series(%s::timestamptz, %s::timestamptz, interval '1 hour') AS h,"
        "   LATERAL (SELECT h + interval '1 hour' - interval '1 microsecond') AS e (t)"
        ") AS s WHERE first <> last OR o1 <> o2 ORDER BY 1",
        [unit, tz_name] * 4 + [tz_name, tz_name, lo, hi - HOUR],
    )
    return tuple(rows)


def _straddles(unit: str, tz_name: str, start: datetime, end: datetime) -> list[Straddle]:
    """The straddling hours in [start, end) (both on the hour)."""
    found = []
    for year in range(start.year, (end - HOUR).year + 1):
        hours = _straddling_hours(unit, tz_name, year)
        first = bisect_left(hours, (start,))
        found.extend(h for h in hours[first:] if h[0] < end)
    return found


# A raw range of an HourPlan: [lo, hi), the bucket of all its rows when one
# is known (else each row's own), and the bucket its hour's row went to.
RawRange = tuple[datetime, datetime, datetime | None, datetime | None]


@dataclass(frozen=True)
class HourPlan:
    """How an hourly pre-aggregate answers [start, end) bucketed by a zone.

    Each hour in [hours_from, hours_to) but those in `whole_raw` comes from
    the pre-aggregate, in its bucket or, for a `split` hour, in `keep`.
    `ranges` (lo, hi, label, keep) are read from the raw table: each row
    counts in `label` (or its own bucket) and, where keep is set, against
    `keep`, where its hour's row already counted it. Whole-hour zones have
    no split or whole_raw hours: only the partial hours at both edges are
    raw. In Asia/Kolkata a day has one split hour, 18:00 UTC, of which the
    half before local midnight (18:30) is read raw; in Asia/Kathmandu a
    quarter.
    """

    hours_from: datetime | None
    hours_to: datetime | None
    whole_raw: list[datetime]
    split: list[datetime]
    keep: list[datetime]
    ranges: list[RawRange]

    @classmethod
    def of(cls, start: datetime, end: datetime, unit: str | None, tz_name: str) -> "HourPlan":
        """The plan for [start, end); unit None when the rows are not bucketed."""
        full_start, full_end = utc_ceil(start, "hour"), utc_floor(end, "hour")
        if full_start >= full_end:
            return cls(None, None, [], [], [], [(start, end, None, None)])
        ranges: list[RawRange] = [(start, full_start, None, None)] if start < full_start else []
        whole_raw, split, keep = [], [], []
        for hour, first, edge in _straddles(unit, tz_name, full_start, full_end) if unit else []:
            if edge is None:
                whole_raw.append(hour)
                ranges.append((hour, hour + HOUR, None, None))
                continue
            # The hour's row counts for the bucket of its longer side; the
            # events of the shorter side move from there to their own.
            split.append(hour)
            if edge - hour <= HOUR / 2:
                keep.append(edge)
                ranges.append((hour, edge, first, edge))
            else:
                keep.append(first)
                ranges.append((edge, hour + HOUR, edge, first))
        if full_end < end:
            ranges.append((full_end, end, None, None))
        merged: list[RawRange] = []
        for lo, hi, label, kept in ranges:
            whole = label is None and kept is None
            if whole and merged and merged[-1][1] == lo and merged[-1][2:] == (None, None):
                merged[-1] = (merged[-1][0], hi, None, None)
            else:
                merged.append((lo, hi, label, kept))
        return cls(full_start, full_end, whole_raw, split, keep, merged)

    def range_params(self) -> list[list]:
        return [list(column) for column in zip(*self.ranges, strict=True)] or [[], [], [], []]

    def hourly(self, table: str, column: str, bucket_of: str, params: list) -> tuple[str, list]:
        """A FROM item `c`: the rows of the pre-aggregate `table` in the
        plan's hours (`column`: their UTC hour), each with `b`, the bucket it
        counts for; bucket_of is the bucket SQL with `{col}` and its params.
        With split hours, each hour is cut once and joined to its rows."""
        if not self.split and not self.whole_raw:
            return (
                f"(SELECT {bucket_of.format(col=f't.{column}')} AS b, t.* FROM {table} AS t"
                f" WHERE t.{column} >= %s AND t.{column} < %s) AS c",
                [*params, self.hours_from, self.hours_to],
            )
        return (
            f"(SELECT hours.b, t.* FROM {table} AS t JOIN ("
            f"  SELECT h.hour, coalesce(k.keep, {bucket_of.format(col='h.hour')}) AS b"
            "  FROM generate_series(%s::timestamptz, %s::timestamptz - interval '1 hour',"
            "   interval '1 hour') AS h (hour)"
            "  LEFT JOIN unnest(%s::timestamptz[], %s::timestamptz[]) AS k (hour, keep)"
            "   ON k.hour = h.hour"
            "  WHERE h.hour <> ALL(%s::timestamptz[])"
            f" ) AS hours ON hours.hour = t.{column}"
            f" WHERE t.{column} >= %s AND t.{column} < %s) AS c",
            [
                *params,
                self.hours_from,
                self.hours_to,
                self.split,
                self.keep,
                self.whole_raw,
                self.hours_from,
                self.hours_to,
            ],
        )


def seen_event_types(types: Iterable[str]) -> set[str]:
    """Which of `types` some stored event has: one probe of
    idx_events_event_type per type, however many events it has."""
    rows = _fetch(
        "SELECT t FROM unnest(%s::text[]) AS t"
        " WHERE EXISTS (SELECT 1 FROM events WHERE event_type = t)",
        [list(types)],
    )
    return {r[0] for r in rows}


def event_counts(
    window: Window,
    *,
    bucketed: bool = True,
    types: Iterable[str] | None = None,
    success: bool | None = None,
    source: str = "auto",
) -> list[tuple]:
    """(bucket, event_type, success, n) for events in the window; bucket is
    None when not bucketed. Whole hours come from event_counts_hourly, the
    rest from `events` (HourPlan), in any zone."""
    types = list(types) if types else None
    bucket_of = "date_trunc(%s, {col}, %s)" if bucketed else "NULL::timestamptz"
    bucket_params = [window.unit, window.tz_name] if bucketed else []
    extra, extra_params = "", []
    if types:
        extra += " AND event_type = ANY(%s)"
        extra_params.append(types)
    if success is not None:
        extra += " AND success = %s"
        extra_params.append(success)

    plan = HourPlan.of(window.start, window.end, window.unit if bucketed else None, window.tz_name)
    if source == "raw" or plan.hours_from is None:
        return _fetch(
            f"SELECT {bucket_of.format(col='timestamp')} AS b, event_type, success, count(*) "
            f"FROM events WHERE timestamp >= %s AND timestamp < %s{extra} GROUP BY 1, 2, 3",
            [*bucket_params, window.start, window.end, *extra_params],
        )
    # Each raw range is one index scan (OFFSET 0 keeps the planner from
    # flattening it into one scan of every row filtered by the ranges). A
    # split hour's raw rows count twice, +n in their bucket and -n in the
    # bucket their hour's row went to, so a bucket can sum to 0: dropped.
    hourly, hourly_params = plan.hourly(HOURLY, "bucket", bucket_of, bucket_params)
    return _fetch(
        "WITH raw AS ("
        f"  SELECT coalesce(r.label, {bucket_of.format(col='e.timestamp')}) AS b, r.keep,"
        "   e.event_type, e.success, count(*) AS n"
        "  FROM unnest(%s::timestamptz[], %s::timestamptz[], %s::timestamptz[],"
        "   %s::timestamptz[]) AS r (lo, hi, label, keep)"
        "  CROSS JOIN LATERAL (SELECT timestamp, event_type, success FROM events"
        f"   WHERE timestamp >= r.lo AND timestamp < r.hi{extra} OFFSET 0) AS e"
        "  GROUP BY 1, 2, 3, 4)"
        " SELECT b, event_type, success, sum(n)::bigint FROM ("
        f"  SELECT b, event_type, success, n FROM {hourly} WHERE TRUE{extra}"
        "  UNION ALL SELECT b, event_type, success, n FROM raw"
        "  UNION ALL SELECT keep, event_type, success, -n FROM raw WHERE keep IS NOT NULL"
        ") AS s GROUP BY 1, 2, 3 HAVING sum(n) <> 0",
        [
            *bucket_params,
            *plan.range_params(),
            *extra_params,
            *hourly_params,
            *extra_params,
        ],
    )


# --- entities (entity_intervals, or a replay of the raw lifecycle events) -----------


def _raw_intervals(kinds: Iterable[str]) -> list[tuple[str, str, datetime, datetime | None]]:
    """(kind, state, valid_from, valid_to) folded from `events`, without
    the pre-aggregate: the raw-table answer to compare against."""
    return aggregates.computed_intervals(kinds)


def _alive(start: datetime, end: datetime | None, moment: datetime) -> bool:
    # State after every event before `moment` (the window's half-open end).
    return start < moment and (end is None or end >= moment)


def entity_counts_at(
    moments: list[datetime], kinds: Iterable[str], source: str = "auto"
) -> list[dict[tuple[str, str], int]]:
    """For each moment, {(kind, state): entities in that state just before it}."""
    kinds = list(kinds)
    if source == "raw":
        intervals = _raw_intervals(kinds)
        answers = []
        for moment in moments:
            counts: dict[tuple[str, str], int] = defaultdict(int)
            for kind, state, start, end in intervals:
                if _alive(start, end, moment):
                    counts[kind, state] += 1
            answers.append(dict(counts))
        return answers
    # In a state at t = entered it before t - left it before t: the deltas
    # of every UTC hour before t's (entity_changes_hourly, a few thousand
    # rows a year, each read once: width_bucket puts it between the moments'
    # hours, and the sums accumulate), plus the intervals beginning or ending
    # in t's partial hour (idx_intervals_from, idx_intervals_to).
    if not moments:
        return []
    floors = sorted({utc_floor(m, "hour") for m in moments})
    before: list[dict[tuple[str, str], int]] = [defaultdict(int) for _ in floors]
    edges: dict[tuple[int, str, str], int] = defaultdict(int)
    for part, i, kind, state, n in _fetch(
        f"SELECT 'hours', width_bucket(hour, %s::timestamptz[]), kind, state, sum(delta)::bigint"
        f" FROM {CHANGES} WHERE kind = ANY(%s) AND hour < %s GROUP BY 2, 3, 4"
        " UNION ALL SELECT 'edge', m.i, v.kind, v.state, sum(v.d)::bigint"
        " FROM unnest(%s::timestamptz[], %s::timestamptz[]) WITH ORDINALITY AS m (t, floor, i)"
        " CROSS JOIN LATERAL ("
        f"  SELECT kind, state, 1 AS d FROM {INTERVALS}"
        "   WHERE kind = ANY(%s) AND valid_from >= m.floor AND valid_from < m.t"
        f"  UNION ALL SELECT kind, state, -1 FROM {INTERVALS}"
        "   WHERE kind = ANY(%s) AND valid_to >= m.floor AND valid_to < m.t) AS v"
        " GROUP BY 2, 3, 4",
        [floors, kinds, floors[-1], moments, [utc_floor(m, "hour") for m in moments], kinds, kinds],
    ):
        if part == "hours":
            # Bucket i holds the hours in [floors[i-1], floors[i]).
            before[i][kind, state] += n
        else:
            edges[i - 1, kind, state] += n
    totals, running = {}, defaultdict(int)
    for floor, deltas in zip(floors, before, strict=True):
        for key, n in deltas.items():
            running[key] += n
        totals[floor] = dict(running)
    answers = []
    for i, moment in enumerate(moments):
        counts = defaultdict(int, totals[utc_floor(moment, "hour")])
        for (j, kind, state), n in edges.items():
            if j == i:
                counts[kind, state] += n
        answers.append({key: n for key, n in counts.items() if n})
    return answers


def entity_growth(window: Window, kinds: Iterable[str], source: str = "auto") -> dict:
    """{kind: [entities existing at the end of each bucket]} and the buckets."""
    kinds = list(kinds)
    starts = buckets(window)
    (baseline,) = entity_counts_at([window.start], kinds, source)
    deltas: dict[tuple[str, datetime], int] = defaultdict(int)
    if source == "raw":
        moments = []
        for kind, _state, start, end in _raw_intervals(kinds):
            for moment, sign in ((start, 1), (end, -1)):
                if moment is not None and window.start <= moment < window.end:
                    moments.append((kind, moment, sign))
        # Cut by PostgreSQL too, so both answers share every bucket edge.
        cut = _fetch(
            "SELECT date_trunc(%s, m, %s) FROM unnest(%s::timestamptz[]) WITH ORDINALITY "
            "AS u(m, i) ORDER BY i",
            [window.unit, window.tz_name, [m for _, m, _ in moments]],
        )
        for (kind, _, sign), (bucket,) in zip(moments, cut, strict=True):
            deltas[kind, bucket] += sign
    else:
        # The hourly deltas regrouped into buckets, as event_counts does
        # (HourPlan); the raw ranges read the intervals' ends instead.
        plan = HourPlan.of(window.start, window.end, window.unit, window.tz_name)
        bucket = "date_trunc(%s, {col}, %s)"
        unit_tz = [window.unit, window.tz_name]
        hourly, hourly_params = plan.hourly(CHANGES, "hour", bucket, unit_tz)
        for kind, b, delta in _fetch(
            "WITH r AS (SELECT * FROM unnest(%s::timestamptz[], %s::timestamptz[],"
            "  %s::timestamptz[], %s::timestamptz[]) AS r (lo, hi, label, keep)),"
            " ends AS ("
            f"  SELECT coalesce(r.label, {bucket.format(col='v.at')}) AS b, r.keep, v.kind,"
            "   sum(v.d) AS d FROM r CROSS JOIN LATERAL ("
            f"   SELECT kind, valid_from AS at, 1 AS d FROM {INTERVALS}"
            "   WHERE kind = ANY(%s) AND valid_from >= r.lo AND valid_from < r.hi"
            f"   UNION ALL SELECT kind, valid_to, -1 FROM {INTERVALS}"
            "   WHERE kind = ANY(%s) AND valid_to >= r.lo AND valid_to < r.hi OFFSET 0) AS v"
            "  GROUP BY 1, 2, 3)"
            " SELECT kind, b, sum(d)::bigint FROM ("
            f"  SELECT kind, b, delta AS d FROM {hourly} WHERE kind = ANY(%s)"
            "  UNION ALL SELECT kind, b, d FROM ends"
            "  UNION ALL SELECT kind, keep, -d FROM ends WHERE keep IS NOT NULL"
            ") AS s GROUP BY 1, 2",
            [*plan.range_params(), *unit_tz, kinds, kinds, *hourly_params, kinds],
        ):
            deltas[kind, b] += delta
    series = {}
    for kind in kinds:
        total = sum(n for (k, _), n in baseline.items() if k == kind)
        values = []
        for start in starts:
            total += deltas.get((kind, start), 0)
            values.append(total)
        series[kind] = values
    return {"buckets": starts, "series": series}


# --- login users and top-N: pre-aggregates with raw edges, or raw where that is fast -


def _local_days(tz_name: str, start: datetime, end: datetime) -> tuple[str, list]:
    """A FROM item `l` (lo, hi): the local days of the zone from the one
    holding `start` to the last beginning before `end`. Local midnights are
    stepped in local time and read back in the zone, so each day begins
    where date_trunc('day', …, zone) puts it, DST days included."""
    return (
        "(SELECT lo, hi FROM ("
        "  SELECT (t AT TIME ZONE %s) AS lo, ((t + interval '1 day') AT TIME ZONE %s) AS hi"
        "  FROM generate_series(date_trunc('day', %s::timestamptz, %s) AT TIME ZONE %s,"
        "   %s::timestamptz AT TIME ZONE %s, interval '1 day') AS t) AS d"
        " WHERE lo < %s) AS l",
        [tz_name, tz_name, start, tz_name, tz_name, end, tz_name, end],
    )


def distinct_login_users(window: Window, source: str = "auto") -> int:
    """Distinct users with a successful login in the window: the whole UTC
    hours from login_users_hourly, the partial ones at both edges from
    `events` (idx_events_logins_ts); source="raw" reads every login."""
    full_start, full_end = utc_ceil(window.start, "hour"), utc_floor(window.end, "hour")
    if source == "raw" or full_start >= full_end:
        full_start = full_end = window.end
    # UNION, not count(DISTINCT …): PostgreSQL hashes the few hundred users
    # instead of sorting every row.
    return _fetch(
        f"SELECT count(*) FROM (SELECT username FROM {HourlyLoginUser._meta.db_table}"
        "  WHERE hour >= %s AND hour < %s"
        " UNION SELECT subject FROM events WHERE event_type = 'user_login' AND success"
        "  AND ((timestamp >= %s AND timestamp < %s) OR (timestamp >= %s AND timestamp < %s))"
        ") AS users",
        [full_start, full_end, window.start, full_start, full_end, window.end],
    )[0][0]


def active_users(window: Window, source: str = "auto") -> list[tuple[str, datetime, int]]:
    """(unit, bucket, distinct users logged in) for days, weeks and months of
    the display zone. The distinct (local day, user) pairs are found once;
    weeks and months are regrouped from them (a local week or month is
    whole local days).

    The pairs come from login_users_hourly for the whole hours of each local
    day (one range of its primary key per day, so no row needs its local day
    computed), and from `events` (idx_events_logins_ts) for the partial
    hours at the window's edges and the hours a local midnight cuts (Asia/
    Kolkata: both halves, each labelled with its day) or an offset change
    spans; source="raw" reads every login from `events`.
    """
    full_start, full_end = utc_ceil(window.start, "hour"), utc_floor(window.end, "hour")
    # Raw ranges: (lo, hi, the local day of all its rows, or None: each row's own).
    ranges: list[tuple[datetime, datetime, datetime | None]] = []
    cut: list[datetime] = []
    if source == "raw" or full_start >= full_end:
        ranges.append((window.start, window.end, None))
        full_start = full_end = window.end
    else:
        ranges.append((window.start, full_start, None))
        # An hour a local midnight cuts lies outside every day's whole hours
        # by itself; one in which the offset changes is kept out by name.
        for hour, first, edge in _straddles("day", window.tz_name, full_start, full_end):
            if edge is None:
                cut.append(hour)
                ranges.append((hour, hour + HOUR, None))
            else:
                ranges += [(hour, edge, first), (edge, hour + HOUR, edge)]
        ranges.append((full_end, window.end, None))
    ranges = [r for r in ranges if r[0] < r[1]]
    lows, highs, labels = [list(c) for c in zip(*ranges, strict=True)] if ranges else ([], [], [])
    tz = window.tz_name
    local_days, local_params = _local_days(tz, window.start, window.end)
    rows = _fetch(
        # The local days over the window, each with its whole UTC hours and
        # its week and month, computed once per day.
        "WITH days AS ("
        "  SELECT lo, date_trunc('week', lo, %s) AS week, date_trunc('month', lo, %s) AS month,"
        "   greatest(date_trunc('hour', lo + interval '1 hour' - interval '1 microsecond',"
        "    'UTC'), %s::timestamptz) AS h_lo,"
        f"   least(date_trunc('hour', hi, 'UTC'), %s::timestamptz) AS h_hi FROM {local_days}"
        "), pairs AS MATERIALIZED ("
        "  SELECT d.lo AS day, u.username FROM days AS d CROSS JOIN LATERAL ("
        f"   SELECT DISTINCT username FROM {HourlyLoginUser._meta.db_table}"
        "   WHERE hour >= d.h_lo AND hour < d.h_hi AND hour <> ALL(%s::timestamptz[])) AS u"
        # A labelled range's users are found apart (a half hour's logins,
        # a few users); an unlabelled one's rows each find their day.
        "  UNION SELECT r.label, e.subject"
        "  FROM unnest(%s::timestamptz[], %s::timestamptz[], %s::timestamptz[])"
        "   AS r (lo, hi, label)"
        "  CROSS JOIN LATERAL (SELECT DISTINCT subject FROM events"
        "   WHERE event_type = 'user_login' AND success"
        "   AND timestamp >= r.lo AND timestamp < r.hi) AS e WHERE r.label IS NOT NULL"
        "  UNION SELECT date_trunc('day', e.timestamp, %s), e.subject"
        "  FROM unnest(%s::timestamptz[], %s::timestamptz[], %s::timestamptz[])"
        "   AS r (lo, hi, label)"
        "  CROSS JOIN LATERAL (SELECT timestamp, subject FROM events"
        "   WHERE event_type = 'user_login' AND success"
        "   AND timestamp >= r.lo AND timestamp < r.hi OFFSET 0) AS e WHERE r.label IS NULL"
        "), dated AS ("
        "  SELECT p.day, d.week, d.month, p.username FROM pairs AS p JOIN days AS d ON d.lo = p.day"
        # DISTINCT in a subquery, not count(DISTINCT …): hashed, not sorted.
        ") SELECT 'day', day, count(*) FROM dated GROUP BY 2"
        " UNION ALL SELECT 'week', week, count(*)"
        "  FROM (SELECT DISTINCT week, username FROM dated) AS w GROUP BY 2"
        " UNION ALL SELECT 'month', month, count(*)"
        "  FROM (SELECT DISTINCT month, username FROM dated) AS m GROUP BY 2",
        [
            tz,
            tz,
            full_start,
            full_end,
            *local_params,
            cut,
            lows,
            highs,
            labels,
            tz,
            lows,
            highs,
            labels,
        ],
    )
    order = {"day": 0, "week": 1, "month": 2}
    return sorted(rows, key=lambda r: (order[r[0]], r[1]))


def _whole_utc_days(window: Window) -> tuple[datetime, datetime] | None:
    """[first, end) of the UTC days wholly inside the window, or None if no
    day is: what the daily pre-aggregates can answer for it."""

    first, end = utc_ceil(window.start, "day"), utc_floor(window.end, "day")
    return (first, end) if first < end else None


def _with_edges(window: Window, daily_sql: str, edge_sql: str, days: tuple) -> tuple[str, list]:
    """The rows of the whole days (daily_sql: `day >= %s AND day < %s`)
    UNION ALL those of the partial days at both edges, counted from `events`
    (edge_sql: its timestamp condition is `{edges}`)."""
    first, end = days
    edges = "((timestamp >= %s AND timestamp < %s) OR (timestamp >= %s AND timestamp < %s))"
    return (
        f"{daily_sql} UNION ALL {edge_sql.format(edges=edges)}",
        [first, end, window.start, first, end, window.end],
    )


CALLER_COUNTS = (
    "count(*), count(*) FILTER (WHERE event_type = 'user_login'), "
    "count(*) FILTER (WHERE NOT success)"
)


def top_callers(window: Window, n: int, source: str = "auto") -> list[tuple]:
    """Users by events they caused in the window: (user, events, logins, failures).

    Whole UTC days come from event_counts_daily_caller, the partial days at
    both edges from `events`; source="raw" (or a window without a whole
    UTC day) counts everything from `events`.
    """

    users = f"caller IN (SELECT name FROM {ENTITIES} WHERE kind = 'user')"
    days = None if source == "raw" else _whole_utc_days(window)
    if days is None:
        return _fetch(
            f"SELECT caller, {CALLER_COUNTS} FROM events "
            f"WHERE timestamp >= %s AND timestamp < %s AND {users} "
            "GROUP BY caller ORDER BY 2 DESC, 1 LIMIT %s",
            [window.start, window.end, n],
        )
    rows, params = _with_edges(
        window,
        f"SELECT caller, events, logins, failures FROM {DailyCallerCount._meta.db_table} "
        "WHERE day >= %s AND day < %s",
        f"SELECT caller, {CALLER_COUNTS} FROM events WHERE {{edges}} GROUP BY caller",
        days,
    )
    ranking = (
        "SELECT caller, sum(events)::bigint, sum(logins)::bigint, sum(failures)::bigint"
        f" FROM ({rows}) AS s (caller, events, logins, failures) GROUP BY caller"
    )
    # Only the head of the ranking is checked against the users' entities:
    # the top n users are the first n users of any head that holds n of
    # them (the order is total). Checking every caller (11k a month) cost
    # more than summing them; the whole ranking is filtered only when the
    # head holds too few users and is not the whole ranking.
    head = 2 * n + 50
    ranked = _fetch(f"{ranking} ORDER BY 2 DESC, 1 LIMIT %s", [*params, head])
    known = {
        name
        for (name,) in _fetch(
            f"SELECT name FROM {ENTITIES} WHERE kind = 'user' AND scope = '' AND name = ANY(%s)",
            [[row[0] for row in ranked]],
        )
    }
    found = [row for row in ranked if row[0] in known][:n]
    if len(found) == n or len(ranked) < head:
        return found
    return _fetch(
        f"SELECT * FROM ({ranking}) AS ranked (caller, events, logins, failures) "
        f"WHERE {users} ORDER BY 2 DESC, 1 LIMIT %s",
        [*params, n],
    )


PROJECT_MEASURES = {
    "events": "count(*)",
    "experiments": "count(*) FILTER (WHERE event_type = 'experiment_created' AND success)",
    "realizations": "count(*) FILTER (WHERE event_type = 'realization_allocated' AND success)",
    "materializations": (
        "count(*) FILTER (WHERE event_type = 'materialization_allocated' AND success)"
    ),
}


def top_projects(window: Window, n: int, by: str, source: str = "auto") -> list[tuple]:
    """Projects by events about them or naming them in payload.project, experiments created,
    realizations or materializations in the window: (project, events,
    experiments, realizations, materializations), every column over the
    same events whatever `by` ranks them.

    Whole UTC days come from event_counts_daily_project, the partial days at
    both edges from `events` (idx_events_project_ts); source="raw" (or a
    window without a whole UTC day) counts everything from `events`.
    """

    order = list(PROJECT_MEASURES).index(by) + 2
    # A project's own events (created, members) count as well as those
    # naming it in payload.project (experiments, realizations).
    project_events = "(payload->>'project' IS NOT NULL OR subject_type = 'project')"
    counts = ", ".join(PROJECT_MEASURES.values())
    days = None if source == "raw" else _whole_utc_days(window)
    if days is None:
        return _fetch(
            f"SELECT coalesce(payload->>'project', subject) AS project, {counts} FROM events "
            f"WHERE timestamp >= %s AND timestamp < %s AND {project_events} "
            f"GROUP BY 1 HAVING {PROJECT_MEASURES[by]} > 0 ORDER BY {order} DESC, 1 LIMIT %s",
            [window.start, window.end, n],
        )
    columns = ", ".join(PROJECT_MEASURES)
    rows, params = _with_edges(
        window,
        f"SELECT project, {columns} FROM {DailyProjectCount._meta.db_table} "
        "WHERE day >= %s AND day < %s",
        f"SELECT coalesce(payload->>'project', subject), {counts} FROM events "
        f"WHERE {{edges}} AND {project_events} GROUP BY 1",
        days,
    )
    sums = ", ".join(f"sum({c})::bigint" for c in PROJECT_MEASURES)
    return _fetch(
        f"SELECT project, {sums} FROM ({rows}) AS s (project, {columns}) "
        f"GROUP BY 1 HAVING sum({by}) > 0 ORDER BY {order} DESC, 1 LIMIT %s",
        [*params, n],
    )


MEMBER_TYPES = catalog.MEMBER_TYPES
# SQL lists of the organization membership types and of the removals among them.
_ORG_MEMBER_SQL = aggregates.ORG_MEMBER_TYPES
_REMOVAL_SQL = aggregates.MEMBERSHIPS.removals


def members(subject_type: str, name: str, since: datetime | None) -> list[tuple]:
    """Current members of one org or project from its membership events since
    its latest creation: (member, kind, role, state, since), where since is
    the first add after the member's latest removal (a re-added member is a
    member since the re-add, not since the first time)."""
    # `removals_after` counts the removals at or after each event, in event
    # order (timestamp, event_uuid): an add (or update, or inventory entry)
    # with none after it belongs to the current membership.
    removals = list(catalog.MEMBER_REMOVALS)
    rows = _fetch(
        "SELECT target, kind, role, state, joined FROM ("
        "  SELECT DISTINCT ON (target, kind) target, kind, role, state, event_type,"
        "   min(timestamp) FILTER (WHERE event_type <> ALL(%s) AND removals_after = 0)"
        "    OVER (PARTITION BY target, kind) AS joined"
        "  FROM ("
        "   SELECT target, payload->>'kind' AS kind, payload->>'role' AS role,"
        "    payload->>'state' AS state, event_type, timestamp, event_uuid,"
        "    count(*) FILTER (WHERE event_type = ANY(%s)) OVER (PARTITION BY target,"
        "     payload->>'kind' ORDER BY timestamp DESC, event_uuid DESC) AS removals_after"
        "   FROM events WHERE subject_type = %s AND subject = %s AND success"
        "    AND event_type = ANY(%s) AND timestamp >= %s AND target IS NOT NULL"
        "  ) AS history"
        "  ORDER BY target, kind, timestamp DESC, event_uuid DESC"
        ") AS latest WHERE event_type <> ALL(%s) ORDER BY kind DESC, role, target",
        [
            removals,
            removals,
            subject_type,
            name,
            list(MEMBER_TYPES[subject_type]),
            since or datetime(1, 1, 1, tzinfo=UTC),
            removals,
        ],
    )
    return rows


def top_orgs_by_members(n: int, at: datetime, source: str = "auto") -> list[tuple]:
    """Organizations existing at `at` by current user and project members
    (membership events since each org's latest creation): (organization,
    user members, project members).

    A membership counts when its latest successful event before `at` (and
    since the org's creation) did not remove the member. org_memberships
    holds each membership's latest event: it answers for every org none of
    whose memberships changed at or after `at` (every org, for a window
    that ends now), and the others replay their membership events
    (idx_events_subject_ts), as source="raw" does for all of them.
    """

    if source == "raw":
        return _fetch(
            "SELECT org, count(*) FILTER (WHERE kind = 'usermember'),"
            " count(*) FILTER (WHERE kind = 'projectmember') FROM ("
            "  SELECT DISTINCT ON (e.subject, e.target, e.payload->>'kind') e.subject AS org,"
            "   e.payload->>'kind' AS kind, e.event_type"
            f"  FROM events e JOIN {ENTITIES} o ON o.kind = 'organization' AND o.scope = ''"
            "   AND o.name = e.subject AND o.since < %s AND (o.until IS NULL OR o.until >= %s)"
            f"  WHERE e.event_type IN ({_ORG_MEMBER_SQL}) AND e.success AND e.timestamp >= o.since"
            "   AND e.timestamp < %s"
            "  ORDER BY e.subject, e.target, e.payload->>'kind', e.timestamp DESC,"
            "   e.event_uuid DESC"
            f") AS latest WHERE event_type NOT IN ({_REMOVAL_SQL})"
            " GROUP BY org ORDER BY 2 DESC, 3 DESC, 1 LIMIT %s",
            [at, at, at, n],
        )
    return _fetch(
        "WITH orgs AS MATERIALIZED ("
        f"  SELECT name, since FROM {ENTITIES} WHERE kind = 'organization' AND scope = ''"
        "   AND since < %s AND (until IS NULL OR until >= %s)"
        "), latest AS MATERIALIZED ("
        "  SELECT m.org, m.kind, m.removed, m.last_at"
        f"  FROM {OrgMembership._meta.db_table} m JOIN orgs o ON o.name = m.org"
        "  WHERE m.last_at >= o.since"
        "), changed AS (SELECT DISTINCT org FROM latest WHERE last_at >= %s)"
        " SELECT org, count(*) FILTER (WHERE kind = 'usermember'),"
        " count(*) FILTER (WHERE kind = 'projectmember') FROM ("
        "  SELECT org, kind, removed FROM latest WHERE org NOT IN (SELECT org FROM changed)"
        "  UNION ALL"
        "  SELECT * FROM ("
        "   SELECT DISTINCT ON (e.subject, e.target, e.payload->>'kind') e.subject,"
        f"    e.payload->>'kind', e.event_type IN ({_REMOVAL_SQL})"
        "   FROM events e JOIN orgs o ON o.name = e.subject"
        "   WHERE e.subject IN (SELECT org FROM changed) AND e.subject_type = 'organization'"
        f"    AND e.event_type IN ({_ORG_MEMBER_SQL}) AND e.success AND e.timestamp >= o.since"
        "    AND e.timestamp < %s"
        "   ORDER BY e.subject, e.target, e.payload->>'kind', e.timestamp DESC,"
        "    e.event_uuid DESC"
        "  ) AS replayed"
        ") AS members (org, kind, removed) WHERE NOT removed"
        " GROUP BY org ORDER BY 2 DESC, 3 DESC, 1 LIMIT %s",
        [at, at, at, at, n],
    )


def top_facilities(window: Window, n: int) -> list[tuple]:
    """Facilities by allocations in the window: (facility, realizations,
    materializations, failed) (idx_events_type_ts)."""
    return _fetch(
        "SELECT target, count(*) FILTER (WHERE event_type = 'realization_allocated' AND success),"
        " count(*) FILTER (WHERE event_type = 'materialization_allocated' AND success),"
        " count(*) FILTER (WHERE NOT success) FROM events"
        " WHERE event_type IN ('realization_allocated', 'materialization_allocated')"
        " AND timestamp >= %s AND timestamp < %s AND target IS NOT NULL"
        " GROUP BY 1 ORDER BY count(*) FILTER (WHERE success) DESC, 4 DESC, 1 LIMIT %s",
        [window.start, window.end, n],
    )


def top_errors(window: Window, n: int) -> list[tuple]:
    """Most frequent (error_message, event_type) among failures in the window,
    with the last time seen (idx_events_failures_ts)."""
    return _fetch(
        "SELECT coalesce(error_message, ''), event_type, count(*), max(timestamp) FROM events"
        " WHERE NOT success AND timestamp >= %s AND timestamp < %s"
        " GROUP BY 1, 2 ORDER BY 3 DESC, 1, 2 LIMIT %s",
        [window.start, window.end, n],
    )


def failed_logins(window: Window, n: int | None) -> list[tuple]:
    """Failed logins in the window by username, most failures first: (user,
    failures, last attempt, last error, users in all) (idx_events_type_ts).
    `n=None` returns every user."""
    # The window count runs after GROUP BY and before LIMIT: every user is
    # grouped anyway to rank them, so knowing how many there are is free.
    return _fetch(
        "SELECT subject, count(*), max(timestamp),"
        " (array_agg(coalesce(error_message, '') ORDER BY timestamp DESC))[1],"
        " count(*) OVER () FROM events"
        " WHERE event_type = 'user_login' AND NOT success AND timestamp >= %s AND timestamp < %s"
        " GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT %s",
        [window.start, window.end, n],
    )


# --- one entity -------------------------------------------------------------------------


def involving(kind: str, name: str, project: str = "") -> QuerySet:
    """Events about one entity (its timeline, heatmap and counts): the one
    definition is audit's EventQuerySet.involving, which the timeline's
    downloads filter by too, so the page and its files hold the same rows."""
    return Event.objects.involving(kind, name, project)


# A user's events (Event.objects.involving("user", name)) as three disjoint
# parts, each with its own index: their own, those about them by others
# (idx_events_user_by_others) and their memberships changed by others
# (idx_events_target). Each takes the user's name once.
USER_OWN = "caller = %s"
USER_BY_OTHERS = "subject_type = 'user' AND subject = %s AND caller <> subject"
USER_MEMBERSHIPS_BY_OTHERS = (
    "target = %s AND subject_type IN ('organization', 'project') AND caller <> target"
)

# No local day lasts longer than this, so every event of a local day that
# begins before `end` is older than end + LONGEST_DAY.
LONGEST_DAY = timedelta(hours=26)


def _user_daily(name: str, tz_name: str, start: datetime, end: datetime) -> list:
    """entity_daily of a user. Their own events (caller, the bulk) per local
    day L are the count of the UTC day d that holds L's middle, from
    event_counts_daily_caller, plus the part of L outside d and minus the
    part of d outside L, each one index-only count (idx_events_caller_ts):
    nothing in UTC, 10 of 24 hours in New York, 11 in Kolkata, where
    counting each row's local day would read all 24. Then, disjoint from
    those, the events about them by others (idx_events_user_by_others) and
    the membership changes of theirs made by others (idx_events_target),
    few enough to bucket row by row."""
    upper = end + LONGEST_DAY
    days, days_params = _local_days(tz_name, start, end)
    return _fetch(
        "WITH local_days AS ("
        f"  SELECT lo, hi, date_trunc('day', lo + (hi - lo) / 2, 'UTC') AS d FROM {days}"
        "), pieces AS ("
        "  SELECT lo AS day, least(lo, d) AS p_lo, greatest(lo, d) AS p_hi,"
        "   CASE WHEN lo < d THEN 1 ELSE -1 END AS sign FROM local_days WHERE lo <> d"
        "  UNION ALL SELECT lo, least(hi, d + interval '24 hours'),"
        "   greatest(hi, d + interval '24 hours'),"
        "   CASE WHEN hi > d + interval '24 hours' THEN 1 ELSE -1 END"
        "  FROM local_days WHERE hi <> d + interval '24 hours'"
        ") SELECT day, sum(n)::bigint FROM ("
        "  SELECT l.lo AS day, c.events AS n FROM local_days AS l"
        "  JOIN event_counts_daily_caller AS c ON c.caller = %s AND c.day = l.d"
        "  UNION ALL SELECT p.day, p.sign * c.n FROM pieces AS p CROSS JOIN LATERAL ("
        f"   SELECT count(*) AS n FROM events WHERE {USER_OWN}"
        "    AND timestamp >= p.p_lo AND timestamp < p.p_hi) AS c"
        "  UNION ALL SELECT date_trunc('day', timestamp, %s), 1 FROM events"
        f"  WHERE {USER_BY_OTHERS} AND timestamp >= %s AND timestamp < %s"
        "  UNION ALL SELECT date_trunc('day', timestamp, %s), 1 FROM events"
        f"  WHERE {USER_MEMBERSHIPS_BY_OTHERS} AND timestamp >= %s AND timestamp < %s"
        ") AS s GROUP BY 1 HAVING day < %s AND sum(n) > 0 ORDER BY 1",
        [
            *days_params,
            name,
            name,
            tz_name,
            name,
            start,
            upper,
            tz_name,
            name,
            start,
            upper,
            end,
        ],
    )


def entity_daily(
    kind: str,
    name: str,
    project: str,
    tz_name: str,
    start: datetime,
    end: datetime,
    source: str = "auto",
) -> list:
    """(local day, events) for one entity, every local day from `start`
    (a local midnight) to the last one beginning before `end`, whole.

    A user's own events (the bulk: a busy user causes millions) come from
    event_counts_daily_caller, corrected by index-only counts of the hours
    where the local day and the UTC day differ (none in UTC); source="raw"
    and other kinds read `events` row by row.
    """
    if kind == "user" and source != "raw":
        return _user_daily(name, tz_name, start, end)
    # No upper bound in SQL: with one, the planner trades the busy user's
    # bitmap scans for a scan of the whole table (measured: 5.2 s for 3.1 s).
    qs = involving(kind, name, project).filter(timestamp__gte=start)
    sql, params = qs.order_by().values("timestamp").query.sql_with_params()
    rows = _fetch(
        f"SELECT date_trunc('day', e.timestamp, %s), count(*) FROM ({sql}) AS e "
        "GROUP BY 1 ORDER BY 1",
        [tz_name, *params],
    )
    return [(day, n) for day, n in rows if day < end]


def entity_type_counts(
    kind: str, name: str, project: str, window: Window, source: str = "auto"
) -> list[tuple]:
    """(event_type, succeeded, failed) for one entity in the window.

    A user's events are three disjoint parts, each read through its own
    index: their own (idx_events_caller_ts, which carries the type and the
    outcome, so a busy user's month is an index-only scan), those about
    them by others and their memberships changed by others; source="raw"
    and other kinds filter `events` by Event.objects.involving."""
    if kind == "user" and source != "raw":
        counts = (
            "SELECT event_type, count(*) FILTER (WHERE success) AS ok,"
            " count(*) FILTER (WHERE NOT success) AS bad FROM events"
        )
        parts = " UNION ALL ".join(
            f"{counts} WHERE {part} AND timestamp >= %s AND timestamp < %s GROUP BY 1"
            for part in (USER_OWN, USER_BY_OTHERS, USER_MEMBERSHIPS_BY_OTHERS)
        )
        return _fetch(
            f"SELECT event_type, sum(ok)::bigint, sum(bad)::bigint FROM ({parts}) AS s"
            " GROUP BY 1 ORDER BY 2 DESC, 1",
            [name, window.start, window.end] * 3,
        )
    qs = involving(kind, name, project).in_window(window.start, window.end)
    return list(
        qs.values_list("event_type")
        .annotate(
            ok=Count("event_uuid", filter=Q(success=True)),
            failed=Count("event_uuid", filter=Q(success=False)),
        )
        .order_by("-ok", "event_type")
    )


def memberships_of(user: str) -> list[tuple]:
    """The orgs and projects a user is a member of now: (kind, name, role, state)
    from the latest membership event per group since its creation (idx_events_target)."""
    return _fetch(
        "SELECT m.subject_type, m.subject, m.role, m.state FROM ("
        "  SELECT DISTINCT ON (subject_type, subject) subject_type, subject, event_type,"
        "   payload->>'role' AS role, payload->>'state' AS state, timestamp FROM events"
        "  WHERE target = %s AND success AND subject_type IN ('organization', 'project')"
        "   AND payload->>'kind' = 'usermember' AND event_type LIKE '%%member%%'"
        "  ORDER BY subject_type, subject, timestamp DESC, event_uuid DESC"
        f") AS m JOIN {ENTITIES} g ON g.kind = m.subject_type AND g.scope = ''"
        "  AND g.name = m.subject AND g.state <> 'gone' AND m.timestamp >= g.since"
        " WHERE m.event_type NOT LIKE '%%member_deleted' ORDER BY 1, 2",
        [user],
    )
