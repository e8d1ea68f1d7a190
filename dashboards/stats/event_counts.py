"""Events per bucket, type and outcome over a window, in any zone: the
count every chart and total of dashboards/stats/activity.py reads.

Whole UTC days come from event_counts_daily (audit.DailyCount), the other
whole hours from event_counts_hourly (audit.HourlyCount), the two sides of
an hour a bucket edge cuts from the hourly row's quarter counts, and only
the partial hours at the window's edges (and an hour in which the zone's
offset changes) from `events` (audit.buckets.HourPlan plans which is which).
"""

from bisect import bisect_right
from collections.abc import Iterable
from datetime import datetime, timedelta

from psycopg import sql

from audit.buckets import (
    HOUR,
    HourPlan,
    bucket_of,
    bucket_starts,
    counted_before,
    fetch,
    quarter_minute,
)
from audit.models import DailyCount, HourlyCount
from sphere_stats.windows import Window, utc_ceil, utc_floor

RAW_COUNTS_SQL = (
    "SELECT {bucket} AS b, event_type, success, count(*) FROM events"
    " WHERE timestamp >= %(start)s AND timestamp < %(end)s{narrowing} GROUP BY 1, 2, 3"
)
# daily_plan's runs of hours that move from their day's bucket (`label`) to
# another (`bucket`), as rows m (lo, hi, label, bucket).
MOVED_RUNS = (
    "unnest(%(moved_lo)s::timestamptz[], %(moved_hi)s::timestamptz[],"
    " %(moved_from)s::timestamptz[], %(moved_to)s::timestamptz[]) AS m (lo, hi, label, bucket)"
)
# Each raw range is one SELECT with its bounds as parameters (raw_rows): the
# planner sees how short it is and scans idx_events_timestamp, where bounds
# it cannot see made it skip-scan idx_events_caller_ts through every caller
# (0.1 s at 10M events). A split
# hour's raw rows count twice, +n in their bucket and -n in the bucket their
# hour's row went to, so a bucket can sum to 0: dropped. The whole UTC days
# come from event_counts_daily, each in one bucket (`label`), and the hours
# of such a day that belong to another bucket move there from event_counts_hourly
# (`moved`, in runs of hours: +n in theirs, `moved_to`, which daily_plan
# knows, -n in the day's; a join to `split` there was planned as a hash built
# once per moved hour, half of a 90-day Kolkata chart's time). The moved
# hours are summed per bucket, type and outcome before they count twice:
# a 90-day Kolkata chart's 14,900 hourly rows become some 3,000. The plan's
# other hours come from event_counts_hourly, each run one index range scan
# (DailyPlan).
COUNTS_SQL = (
    "WITH raw AS ("
    "  SELECT coalesce(e.label, {bucket}) AS b, e.keep, e.event_type, e.success, count(*) AS n"
    "  FROM ({raw_rows}) AS e GROUP BY 1, 2, 3, 4"
    "  UNION ALL SELECT q.label, q.keep, h.event_type, h.success,"
    f"   {counted_before('h', 'q.minutes')}"
    "   * CASE WHEN q.head THEN 1 ELSE -1 END + CASE WHEN q.head THEN 0 ELSE h.n END"
    "  FROM unnest(%(q_hour)s::timestamptz[], %(q_minutes)s::int[], %(q_head)s::bool[],"
    "   %(q_label)s::timestamptz[], %(q_keep)s::timestamptz[])"
    "   AS q (hour, minutes, head, label, keep)"
    "  CROSS JOIN LATERAL (SELECT * FROM {hourly}"
    "   WHERE bucket = q.hour{narrowing} OFFSET 0) AS h),"
    " split AS (SELECT * FROM unnest(%(split)s::timestamptz[], %(keep)s::timestamptz[])"
    "  AS k (hour, keep)),"
    " hours AS ("
    "  SELECT coalesce(k.keep, {hour_bucket}) AS b, NULL::timestamptz AS label,"
    "   h.event_type, h.success, h.n"
    "  FROM unnest(%(hour_lo)s::timestamptz[], %(hour_hi)s::timestamptz[]) AS r (lo, hi)"
    "  CROSS JOIN LATERAL (SELECT * FROM {hourly}"
    "   WHERE bucket >= r.lo AND bucket < r.hi{narrowing} OFFSET 0) AS h"
    "  LEFT JOIN split AS k ON k.hour = h.bucket"
    "  WHERE h.bucket <> ALL(%(whole_raw)s::timestamptz[])"
    "  UNION ALL SELECT m.bucket, m.label, h.event_type, h.success, sum(h.n)::bigint"
    f"  FROM {MOVED_RUNS}"
    "  CROSS JOIN LATERAL (SELECT * FROM {hourly}"
    "   WHERE bucket >= m.lo AND bucket < m.hi{narrowing} OFFSET 0) AS h"
    "  GROUP BY 1, 2, 3, 4)"
    " SELECT b, event_type, success, sum(n)::bigint FROM ("
    "  SELECT r.label, d.event_type, d.success, d.n"
    "  FROM unnest(%(days)s::timestamptz[], %(day_labels)s::timestamptz[]) AS r (day, label)"
    "  CROSS JOIN LATERAL (SELECT * FROM {daily} WHERE day = r.day{narrowing} OFFSET 0) AS d"
    "  UNION ALL SELECT b, event_type, success, n FROM hours"
    "  UNION ALL SELECT label, event_type, success, -n FROM hours WHERE label IS NOT NULL"
    "  UNION ALL SELECT b, event_type, success, n FROM raw"
    "  UNION ALL SELECT keep, event_type, success, -n FROM raw WHERE keep IS NOT NULL"
    ") AS s (b, event_type, success, n) GROUP BY 1, 2, 3 HAVING sum(n) <> 0"
)

