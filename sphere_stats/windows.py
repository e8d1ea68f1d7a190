"""Time windows, resolutions and display time zones, shared by every page.

A window is a half-open UTC interval [start, end) plus how to cut it into
buckets (resolution) and in which zone (display time zone). Buckets are cut
by PostgreSQL's `date_trunc(unit, timestamp, zone)`, which is correct across
DST changes; `Window.bucket_sql` gives the expression.

Query parameters: period (1h, 24h, 7d, 30d, 90d, 1y, all, custom), since and
until (for custom: a date, or a local date-time in the display zone, or
RFC 3339, or a time relative to now: `now`, `now-45m`, `now-7d`), res (1h,
1d, 7d, 30d), tz (an IANA zone; default UTC).
"""

import re
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, time, timedelta
from functools import cache
from urllib.parse import urlencode
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from django.utils import timezone

PERIODS: dict[str, timedelta | None] = {
    "1h": timedelta(hours=1),
    "24h": timedelta(hours=24),
    "7d": timedelta(days=7),
    "30d": timedelta(days=30),
    "90d": timedelta(days=90),
    "1y": timedelta(days=365),
    "all": None,
}
PERIOD_LABELS = {
    "1h": "Last hour",
    "24h": "Last 24 hours",
    "7d": "Last 7 days",
    "30d": "Last 30 days",
    "90d": "Last 90 days",
    "1y": "Last year",
    "all": "All time",
    "custom": "Custom range",
}
# The audit-metrics resolutions; 7d buckets are ISO weeks (from Monday) and
# 30d buckets calendar months, both cut in the display time zone.
RESOLUTIONS = {"1h": "hour", "1d": "day", "7d": "week", "30d": "month"}
RESOLUTION_LABELS = {"1h": "Hourly", "1d": "Daily", "7d": "Weekly", "30d": "Monthly"}
DEFAULT_PERIOD = "30d"
# Cap on buckets per chart: 1h resolution over a year would be 8,760 points.
MAX_BUCKETS = 2000
COMMON_ZONES = [
    "UTC",
    "America/Los_Angeles",
    "America/Denver",
    "America/Chicago",
    "America/New_York",
    "Europe/London",
    "Europe/Berlin",
    "Asia/Kolkata",
    "Asia/Tokyo",
    "Australia/Sydney",
]


def utc_floor(moment: datetime, unit: str) -> datetime:
    """`moment` cut down to the start of its UTC hour or day ("hour" or
    "day"): the pre-aggregates' buckets are UTC, whatever the caller's offset."""
    moment = moment.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    return moment.replace(hour=0) if unit == "day" else moment


def utc_ceil(moment: datetime, unit: str) -> datetime:
    """The first UTC hour or day start at or after `moment`."""
    floor = utc_floor(moment, unit)
    return floor if floor == moment else floor + timedelta(**{f"{unit}s": 1})


