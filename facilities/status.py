"""Facility status, derived from audit events; pure functions, no queries.

A `facility_status` report holds from its timestamp until the next report,
but for at most its hold time: the `payload.interval` its controller gave
(seconds until its next report), or FACILITY_STALE_AFTER when that is longer
or the report gives none. A facility whose controller stops reporting is
`unknown` once the last report's hold time is over, not still up; a
controller that sends a heartbeat every few hours says so in `interval` and
stays known in between. The latest report by event timestamp wins, whatever
order the reports arrived in. A run of one status (its start is "since") is
broken by a different status or by a silence longer than the previous
report's hold time, the time the uptime bar shows as unknown. Resources in
use are the hosts of the realizations and materializations whose latest
successful event at the facility is an allocation (allocated minus freed; a
free with the same timestamp as an allocation wins).
"""

from bisect import bisect_right
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from django.urls import NoReverseMatch, reverse

from audit.catalog import FACILITY_STATES

UNKNOWN = "unknown"
STATES = (*FACILITY_STATES, UNKNOWN)
STATE_LABELS = {
    "up": "Up",
    "degraded": "Degraded",
    "down": "Down",
    "maintenance": "Maintenance",
    UNKNOWN: "Unknown",
}
# Marker and uptime-bar colours; the same values as the status-* CSS variables.
STATE_COLOURS = {
    "up": "#16a34a",
    "degraded": "#d97706",
    "down": "#dc2626",
    "maintenance": "#7c3aed",
    UNKNOWN: "#6b7280",
}
# A day's bar takes the colour of its worst reported state.
SEVERITY = {"up": 0, "maintenance": 1, "degraded": 2, "down": 3}
STATUS_EVENT = "facility_status"
UPTIME_DAYS = 90


@dataclass(frozen=True)
class Report:
    timestamp: datetime
    status: str
    message: str = ""
    caller: str = ""
    # payload.interval: seconds until the controller's next report (None:
    # not given, or out of the catalog's bounds in a report stored before).
    interval: int | None = None

    def holds_for(self, stale_after: timedelta) -> timedelta:
        """How long this report holds if no other follows: its interval, but
        never less than `stale_after` (FACILITY_STALE_AFTER)."""
        if self.interval is None:
            return stale_after
        return max(stale_after, timedelta(seconds=self.interval))

    def holds_until(self, stale_after: timedelta) -> datetime:
        return self.timestamp + self.holds_for(stale_after)


@dataclass(frozen=True)
class CurrentStatus:
    """What the map shows: the status, since when, and the report behind it."""

    status: str
    since: datetime | None
    last_report: Report | None
    stale: bool

    def holds_until(self, stale_after: timedelta) -> datetime | None:
        """When the status turns unknown unless another report comes (past
        when stale; None with no report at all)."""
        return self.last_report.holds_until(stale_after) if self.last_report else None

    @property
    def label(self) -> str:
        return STATE_LABELS[self.status]

    @property
    def colour(self) -> str:
        return STATE_COLOURS[self.status]


def current_status(
    last: Report | None, run_started: datetime | None, now: datetime, stale_after: timedelta
) -> CurrentStatus:
    """The status at `now` from the latest report and the start of its run of
    equal reports. A report exactly its hold time old (`Report.holds_for`)
    still counts."""
    if last is None:
        return CurrentStatus(UNKNOWN, None, None, stale=False)
    if now > last.holds_until(stale_after):
        return CurrentStatus(UNKNOWN, last.holds_until(stale_after), last, stale=True)
    status = last.status if last.status in FACILITY_STATES else UNKNOWN
    return CurrentStatus(status, run_started or last.timestamp, last, stale=False)


@dataclass(frozen=True)
class Segment:
    start: datetime
    end: datetime
    status: str


def _state(status: str) -> str:
    return status if status in FACILITY_STATES else UNKNOWN


def segments(
    reports: list[Report], start: datetime, end: datetime, stale_after: timedelta
) -> list[Segment]:
    """Cut [start, end) into runs of one state. `reports` are in time order and
    may begin before `start` (the report in force at `start`)."""
    covered: list[Segment] = []
    for i, report in enumerate(reports):
        following = reports[i + 1].timestamp if i + 1 < len(reports) else end
        valid_until = min(following, report.holds_until(stale_after))
        a, b = max(report.timestamp, start), min(valid_until, end)
        if b > a:
            covered.append(Segment(a, b, _state(report.status)))
    return _filled(covered, start, end)