DAY = timedelta(days=1)


def _runs(starts: list[datetime], step: timedelta) -> list[tuple[datetime, datetime]]:
    """Consecutive starts (each `step` after the last) as [lo, hi) runs."""
    runs: list[tuple[datetime, datetime]] = []
    for start in starts:
        if runs and runs[-1][1] == start:
            runs[-1] = (runs[-1][0], start + step)
        else:
            runs.append((start, start + step))
    return runs


def _day_buckets(day: datetime, cuts: list[datetime], keep: dict) -> list | None:
    """The bucket each hour of a UTC day goes to (a split hour: its `keep`,
    which holds only this day's split hours), or None when two buckets begin
    inside the day. Built by list repetition where no hour is split: a
    year's chart asks for 365 days, on every chart of a page."""
    first = bisect_right(cuts, day)
    inside = [c for c in cuts[first : first + 2] if c < day + DAY]
    if len(inside) > 1:
        return None
    before = cuts[first - 1] if first else None
    if not inside:
        if not keep:
            return [before] * 24
        return [keep.get(day + i * HOUR, before) for i in range(24)]
    (cut,) = inside
    if not keep:
        ahead = -((day - cut) // HOUR)  # the hours before the cut, rounded up
        return [before] * ahead + [cut] * (24 - ahead)
    return [keep.get(h, cut if h >= cut else before) for h in (day + i * HOUR for i in range(24))]


# A run of hours [lo, hi) of a day read whole, which go from its bucket
# (the day's label) to another.
Moved = tuple[datetime, datetime, datetime, datetime]


def _whole_days(
    plan: HourPlan, first: datetime, last: datetime, cuts: list[datetime] | None
) -> tuple[dict[str, list], list[Moved]]:
    """daily_plan's days in [first, last): each day's label and the runs of
    its hours that move elsewhere; `cuts` None when nothing is bucketed."""
    keep: dict[datetime, dict] = {}
    for hour, kept in zip(plan.split, plan.keep, strict=True):
        keep.setdefault(utc_floor(hour, "day"), {})[hour] = kept
    raw_days = {utc_floor(h, "day") for h in plan.whole_raw}
    found: dict[str, list] = {"days": [], "day_labels": []}
    moved: list[Moved] = []
    day = first
    while day < last:
        buckets = [None] * 24 if cuts is None else _day_buckets(day, cuts, keep.get(day, {}))
        distinct = set(buckets or ())
        if buckets is not None and day not in raw_days:
            label = max(distinct, key=buckets.count) if len(distinct) > 1 else buckets[0]
            found["days"].append(day)
            found["day_labels"].append(label)
            for i, bucket in enumerate(buckets if len(distinct) > 1 else ()):
                hour = day + i * HOUR
                if bucket == label:
                    continue
                if moved and moved[-1][1] == hour and moved[-1][2:] == (label, bucket):
                    moved[-1] = (moved[-1][0], hour + HOUR, label, bucket)
                else:
                    moved.append((hour, hour + HOUR, label, bucket))
        day += DAY
    return found, moved


# The parameters daily_plan gives.
DAILY_PLAN_KEYS = (
    "days",
    "day_labels",
    "hour_lo",
    "hour_hi",
    "moved_lo",
    "moved_hi",
    "moved_from",
    "moved_to",
)


# daily_plan's answers by what they depend on. The charts of one page share
# a window, and each asked for the same plan: a year in Asia/Kolkata takes
# some 5 ms to plan, five times over on the overview. Windows end at `now`,
# so an entry serves the page that made it; the oldest go first.
_DAILY_PLANS: dict[tuple, dict[str, list]] = {}
DAILY_PLANS_KEPT = 32


def daily_plan(
    plan: HourPlan,
    window: Window,
    bucketed: bool,
    *,
    starts: list[datetime] | None = None,
) -> dict[str, list]:
    """_daily_plan, computed once for each plan, zone, unit and bucketing.
    The lists are shared between callers, which only read them."""
    key = (
        plan.hours_from,
        plan.hours_to,
        tuple(plan.whole_raw),
        tuple(plan.split),
        tuple(plan.keep),
        window.tz_name,
        window.unit,
        bucketed,
    )
    found = _DAILY_PLANS.get(key)
    if found is None:
        found = _daily_plan(plan, window, bucketed, starts=starts)
        while len(_DAILY_PLANS) >= DAILY_PLANS_KEPT:
            _DAILY_PLANS.pop(next(iter(_DAILY_PLANS)), None)
        _DAILY_PLANS[key] = found
    return dict(found)


def _daily_plan(
    plan: HourPlan,
    window: Window,
    bucketed: bool,
    *,
    starts: list[datetime] | None = None,
) -> dict[str, list]:
    """Which of the plan's hours event_counts_daily answers: %(days)s, each
    in the bucket %(day_labels)s where most of its hours go, and the runs
    %(moved_lo)s to %(moved_hi)s of the hours of those days that go
    elsewhere (%(moved_to)s, from %(moved_from)s: their day's bucket); the
    other hours as %(hour_lo)s, %(hour_hi)s runs.

    Buckets are cut by PostgreSQL (bucket_starts). In UTC a daily, weekly or
    monthly chart reads its whole days alone; in New York a day moves 5 of
    its 24 hours, in Asia/Kolkata 6, so a year is some 365 daily rows and
    2,000 hourly ones per type instead of 8,760 hourly ones. `starts`: the
    window's bucket_starts, when the caller has them already."""
    lo, hi = plan.hours_from, plan.hours_to
    if lo is None:  # no whole hour: every row is raw
        return {key: [] for key in DAILY_PLAN_KEYS}
    first, last = utc_ceil(lo, "day"), utc_floor(hi, "day")
    found: dict[str, list] = {"days": [], "day_labels": []}
    moved: list[Moved] = []
    if first < last and (not bucketed or window.unit in ("day", "week", "month")):
        cuts = None
        if bucketed:
            cuts = starts or bucket_starts(window.unit, window.tz_name, lo, hi)
        found, moved = _whole_days(plan, first, last, cuts)
    hours, at = [], lo
    for run_lo, run_hi in _runs(found["days"], DAY):
        if at < run_lo:
            hours.append((at, run_lo))
        at = run_hi
    if at < hi:
        hours.append((at, hi))
    columns = [list(c) for c in zip(*moved, strict=True)] or [[], [], [], []]
    return found | {
        "hour_lo": [r[0] for r in hours],
        "hour_hi": [r[1] for r in hours],
        **dict(zip(("moved_lo", "moved_hi", "moved_from", "moved_to"), columns, strict=True)),
    }


def event_counts(
    window: Window,
    *,
    bucketed: bool = True,
    types: Iterable[str] | None = None,
    success: bool | None = None,
    source: str = "auto",
) -> list[tuple]:
    """(bucket, event_type, success, n) for events in the window; bucket is
    None when not bucketed. Whole UTC days inside one bucket come from
    event_counts_daily, the other whole hours from event_counts_hourly, the
    rest from `events` (HourPlan, daily_plan), in any zone."""
    types = list(types) if types else None
    narrowing = sql.SQL(
        (" AND event_type = ANY(%(types)s)" if types else "")
        + (" AND success = %(success)s" if success is not None else "")
    )
    params = {
        "unit": window.unit,
        "tz": window.tz_name,
        "start": window.start,
        "end": window.end,
        "types": types,
        "success": success,
    }
    plan = HourPlan.of(window.start, window.end, window.unit if bucketed else None, window.tz_name)
    if source == "raw" or plan.hours_from is None:
        bucket = bucket_of(sql.Identifier("timestamp"), bucketed)
        return fetch(sql.SQL(RAW_COUNTS_SQL).format(bucket=bucket, narrowing=narrowing), params)
    cuts = quarter_cuts(plan)
    query = sql.SQL(COUNTS_SQL).format(
        raw_rows=raw_rows(len(cuts["raw_lo"]), narrowing),
        bucket=bucket_of(sql.SQL("e.timestamp"), bucketed),
        day_bucket=bucket_of(sql.SQL("d.day"), bucketed),
        hour_bucket=bucket_of(sql.SQL("h.bucket"), bucketed),
        narrowing=narrowing,
        daily=sql.Identifier(DailyCount._meta.db_table),
        hourly=sql.Identifier(HourlyCount._meta.db_table),
    )
    params |= plan.hour_params()
    params |= cuts | {
        f"raw_{column}_{i}": value
        for column in ("lo", "hi", "label", "keep")
        for i, value in enumerate(cuts[f"raw_{column}"])
    }
    return fetch(query, params | daily_plan(plan, window, bucketed))


def quarter_cuts(plan: HourPlan) -> dict[str, list]:
    """The plan's raw ranges, those that are one side of a split hour cut
    on a quarter hour taken out: those are counted from the hourly row's
    n15, n30 or n45 (%(q_hour)s, %(q_minutes)s, %(q_head)s: the side
    before the cut, %(q_label)s, %(q_keep)s), the rest from `events`
    (%(raw_lo)s ...)."""
    raw, cuts = [], []
    for lo, hi, label, keep in plan.ranges:
        hour = utc_floor(lo, "hour")
        head = lo == hour
        edge = hi if head else lo
        minutes = quarter_minute(hour, edge)
        if keep is not None and minutes is not None and hi - hour <= HOUR:
            cuts.append((hour, minutes, head, label, keep))
        else:
            raw.append((lo, hi, label, keep))
    raw_columns = [list(c) for c in zip(*raw, strict=True)] or [[], [], [], []]
    cut_columns = [list(c) for c in zip(*cuts, strict=True)] or [[], [], [], [], []]
    return dict(
        zip(("raw_lo", "raw_hi", "raw_label", "raw_keep"), raw_columns, strict=True)
    ) | dict(zip(("q_hour", "q_minutes", "q_head", "q_label", "q_keep"), cut_columns, strict=True))


def raw_rows(ranges: int, narrowing: sql.Composable) -> sql.Composable:
    """The rows of `events` in each raw range %(raw_lo_<i>)s to
    %(raw_hi_<i>)s, with its %(raw_label_<i>)s and %(raw_keep_<i>)s."""
    if not ranges:
        return sql.SQL(
            "SELECT NULL::timestamptz AS label, NULL::timestamptz AS keep,"
            " NULL::timestamptz AS timestamp, NULL::text AS event_type, NULL::bool AS success"
            " WHERE FALSE"
        )
    return sql.SQL(" UNION ALL ").join(
        sql.SQL(
            "SELECT %(raw_label_{i})s::timestamptz AS label, %(raw_keep_{i})s::timestamptz AS keep,"
            " timestamp, event_type, success FROM events"
            " WHERE timestamp >= %(raw_lo_{i})s AND timestamp < %(raw_hi_{i})s{narrowing}"
        ).format(i=sql.SQL(str(i)), narrowing=narrowing)
        for i in range(ranges)
    )
