"""Time-bucket planning: which part of a time range the pre-aggregates
answer and which part only the raw `events` table can count.

The pre-aggregates count per UTC hour (event_counts_hourly,
login_users_hourly, entity_changes_hourly), per UTC day (event_counts_daily,
event_counts_daily_caller, event_counts_daily_project, ...) or per UTC month
(event_counts_monthly_caller, event_counts_monthly_project). `cover` cuts a
range into the whole units they hold and the partial edges that `events`
counts; every reader of a pre-aggregate plans with it
(HourlyCount.objects.exact_count, the stats in dashboards/stats/).

Charts bucket by a display zone, where a bucket edge can fall inside a UTC
hour (a local midnight in Asia/Kolkata is 18:30 UTC) or an hour can change
its offset (DST). `straddles` finds those hours with PostgreSQL's own
date_trunc and `HourPlan` reads them from `events` where the hourly rows
cannot say which bucket they belong to.
"""

from bisect import bisect_left
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any

from psycopg import adapters, pq, sql
from psycopg.postgres import types

from sphere_stats.db import read_connection
from sphere_stats.windows import utc_ceil, utc_floor

HOUR = timedelta(hours=1)
# The minutes before which the hourly pre-aggregates count an hour's rows a
# second time (n15, n30, n45): every zone's bucket edges fall on one of them.
QUARTER_MINUTES = (15, 30, 45)


def quarter_minute(hour: datetime, edge: datetime) -> int | None:
    """The minute of `hour` at which `edge` falls, when the quarter counts
    answer both sides of it; else None."""
    minutes, rest = divmod(int((edge - hour).total_seconds()), 60)
    return minutes if not rest and minutes in QUARTER_MINUTES else None


def counted_before(row: str, minute: str) -> str:
    """SQL: the hourly row `row`'s count before `minute`, one of QUARTER_MINUTES."""
    cases = " ".join(f"WHEN {m} THEN {row}.n{m}" for m in QUARTER_MINUTES)
    return f"CASE {minute} {cases} END"


# A piece of a range: the UTC unit whose pre-aggregate answers it ("hour",
# "day"), or None for the raw table; and its bounds (None: unbounded).
Piece = tuple[str | None, datetime | None, datetime | None]


# psycopg's own timestamptz loader, in C with the binary package. Django's
# (register_tzloader) is a Python subclass of the pure-Python one, to give
# the values a zone: some 6 us a value, a third of a 90-day chart's time in
# Asia/Kolkata (2,800 buckets). The session's TimeZone is UTC (Django sets it
# with USE_TZ), for which psycopg's loader gives the same aware datetimes.
TIMESTAMPTZ_LOADER = adapters.get_loader(types["timestamptz"].oid, pq.Format.TEXT)


def _array_literal(moments: list) -> str | None:
    """A list of aware datetimes (or None) as the text of a timestamptz[]
    literal, or None when it holds anything else. ISO 8601 text holds no
    character an array literal must quote."""
    items = []
    for moment in moments:
        if moment is None:
            items.append("NULL")
        elif isinstance(moment, datetime) and moment.tzinfo is not None:
            items.append(_moment_text(moment))
        else:
            return None
    return "{" + ",".join(items) + "}"


# A page's plans name the same days and hours again and again (a year's
# overview in Asia/Kolkata: 5,500 moments in 64 arrays), and isoformat()
# costs some 1.2 us, a dict lookup 0.03. Two equal instants in different
# zones share an entry: either text is the same timestamptz.
@lru_cache(maxsize=16384)
def _moment_text(moment: datetime) -> str:
    return moment.isoformat()


def _literal_arrays(text: str, params: dict[str, Any]) -> dict[str, Any]:
    """The params, each list of datetimes the query casts to timestamptz[]
    given as the literal's text. A plan's arrays hold hundreds of moments (a
    year's days and their buckets), and psycopg quotes each element of a
    list in Python with regular expressions: some 2.5 us a moment, 7 ms of
    a year's overview."""
    found = dict(params)
    for key, value in params.items():
        if isinstance(value, list) and value and f"%({key})s::timestamptz[]" in text:
            literal = _array_literal(value)
            if literal is not None:
                found[key] = literal
    return found


def fetch(query: sql.Composable | str, params: dict[str, Any] | None = None) -> list[tuple]:
    """The rows of a read query, on the connection that serves this request's reads."""
    with read_connection().cursor() as cursor:
        cursor.cursor.adapters.register_loader("timestamptz", TIMESTAMPTZ_LOADER)
        text = query if isinstance(query, str) else query.as_string(cursor.cursor)
        cursor.execute(text, _literal_arrays(text, params or {}))
        return cursor.fetchall()