def run_segments(runs: list["Run"], start: datetime, end: datetime) -> list[Segment]:
    """`segments` from the runs in force in [start, end) (Facility.runs):
    each covers [started, ended) with its status."""
    covered: list[Segment] = []
    for run in runs:
        a, b = max(run.started, start), min(run.ended, end)
        if b > a:
            covered.append(Segment(a, b, _state(run.status)))
    return _filled(covered, start, end)


def _filled(covered: list[Segment], start: datetime, end: datetime) -> list[Segment]:
    """The covered stretches in time order with the gaps between them unknown,
    touching stretches of one state joined."""
    result: list[Segment] = []
    cursor = start
    for seg in covered:
        if seg.start > cursor:
            _append(result, Segment(cursor, seg.start, UNKNOWN))
        _append(result, seg)
        cursor = max(cursor, seg.end)
    if cursor < end:
        _append(result, Segment(cursor, end, UNKNOWN))
    return result


def _append(result: list[Segment], seg: Segment) -> None:
    if result and result[-1].status == seg.status and result[-1].end == seg.start:
        result[-1] = Segment(result[-1].start, seg.end, seg.status)
    else:
        result.append(seg)


STOPPED_REPORTING = "stopped reporting"


def changes(reports: list[Report], now: datetime, stale_after: timedelta) -> list[Report]:
    """The reports that changed the status, newest first. A silence longer
    than the previous report's hold time (`Report.holds_for`) is a change
    too: an unknown entry at the moment that report went stale (where the
    uptime bar turns grey), and the next report starts a new run even if it
    repeats the old status."""
    changed: list[Report] = []
    previous: Report | None = None
    for report in reports:
        silent = previous is not None and report.timestamp > previous.holds_until(stale_after)
        if silent:
            changed.append(Report(previous.holds_until(stale_after), UNKNOWN, STOPPED_REPORTING))
        if previous is None or silent or report.status != previous.status:
            changed.append(report)
        previous = report
    if previous is not None and now > previous.holds_until(stale_after):
        changed.append(Report(previous.holds_until(stale_after), UNKNOWN, STOPPED_REPORTING))
    return changed[::-1]


@dataclass(frozen=True)
class Run:
    """A run of one status (facility_runs, audit/facility_runs.py): its first
    report, when its last report's hold ends, and when it ended (the next
    run's start, if before that)."""

    started: datetime
    status: str
    message: str
    caller: str
    interval: int | None
    hold_until: datetime
    ended: datetime

    @property
    def first_report(self) -> Report:
        return Report(self.started, self.status, self.message, self.caller, self.interval)


def run_changes(runs: list[Run], now: datetime, first: Report | None = None) -> list[Report]:
    """`changes` from runs: each run's first report, and a stop where a run's
    hold ended before the next began. `first` (the report in force when the
    runs were read from, the last report of runs[0] before then) stands for
    runs[0]'s first report, as `changes` of the reports since then lists it."""
    changed: list[Report] = []
    previous: Run | None = None
    for run in runs:
        if previous is not None and run.started > previous.hold_until:
            changed.append(Report(previous.hold_until, UNKNOWN, STOPPED_REPORTING))
        changed.append(first if previous is None and first else run.first_report)
        previous = run
    if previous is not None and now > previous.hold_until:
        changed.append(Report(previous.hold_until, UNKNOWN, STOPPED_REPORTING))
    return changed[::-1]


@dataclass
class Day:
    date: date
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def known_seconds(self) -> float:
        return sum(s for state, s in self.seconds.items() if state != UNKNOWN)

    @property
    def status(self) -> str:
        """The worst reported state of the day; unknown if nothing was reported."""
        seen = [s for s, secs in self.seconds.items() if s != UNKNOWN and secs > 0]
        return max(seen, key=SEVERITY.__getitem__) if seen else UNKNOWN

    @property
    def up_percent(self) -> float | None:
        known = self.known_seconds
        return round(100 * self.seconds.get("up", 0) / known, 2) if known else None

    def percent_of_day(self, state: str) -> float:
        total = sum(self.seconds.values())
        return round(100 * self.seconds.get(state, 0) / total, 1) if total else 0.0

    @property
    def shares(self) -> str:
        """The day's share of each state: 'Up 75.0%, Down 25.0%'."""
        parts = [
            f"{STATE_LABELS[state]} {self.percent_of_day(state)}%"
            for state in STATES
            if self.seconds.get(state)
        ]
        return ", ".join(parts) or "no data"

    def describe(self) -> str:
        """One line for the bar's tooltip: the date and its share of each state."""
        return f"{self.date:%a %Y-%m-%d}: {self.shares}"


