"""Time windows, resolutions and display time zones, shared by every page.

A window is a half-open UTC interval [start, end) plus how to cut it into
buckets (resolution) and in which zone (display time zone). Buckets are cut
by PostgreSQL's `date_trunc(unit, timestamp, zone)`, which is correct across
DST changes (audit/buckets.py plans those expressions).

Query parameters: period (1h, 24h, 7d, 30d, 90d, 1y, all, custom), since and
until (for custom: a date, or a local date-time in the display zone, or
RFC 3339, or a time relative to now: `now`, `now-45m`, `now-7d`), res (1h,
1d, 7d, 30d), tz (an IANA zone; default UTC; forgiving of case and of a
city alone: `asia/kolkata` and `Kolkata` are Asia/Kolkata).

Pages parse forgivingly (`Window.forgiving`): a bad field is replaced by its
default and its error rides on the window (`Window.errors`) to be shown
beside that field, while the rest of the view is kept. The API parses
strictly (`Window.from_query`): the first bad field is a 400 naming it.
"""

import difflib
import re
from dataclasses import dataclass, field, replace
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


# A page's auto-refresh choices (`refresh`, in seconds; absent: off).
REFRESH_CHOICES = {"": "Off", "60": "Every minute", "300": "Every 5 minutes"}


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


# The times a window or filter may name: wide enough for any question about
# the event store (its events are from 1970 on), and far enough inside
# Python's datetime range (years 1 to 9999) that a window's arithmetic (the
# period before it, the end of its last bucket) cannot overflow into a 500.
EARLIEST_MOMENT = datetime(1000, 1, 1, tzinfo=UTC)
LATEST_MOMENT = datetime(9000, 1, 1, tzinfo=UTC)
RANGE_HELP = "out of range: give a time from 1000-01-01 to 8999-12-31"


def checked_moment(moment: datetime, field: str) -> datetime:
    """`moment`, or a WindowError naming `field` when it lies outside
    EARLIEST_MOMENT..LATEST_MOMENT."""
    if not EARLIEST_MOMENT <= moment < LATEST_MOMENT:
        raise WindowError(field, f"is {RANGE_HELP}")
    return moment


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
        moment = now - timedelta(**{RELATIVE_UNITS[unit]: int(count)})
    except OverflowError:
        raise WindowError(field, f"{text!r} reaches back before the year 1") from None
    return checked_moment(moment, field)


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
    return frozenset(available_timezones()) | {"UTC"}


@cache
def _zone_lookup() -> tuple[dict[str, str], dict[str, list[str]]]:
    """Zones by lower-cased name, and by lower-cased last part (the city)."""
    by_name = {z.lower(): z for z in known_zones()}
    by_city: dict[str, list[str]] = {}
    for zone in sorted(known_zones()):
        by_city.setdefault(zone.rsplit("/", 1)[-1].lower(), []).append(zone)
    return by_name, by_city


@cache
def zone_choices() -> tuple[str, ...]:
    """Every IANA zone for the zone picker: the common ones first, then the
    rest alphabetically (legacy aliases such as `US/Pacific` included, since
    a shared link may carry one)."""
    rest = sorted(known_zones() - set(COMMON_ZONES))
    return (*COMMON_ZONES, *rest)


def resolve_zone(name: str) -> str | None:
    """The IANA name `name` means, forgiving case, spaces for underscores
    and a city alone when only one zone has it (`kolkata`, `new york`);
    None when it means none or several."""
    text = name.strip()
    if text in known_zones():
        return text
    key = text.replace(" ", "_").lower()
    by_name, by_city = _zone_lookup()
    if key in by_name:
        return by_name[key]
    cities = by_city.get(key, [])
    # A city two zones share (America/Indianapolis and
    # America/Indiana/Indianapolis) is not guessed: the error suggests both.
    return cities[0] if len(cities) == 1 else None


def zone_suggestions(name: str, n: int = 3) -> list[str]:
    """Zones whose name or city is close to `name` (for "did you mean")."""
    key = name.strip().replace(" ", "_").lower()
    by_name, by_city = _zone_lookup()
    names = difflib.get_close_matches(key, by_name, n=n, cutoff=0.75)
    cities = difflib.get_close_matches(key, by_city, n=n, cutoff=0.75)
    found = [by_name[k] for k in names] + [z for k in cities for z in by_city[k]]
    return list(dict.fromkeys(found))[:n]


# The longest IANA name is 32 characters (America/Argentina/ComodRivadavia).
MAX_ZONE_NAME = 64