def unit_floor(moment: datetime, unit: str) -> datetime:
    """utc_floor, and the start of the UTC month for unit "month"."""
    if unit != "month":
        return utc_floor(moment, unit)
    return utc_floor(moment, "day").replace(day=1)


def unit_ceil(moment: datetime, unit: str) -> datetime:
    """utc_ceil, and the first UTC month start at or after `moment` for unit "month"."""
    if unit != "month":
        return utc_ceil(moment, unit)
    floor = unit_floor(moment, unit)
    # Day 1 plus 32 days is always in the next month.
    return floor if floor == moment else (floor + timedelta(days=32)).replace(day=1)


def months_between(start: datetime, end: datetime) -> list[datetime]:
    """The starts of the UTC months from `start` up to `end` (both month starts)."""
    months = []
    while start < end:
        months.append(start)
        start = unit_ceil(start + timedelta(days=1), "month")
    return months


def cover(
    start: datetime | None, end: datetime | None, units: tuple[str, ...], finer: str | None = None
) -> list[Piece]:
    """[start, end) as pieces in time order: the whole UTC units of the last
    of `units` in the middle, the whole units of each finer one around them,
    and the partial edges from the raw table (`finer`, None at the top).

    `units` go from finest to coarsest ("hour", "day", "month"): ("hour",
    "day") reads a year as about 365 daily rows, up to 46 hourly ones and at
    most two hours of events; ("day", "month") as 11 or 12 monthly rows, the
    days of the partial months around them (about a month in all) and the
    partial days from events. A None bound leaves that side open: only whole
    units reach towards it.
    """
    if not units:
        return [(finer, start, end)]
    unit = units[0]
    lo = unit_ceil(start, unit) if start is not None else None
    hi = unit_floor(end, unit) if end is not None else None
    if lo is not None and hi is not None and lo >= hi:
        return [(finer, start, end)]
    head = [(finer, start, lo)] if start is not None and lo != start else []
    tail = [(finer, hi, end)] if end is not None and hi != end else []
    return [*head, *cover(lo, hi, units[1:], unit), *tail]


# Events in the two partial days around a range's whole UTC days (whole_days):
# one condition, so both edges are one bitmap scan of a timestamp index.
RAW_EDGES = sql.SQL(
    "((timestamp >= %(head_lo)s AND timestamp < %(head_hi)s)"
    " OR (timestamp >= %(tail_lo)s AND timestamp < %(tail_hi)s))"
)


def whole_days(start: datetime, end: datetime) -> dict[str, datetime] | None:
    """The parameters of a read of the whole UTC days in [start, end) from a
    daily pre-aggregate (`day >= %(first_day)s AND day < %(end_day)s`) and of
    its partial days from `events` (RAW_EDGES); None when no day is whole."""
    days = [(lo, hi) for unit, lo, hi in cover(start, end, ("day",)) if unit == "day"]
    if not days:
        return None
    ((first, last),) = days
    return {
        "first_day": first,
        "end_day": last,
        "head_lo": start,
        "head_hi": first,
        "tail_lo": last,
        "tail_hi": end,
    }


# The whole UTC days of a range's two partial months (month_plan), as one
# condition on a daily pre-aggregate's `day`: both are one scan of its key.
DAY_EDGES = sql.SQL(
    "((day >= %(days_head_lo)s AND day < %(days_head_hi)s)"
    " OR (day >= %(days_tail_lo)s AND day < %(days_tail_hi)s))"
)
# What a row of DAY_EDGES or RAW_EDGES counts for in a month_plan: +1 on a
# side read inside the window, -1 on a side whose whole month is read and
# whose part outside the window is taken back.
DAY_SIGN = sql.SQL(
    "(CASE WHEN day < %(days_tail_lo)s THEN %(head_sign)s::int ELSE %(tail_sign)s::int END)"
)
RAW_SIGN = sql.SQL(
    "(CASE WHEN timestamp < %(tail_lo)s THEN %(head_sign)s::int ELSE %(tail_sign)s::int END)"
)


def _inside(lo: datetime, hi: datetime) -> tuple[tuple, tuple]:
    """The whole days of [lo, hi) and its partial days at both ends."""
    first, last = utc_ceil(lo, "day"), utc_floor(hi, "day")
    return (first, max(first, last)), ((lo, first), (max(first, last), hi))


