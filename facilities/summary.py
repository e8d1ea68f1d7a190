"""What the map page, its panel and the API show, assembled once for all three."""

from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from django.conf import settings
from django.core.cache import cache

from audit.facility_runs import runs_current
from audit.models import Event
from facilities.models import Facility
from facilities.status import (
    SEVERITY,
    STATE_LABELS,
    CurrentStatus,
    Report,
    Segment,
    Uptime,
    Usage,
    UsageSummary,
    changes,
    daily_uptime,
    run_changes,
    run_segments,
    segments,
    uptime_window,
)
from sphere_stats.db import read_connection

MAX_CHANGES = 50
# The table's usage counts are cached this long: every open map polls the
# table each minute, and counting hosts reads the payload of every active
# allocation (bench/facilities.py). A TTL shorter than the poll interval made
# nearly every poll a miss; at one and a half intervals a lone map's polls
# alternate hit and miss, and with several maps open most polls hit. Counts
# are at most this stale.
# The cache is per process unless REDIS_URL is set, so each gunicorn worker
# computes its own copy. Statuses are never cached.
USAGE_CACHE_KEY = "facilities:usage-summary"
POLL_SECONDS = 60  # the page's hx-trigger="every 60s" (table and panel)
USAGE_CACHE_SECONDS = 90


def stale_after() -> timedelta:
    """The least time a status report holds (FACILITY_STALE_AFTER): longer
    where the report gives a longer payload.interval (status.Report.holds_for)."""
    return timedelta(seconds=settings.FACILITY_STALE_AFTER)


@dataclass
class FacilityRow:
    facility: Facility
    status: CurrentStatus
    usage: UsageSummary

    @property
    def slug(self) -> str:
        return self.facility.slug

    @property
    def in_use_percent(self) -> float:
        capacity = self.facility.capacity_nodes
        return min(100.0, round(100 * self.usage.in_use / capacity, 1)) if capacity else 0.0


# Sort keys of the table; "status" puts the worst first, unknown just after down.
SORTS = {
    "name": lambda r: (r.facility.name.lower(), r.slug),
    "kind": lambda r: (r.facility.kind.lower(), r.facility.name.lower()),
    "status": lambda r: (
        -(SEVERITY.get(r.status.status, 2.5)),
        r.facility.name.lower(),
    ),
    "since": lambda r: (r.status.since is None, r.status.since or datetime.min),
    "in_use": lambda r: (r.usage.in_use, r.facility.name.lower()),
    "capacity": lambda r: (r.facility.capacity_nodes, r.facility.name.lower()),
    "materializations": lambda r: (r.usage.materializations, r.facility.name.lower()),
}


class SortError(ValueError):
    pass


def facility_rows(now: datetime, sort: str = "name") -> list[FacilityRow]:
    """Every facility with its status and usage, sorted by `sort` (a key of
    SORTS, '-' in front for descending)."""
    key = sort.removeprefix("-")
    if key not in SORTS:
        raise SortError(f"sort must be one of {', '.join(SORTS)} (with '-' for descending)")
    facilities = Facility.objects.for_map()
    # The list is read once, before the statuses: a facility added in between
    # (in the admin, during a scrape) has no row yet rather than no status,
    # and one deleted in between is left out.
    listed = list(facilities)
    statuses = facilities.current_statuses(now, stale_after())
    usage = cache.get_or_set(USAGE_CACHE_KEY, facilities.usage_summary, USAGE_CACHE_SECONDS)
    rows = [
        FacilityRow(f, statuses[f.slug], usage.get(f.slug) or UsageSummary())
        for f in listed
        if f.slug in statuses
    ]
    if key == "since":
        # Rows with no report sort last either way.
        known = [r for r in rows if r.status.since is not None]
        unknown = [r for r in rows if r.status.since is None]
        known.sort(key=lambda r: r.status.since, reverse=sort.startswith("-"))
        return known + unknown
    return sorted(rows, key=SORTS[key], reverse=sort.startswith("-"))


def legend(rows: list[FacilityRow]) -> list[dict]:
    """Each state with its label and how many facilities are in it now."""
    counts: dict[str, int] = {}
    for row in rows:
        counts[row.status.status] = counts.get(row.status.status, 0) + 1
    return [
        {"status": state, "label": label, "count": counts.get(state, 0)}
        for state, label in STATE_LABELS.items()
    ]


@dataclass
class FacilityDetail:
    row: FacilityRow
    usage: Usage
    changes: list[Report]
    uptime: Uptime
    failures: list[Event]
    window_start: datetime


def status_history(
    facility: Facility, start: datetime, now: datetime, from_runs: bool | None = None
) -> tuple[list[Segment], list[Report]]:
    """The facility's states over [start, now) and its status changes since
    the report in force at `start` (newest first): from its runs when they
    are current (`from_runs` None), else (or False) from its reports."""
    if from_runs is None:
        with read_connection().cursor() as cursor:
            from_runs = runs_current(cursor, settings.FACILITY_STALE_AFTER)
    if from_runs:
        runs = facility.runs(start)
        first = facility.report_before(start) if runs and runs[0].started < start else None
        return run_segments(runs, start, now), run_changes(runs, now, first)
    reports = facility.reports(start)
    return segments(reports, start, now, stale_after()), changes(reports, now, stale_after())


def facility_detail(
    facility: Facility, now: datetime, zone: ZoneInfo, materializations: int | None = None
) -> FacilityDetail:
    """Everything the side panel shows for one facility, days cut in `zone`;
    `materializations` caps the active ones listed (newest first)."""
    one = Facility.objects.filter(pk=facility.pk)
    row = FacilityRow(
        facility,
        one.current_statuses(now, stale_after())[facility.slug],
        one.usage_summary()[facility.slug],
    )
    usage = one.usage(kinds=("materialization",), limit=materializations)[facility.slug]
    start, _ = uptime_window(now, zone)
    segs, changed = status_history(facility, start, now)
    uptime = daily_uptime(segs, zone, now)
    return FacilityDetail(
        row=row,
        usage=usage,
        changes=changed[:MAX_CHANGES],
        uptime=uptime,
        failures=facility.recent_failures(),
        window_start=start,
    )