@dataclass
class Uptime:
    days: list[Day]
    zone: ZoneInfo

    @property
    def up_percent(self) -> float | None:
        """Time up over time with a known state, across all days."""
        known = sum(d.known_seconds for d in self.days)
        up = sum(d.seconds.get("up", 0) for d in self.days)
        return round(100 * up / known, 2) if known else None

    def day_counts(self) -> list[dict]:
        """Each state with how many days had it as their worst, in STATES
        order: the bar's key, in words as well as colours."""
        counts = dict.fromkeys(STATES, 0)
        for day in self.days:
            counts[day.status] += 1
        return [
            {"status": state, "label": STATE_LABELS[state], "days": counts[state]}
            for state in STATES
        ]

    def summary(self) -> str:
        """The bar in one sentence, for screen readers: '88 days up, 1 day
        down, 1 day unknown, over 90 days'."""
        parts = [
            f"{c['days']} day{'s' if c['days'] != 1 else ''} {c['label'].lower()}"
            for c in self.day_counts()
            if c["days"]
        ]
        return f"Worst status of each day: {', '.join(parts)}, over {len(self.days)} days"

    def troubled_days(self) -> list[Day]:
        """The days with a reported state worse than up, newest first (days
        with no report at all are only counted, in `day_counts`)."""
        return [day for day in reversed(self.days) if day.status not in ("up", UNKNOWN)]


def local_midnight(day: date, zone: ZoneInfo) -> datetime:
    return datetime.combine(day, time(), tzinfo=zone).astimezone(UTC)


def uptime_window(now: datetime, zone: ZoneInfo, days: int = UPTIME_DAYS) -> tuple[datetime, date]:
    """The UTC start of the first day and that day, for `days` local days
    ending with today in `zone`."""
    first = now.astimezone(zone).date() - timedelta(days=days - 1)
    return local_midnight(first, zone), first


def daily_uptime(
    segs: list[Segment], zone: ZoneInfo, now: datetime, days: int = UPTIME_DAYS
) -> Uptime:
    """Seconds per state for each of `days` local days ending today, days cut
    at midnight in `zone` (23 or 25 hours long across DST changes)."""
    _, first = uptime_window(now, zone, days)
    dates = [first + timedelta(days=i) for i in range(days)]
    bounds = [local_midnight(d, zone) for d in dates]
    result = [Day(d) for d in dates]
    for seg in segs:
        a = seg.start
        while a < seg.end:
            i = bisect_right(bounds, a) - 1
            if i < 0:
                a = bounds[0]
                continue
            day_end = bounds[i + 1] if i + 1 < len(bounds) else now
            b = min(seg.end, day_end, now)
            if b <= a:
                break
            seconds = result[i].seconds
            seconds[seg.status] = seconds.get(seg.status, 0) + (b - a).total_seconds()
            a = b
    return Uptime(result, zone)


@dataclass(frozen=True)
class Allocation:
    """A realization or materialization holding resources at a facility now."""

    kind: str
    name: str
    project: str
    experiment: str
    resources: tuple[str, ...]
    nodes: int
    since: datetime
    caller: str

    @property
    def experiment_url(self) -> str:
        """The experiment's page, or "" when the payload names none that a
        URL can hold (missing, or with a slash)."""
        try:
            return reverse("experiment", args=[self.project, self.experiment])
        except NoReverseMatch:
            return ""


@dataclass
class UsageSummary:
    in_use: int = 0
    realizations: int = 0
    materializations: int = 0


@dataclass
class Usage:
    allocations: list[Allocation] = field(default_factory=list)

    @property
    def hosts(self) -> set[str]:
        # A materialization runs on its realization's hosts: count each once.
        return {host for a in self.allocations for host in a.resources}

    @property
    def in_use(self) -> int:
        return len(self.hosts)

    @property
    def materializations(self) -> list[Allocation]:
        return [a for a in self.allocations if a.kind == "materialization"]

    @property
    def realizations(self) -> list[Allocation]:
        return [a for a in self.allocations if a.kind == "realization"]

    def summary(self) -> UsageSummary:
        return UsageSummary(self.in_use, len(self.realizations), len(self.materializations))