def parse_zone(name: str) -> ZoneInfo:
    if len(name) > MAX_ZONE_NAME:
        raise WindowError("tz", f"unknown time zone {name[:60]!r}...; use an IANA name")
    zone = resolve_zone(name)
    if zone is None:
        close = zone_suggestions(name)
        hint = (
            f"did you mean {' or '.join(close)}?"
            if close
            else "use an IANA name such as Europe/Berlin"
        )
        raise WindowError("tz", f"unknown time zone {name[:60]!r}; {hint}")
    try:
        return ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError):
        raise WindowError("tz", f"unknown time zone {name[:60]!r}; use an IANA name") from None


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
            moment = datetime.combine(day, time(), tzinfo=zone)
        else:
            moment = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise WindowError(
            field, f"must be a date (2026-04-23), a date-time or {RELATIVE_HELP}"
        ) from None
    except OverflowError:  # the day after 9999-12-31
        raise WindowError(field, f"is {RANGE_HELP}") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=zone)
    try:
        return checked_moment(moment.astimezone(UTC), field)
    except OverflowError:  # 0001-01-01 in a zone east of UTC
        raise WindowError(field, f"is {RANGE_HELP}") from None


@dataclass(frozen=True)
class Window:
    period: str
    start: datetime
    end: datetime
    resolution: str
    zone: ZoneInfo
    resolution_chosen: bool = False
    # (field, message) for each parameter that was refused and replaced by
    # its default (Window.forgiving); a page shows each beside its field.
    errors: tuple[tuple[str, str], ...] = field(default=(), compare=False)

    @classmethod
    def from_query(cls, query, *, now: datetime | None = None, earliest=None) -> "Window":
        """Parse period/since/until/res/tz; `earliest()` gives the first event
        time for period=all (called only then). Raises WindowError naming the
        first bad parameter."""
        window = cls.forgiving(query, now=now, earliest=earliest)
        if window.errors:
            raise WindowError(*window.errors[0])
        return window

    @classmethod
    def forgiving(
        cls, query, *, now: datetime | None = None, earliest=None, limit_buckets: bool = False
    ) -> "Window":
        """The window `query` asks for, each bad parameter replaced by its
        default and its error kept in `errors` (in the order a strict parse
        meets them), so one typo does not throw away the rest of the view.

        `limit_buckets` also refuses a range that has more than MAX_BUCKETS
        buckets even at the automatic resolution (a custom range from the
        year 1): a chart page cannot draw it; the explorer has no buckets."""
        now = now or timezone.now()
        errors: dict[str, str] = {}

        def refuse(exc: WindowError) -> None:
            errors.setdefault(exc.field, exc.message)

        try:
            zone = parse_zone(query.get("tz") or "UTC")
        except WindowError as exc:
            refuse(exc)
            zone = ZoneInfo("UTC")
        period = query.get("period") or ""
        since, until = query.get("since") or "", query.get("until") or ""
        if not period:
            period = "custom" if (since or until) else DEFAULT_PERIOD
        if period not in PERIODS and period != "custom":
            refuse(WindowError("period", f"must be one of {', '.join([*PERIODS, 'custom'])}"))
            period = DEFAULT_PERIOD
        if period == "custom":
            start, end = cls._custom_bounds(since, until, zone, now, refuse)
        else:
            end = now
            length = PERIODS[period]
            if length is None:
                first = earliest() if earliest else None
                start = first if first and first < end else end - timedelta(days=1)
            else:
                start = end - length

        res = query.get("res") or ""
        if res and res not in RESOLUTIONS:
            refuse(WindowError("res", f"must be one of {', '.join(RESOLUTIONS)}"))
            res = ""
        chosen = bool(res)
        window = cls(period, start, end, res or default_resolution(end - start), zone, chosen)
        if window.approximate_buckets() > MAX_BUCKETS:
            if chosen:
                refuse(WindowError("res", f"gives more than {MAX_BUCKETS} buckets for this period"))
            window = replace(
                window, resolution=default_resolution(end - start), resolution_chosen=False
            )
        if limit_buckets and window.approximate_buckets() > MAX_BUCKETS:
            refuse(
                WindowError(
                    "since", f"reaches back too far: more than {MAX_BUCKETS} monthly buckets"
                )
            )
            start = end - PERIODS[DEFAULT_PERIOD]
            window = replace(window, start=start, resolution=default_resolution(end - start))
        return replace(window, errors=tuple(errors.items()))

    @staticmethod
    def _custom_bounds(since: str, until: str, zone: ZoneInfo, now: datetime, refuse) -> tuple:
        """(start, end) of a custom range; a bad `until` becomes now, a bad or
        missing `since` the default period's length before the end."""

        def bound(raw: str, name: str, *, end: bool) -> datetime | None:
            try:
                return _parse_bound(raw, zone, name, end=end, now=now)
            except WindowError as exc:
                refuse(exc)
            except OverflowError:
                refuse(WindowError(name, "is out of range"))
            return None

        end = (bound(until, "until", end=True) if until else None) or now
        try:
            fallback = end - PERIODS[DEFAULT_PERIOD]
        except OverflowError:  # an `until` in the first days of the year 1
            end, fallback = now, now - PERIODS[DEFAULT_PERIOD]
        if not since:
            refuse(WindowError("since", "is required for a custom range"))
            return fallback, end
        start = bound(since, "since", end=False)
        if start is None:
            return fallback, end
        if start >= end:
            refuse(WindowError("since", "must be before until"))
            return fallback, end
        return start, end

    @property
    def field_errors(self) -> dict[str, str]:
        """The refused parameters' messages by name, for the templates."""
        return dict(self.errors)

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