def month_plan(start: datetime, end: datetime) -> dict[str, Any] | None:
    """The parameters of a read of [start, end) in three parts: whole UTC
    months from a monthly pre-aggregate (`month >= %(first_month)s AND month
    < %(end_month)s`), whole days from a daily one (DAY_EDGES) and partial
    days from `events` (RAW_EDGES), each day and raw row counted with its
    side's sign (DAY_SIGN, RAW_SIGN). None when no day is whole.

    A partial month at either end (the first and the last month the range
    touches) is read the shorter way: its days inside the range (+1), or
    its whole month less its days outside the range (-1). A 30-day window
    ending now is then its first month's row less five days or so, and the
    current month's row, less nothing: some 40,000 project rows at 10M
    events instead of 140,000 daily ones.
    """
    if utc_ceil(start, "day") >= utc_floor(end, "day"):
        return None
    first_month, end_month = unit_floor(start, "month"), unit_ceil(end, "month")
    whole_lo, whole_hi = unit_ceil(start, "month"), unit_floor(end, "month")
    if whole_lo > whole_hi:
        # One month: both sides are flipped together or not at all.
        (days, (head_raw, tail_raw)) = _inside(start, end)
        outside = _to_read((first_month, utc_floor(start, "day"))) + _to_read(
            (utc_ceil(end, "day"), end_month)
        )
        if outside < days[1] - days[0]:
            head = ((first_month, utc_floor(start, "day")), (utc_floor(start, "day"), start), -1)
            tail = ((utc_ceil(end, "day"), end_month), (end, utc_ceil(end, "day")), -1)
        else:
            first_month = end_month = whole_lo
            head = (days, head_raw, 1)
            tail = ((days[1], days[1]), tail_raw, 1)
    else:
        head = _side(start, whole_lo, first_month, at_start=True)
        tail = _side(whole_hi, end, whole_hi, at_start=False)
        first_month = first_month if head[2] < 0 else whole_lo
        end_month = end_month if tail[2] < 0 else whole_hi
    (days_head, raw_head, head_sign), (days_tail, raw_tail, tail_sign) = head, tail
    return {
        "first_month": first_month,
        "end_month": end_month,
        "days_head_lo": days_head[0],
        "days_head_hi": days_head[1],
        "days_tail_lo": days_tail[0],
        "days_tail_hi": days_tail[1],
        "head_lo": raw_head[0],
        "head_hi": raw_head[1],
        "tail_lo": raw_tail[0],
        "tail_hi": raw_tail[1],
        "head_sign": head_sign,
        "tail_sign": tail_sign,
    }


def _to_read(days: tuple[datetime, datetime]) -> timedelta:
    """How much of the day range [lo, hi) holds rows to read: the days after
    today hold none (bar events stamped in the future), so a month read whole
    less them costs nothing for them. Only the choice of sides uses it."""
    today_end = utc_ceil(datetime.now(UTC), "day")
    lo, hi = min(days[0], today_end), min(days[1], today_end)
    return max(hi - lo, timedelta(0))


def _side(lo: datetime, hi: datetime, month: datetime, *, at_start: bool) -> tuple:
    """The days, the partial day and the sign a month_plan reads the part
    [lo, hi) of one month with: inside, or the month less its outside."""
    if lo == hi:
        return ((lo, lo), (lo, lo), 1)
    month_end = unit_ceil(month + timedelta(days=1), "month")
    days, (head_raw, tail_raw) = _inside(lo, hi)
    edge = lo if at_start else hi
    if at_start:
        outside_days, outside_raw = (month, utc_floor(edge, "day")), (utc_floor(edge, "day"), edge)
    else:
        outside_days, outside_raw = (
            (utc_ceil(edge, "day"), month_end),
            (edge, utc_ceil(edge, "day")),
        )
    if _to_read(outside_days) < days[1] - days[0]:
        return (outside_days, outside_raw, -1)
    return (days, head_raw if at_start else tail_raw, 1)


# Shorter than the shortest bucket of each unit in any zone (a local day can
# last 23 hours, a local hour 30 minutes on Lord Howe Island), so a sample at
# every stride hits every bucket.
STRIDES = {"hour": "30 minutes", "day": "12 hours", "week": "1 day", "month": "1 day"}


def bucket_starts(unit: str, tz_name: str, start: datetime, end: datetime) -> list[datetime]:
    """Every start of a bucket of `unit` in the zone over [start, end), in
    order (UTC datetimes), cut by PostgreSQL's date_trunc (DST included)."""
    rows = fetch(
        "SELECT DISTINCT date_trunc(%(unit)s, g, %(tz)s) FROM generate_series("
        "%(start)s::timestamptz, %(end)s::timestamptz - interval '1 microsecond',"
        " %(stride)s::interval) AS g"
        " UNION SELECT date_trunc(%(unit)s, %(end)s::timestamptz - interval '1 microsecond',"
        " %(tz)s) ORDER BY 1",
        {"unit": unit, "tz": tz_name, "start": start, "end": end, "stride": STRIDES[unit]},
    )
    return [r[0] for r in rows]


def bucket_of(column: sql.Composable, bucketed: bool = True) -> sql.Composable:
    """The bucket of a timestamp column, `date_trunc(%(unit)s, column,
    %(tz)s)`, or NULL for rows that are not bucketed."""
    if not bucketed:
        return sql.SQL("NULL::timestamptz")
    return sql.SQL("date_trunc(%(unit)s, {}, %(tz)s)").format(column)