class WindowError(ValueError):
    """A bad window parameter; `field` names it for the 400 answer."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


# `now`, or `now-<count><unit>`: the relative times every since/until takes.
RELATIVE = re.compile(r"now(?:-(\d{1,9})([smhdw]))?")
RELATIVE_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
RELATIVE_HELP = "a relative time such as now, now-45m or now-7d (units s, m, h, d, w)"


def parse_relative(raw: str, now: datetime, field: str) -> datetime | None:
    """The moment a relative time (`now`, `now-45m`, `now-7d`) names, or
    None when `raw` does not start with `now`. A malformed one (`now-7x`,
    `now+1d`) raises WindowError naming `field`: it is never read as a date."""
    text = raw.strip()
    if not text.startswith("now"):
        return None
    match = RELATIVE.fullmatch(text)
    if match is None:
        raise WindowError(field, f"{text[:40]!r} is not {RELATIVE_HELP}")
    count, unit = match.groups()
    if count is None:
        return now
    try:
        return now - timedelta(**{RELATIVE_UNITS[unit]: int(count)})
    except OverflowError:
        raise WindowError(field, f"{text!r} reaches back before the year 1") from None


def default_resolution(length: timedelta) -> str:
    if length <= timedelta(days=2):
        return "1h"
    if length <= timedelta(days=120):
        return "1d"
    if length <= timedelta(days=800):
        return "7d"
    return "30d"


@cache
def known_zones() -> frozenset[str]:
    # available_timezones() walks the tz database on disk (~35 ms a call):
    # read it once per process.
    return frozenset(available_timezones())


def parse_zone(name: str) -> ZoneInfo:
    try:
        if name not in known_zones() and name != "UTC":
            raise ZoneInfoNotFoundError(name)
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise WindowError("tz", f"unknown time zone {name!r}; use an IANA name") from None


def _parse_bound(raw: str, zone: ZoneInfo, field: str, *, end: bool, now: datetime) -> datetime:
    raw = raw.strip()
    relative = parse_relative(raw, now, field)
    if relative is not None:
        return relative
    try:
        if len(raw) == 10:
            day = date.fromisoformat(raw)
            # A date as `until` includes that whole day.
            if end:
                day += timedelta(days=1)
            return datetime.combine(day, time(), tzinfo=zone).astimezone(UTC)
        moment = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise WindowError(
            field, f"must be a date (2026-04-23), a date-time or {RELATIVE_HELP}"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=zone)
    return moment.astimezone(UTC)


@dataclass(frozen=True)
class Window:
    period: str
    start: datetime
    end: datetime
    resolution: str
    zone: ZoneInfo
    resolution_chosen: bool = False

    @classmethod
    def from_query(cls, query, *, now: datetime | None = None, earliest=None) -> "Window":
        """Parse period/since/until/res/tz; `earliest()` gives the first event
        time for period=all (called only then)."""
        now = now or timezone.now()
        zone = parse_zone(query.get("tz") or "UTC")
        period = query.get("period") or ""
        since, until = query.get("since") or "", query.get("until") or ""
        if not period:
            period = "custom" if (since or until) else DEFAULT_PERIOD
        if period == "custom":
            end = _parse_bound(until, zone, "until", end=True, now=now) if until else now
            if not since:
                raise WindowError("since", "is required for a custom range")
            start = _parse_bound(since, zone, "since", end=False, now=now)
            if start >= end:
                raise WindowError("since", "must be before until")
        elif period in PERIODS:
            end = now
            length = PERIODS[period]
            if length is None:
                first = earliest() if earliest else None
                start = first if first and first < end else end - timedelta(days=1)
            else:
                start = end - length
        else:
            raise WindowError("period", f"must be one of {', '.join([*PERIODS, 'custom'])}")

        res = query.get("res") or ""
        if res and res not in RESOLUTIONS:
            raise WindowError("res", f"must be one of {', '.join(RESOLUTIONS)}")
        chosen = bool(res)
        if not res:
            res = default_resolution(end - start)
        window = cls(period, start, end, res, zone, chosen)
        if window.approximate_buckets() > MAX_BUCKETS:
            if chosen:
                raise WindowError("res", f"gives more than {MAX_BUCKETS} buckets for this period")
            window = replace(window, resolution=default_resolution(end - start))
        return window

    @property
    def length(self) -> timedelta:
        return self.end - self.start

    @property
    def unit(self) -> str:
        """The date_trunc unit of the resolution."""
        return RESOLUTIONS[self.resolution]

    @property
    def tz_name(self) -> str:
        return self.zone.key

    def previous(self) -> "Window":
        """The window of the same length just before this one."""
        return replace(self, start=self.start - self.length, end=self.start)

    def approximate_buckets(self) -> int:
        per = {"1h": 3600, "1d": 86400, "7d": 7 * 86400, "30d": 30 * 86400}[self.resolution]
        return int(self.length.total_seconds() // per) + 1

    def bucket_sql(self, column: str = "timestamp") -> tuple[str, list]:
        """SQL for the bucket start of `column`, and its parameters."""
        return f"date_trunc(%s, {column}, %s)", [self.unit, self.tz_name]

    def local(self, moment: datetime) -> datetime:
        return moment.astimezone(self.zone)

    def params(self, **overrides) -> dict[str, str]:
        """The query parameters that reproduce this window (for links)."""
        values = {"period": self.period, "tz": self.tz_name}
        if self.period == "custom":
            values["since"] = self.local(self.start).strftime("%Y-%m-%dT%H:%M")
            values["until"] = self.local(self.end).strftime("%Y-%m-%dT%H:%M")
        if self.resolution_chosen:
            values["res"] = self.resolution
        values.update({k: v for k, v in overrides.items() if v is not None})
        return values

    def query_string(self, **overrides) -> str:
        return urlencode(self.params(**overrides))

    def label(self) -> str:
        if self.period == "custom":
            fmt = "%Y-%m-%d %H:%M"
            return f"{self.local(self.start):{fmt}} – {self.local(self.end):{fmt}} {self.tz_name}"
        return PERIOD_LABELS[self.period]