def local_days() -> sql.Composable:
    """A FROM item `l` (lo, hi): the local days of the zone %(tz)s from the
    one holding %(start)s to the last beginning before %(end)s. Local
    midnights are stepped in local time and read back in the zone, so each
    day begins where date_trunc('day', …, zone) puts it, DST days included."""
    return sql.SQL(
        "(SELECT lo, hi FROM ("
        "  SELECT (t AT TIME ZONE %(tz)s) AS lo, ((t + interval '1 day') AT TIME ZONE %(tz)s) AS hi"
        "  FROM generate_series("
        "   date_trunc('day', %(start)s::timestamptz, %(tz)s) AT TIME ZONE %(tz)s,"
        "   %(end)s::timestamptz AT TIME ZONE %(tz)s, interval '1 day') AS t) AS d"
        " WHERE lo < %(end)s) AS l"
    )


# A UTC hour with a bucket edge inside it, as the pre-aggregate sees it.
# `first` is the bucket of the hour's start; `edge` where the next bucket
# begins, or None when the zone's offset changes within the hour (the whole
# hour is then read from `events`).
Straddle = tuple[datetime, datetime, datetime | None]

STRADDLING_SQL = (
    "SELECT h, first, CASE WHEN o1 = o2 AND last > h AND last < h + interval '1 hour'"
    "  AND date_trunc(%(unit)s, last - interval '1 microsecond', %(tz)s) = first"
    "  AND date_trunc(%(unit)s, last, %(tz)s) = last THEN last END FROM ("
    "  SELECT h, date_trunc(%(unit)s, h, %(tz)s) AS first, date_trunc(%(unit)s, t, %(tz)s) AS last,"
    "   (h AT TIME ZONE %(tz)s) - (h AT TIME ZONE 'UTC') AS o1,"
    "   (t AT TIME ZONE %(tz)s) - (t AT TIME ZONE 'UTC') AS o2"
    "  FROM generate_series(%(lo)s::timestamptz, %(hi)s::timestamptz, interval '1 hour') AS h,"
    "   LATERAL (SELECT h + interval '1 hour' - interval '1 microsecond') AS e (t)"
    ") AS s WHERE first <> last OR o1 <> o2 ORDER BY 1"
)


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
    rows = fetch(STRADDLING_SQL, {"unit": unit, "tz": tz_name, "lo": lo, "hi": hi - HOUR})
    return tuple(rows)


def straddles(unit: str, tz_name: str, start: datetime, end: datetime) -> list[Straddle]:
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


def _merged(ranges: list[RawRange]) -> list[RawRange]:
    """Adjacent unlabelled ranges as one (one index scan instead of two)."""
    merged: list[RawRange] = []
    for lo, hi, label, kept in ranges:
        whole = label is None and kept is None
        if whole and merged and merged[-1][1] == lo and merged[-1][2:] == (None, None):
            merged[-1] = (merged[-1][0], hi, None, None)
        else:
            merged.append((lo, hi, label, kept))
    return merged


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
        pieces = cover(start, end, ("hour",))
        hours = [(lo, hi) for source, lo, hi in pieces if source == "hour"]
        if not hours:
            return cls(None, None, [], [], [], [(start, end, None, None)])
        ((full_start, full_end),) = hours
        ranges: list[RawRange] = [
            (lo, hi, None, None) for s, lo, hi in pieces if s is None and hi == full_start
        ]
        whole_raw, split, keep = [], [], []
        for hour, first, edge in straddles(unit, tz_name, full_start, full_end) if unit else []:
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
        ranges += [(lo, hi, None, None) for s, lo, hi in pieces if s is None and lo == full_end]
        return cls(full_start, full_end, whole_raw, split, keep, _merged(ranges))

    def range_params(self) -> dict[str, list]:
        """The raw ranges as four arrays, %(raw_lo)s, %(raw_hi)s,
        %(raw_label)s and %(raw_keep)s, for unnest()."""
        columns = [list(c) for c in zip(*self.ranges, strict=True)] or [[], [], [], []]
        return dict(zip(("raw_lo", "raw_hi", "raw_label", "raw_keep"), columns, strict=True))

    def hour_params(self) -> dict[str, Any]:
        """The whole hours as %(hours_from)s to %(hours_to)s; the hours a
        bucket edge cuts, %(split)s, each counted in its %(keep)s bucket; the
        hours read raw, %(whole_raw)s."""
        return {
            "hours_from": self.hours_from,
            "hours_to": self.hours_to,
            "split": self.split,
            "keep": self.keep,
            "whole_raw": self.whole_raw,
        }
