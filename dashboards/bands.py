"""Facility outages and maintenance windows over a period, for the time charts.

A `facility_status` report holds from its timestamp until the next report of
its facility, but for at most its hold time (its payload.interval, never less
than FACILITY_STALE_AFTER; facilities/status.py):
the same rule the map and the uptime bars follow, so a band on a chart
covers exactly the time the uptime bar shows red (down) or in the
maintenance colour. The runs of all facilities are merged per state: a chart
draws one band where any facility was down, naming the facilities.

The bands come from facility_runs (audit/facility_runs.py), the reports folded
into runs by the triggers on `events`: a few rows a year where the reports
are a million. Only while the runs were built with another
FACILITY_STALE_AFTER than the setting's (before the `migrate` that rebuilds
them) are the reports read instead.
"""

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings

from audit.catalog import FACILITY_MAX_INTERVAL
from audit.facility_runs import RUNS_TABLE, hold_sql, interval_sql, runs_current
from facilities.status import STATUS_EVENT
from sphere_stats.db import read_connection

# The states drawn as bands, in drawing order (maintenance under outages).
BAND_STATES = ("maintenance", "down")

# The report in force at `start` (the latest before it within the longest
# hold a report can have; the parentheses give DISTINCT ON its own ORDER BY) and every report in
# [start, end), each with the time the next report of its facility arrived.
# Only the reports of a band state come back, with the end of their
# validity: a few rows, however many reports the period holds.
BAND_REPORTS_SQL = f"""
WITH reports AS (
    SELECT subject, timestamp, event_uuid, payload->>'status' AS status,
           {interval_sql("payload")} AS interval
    FROM events
    WHERE event_type = '{STATUS_EVENT}' AND subject_type = 'facility'
      AND timestamp >= %(start)s AND timestamp < %(end)s
    UNION ALL
    (SELECT DISTINCT ON (subject) subject, timestamp, event_uuid, payload->>'status',
            {interval_sql("payload")}
     FROM events
     WHERE event_type = '{STATUS_EVENT}' AND subject_type = 'facility'
       AND timestamp < %(start)s AND timestamp >= %(start)s - %(longest)s
     ORDER BY subject, timestamp DESC, event_uuid DESC)
), timed AS (
    SELECT subject, timestamp, status, interval,
           lead(timestamp) OVER (PARTITION BY subject ORDER BY timestamp, event_uuid)
               AS next_report
    FROM reports
)
SELECT subject, status, greatest(timestamp, %(start)s) AS lo,
       least(coalesce(next_report, %(end)s), timestamp + {hold_sql("interval")}, %(end)s) AS hi
FROM timed
WHERE status = ANY(%(states)s)
"""

# The runs of a band state overlapping [start, end), clipped to it
# (idx_facility_runs_status_end): each covers [started, ended).
BAND_RUNS_SQL = f"""
SELECT facility, status, greatest(started, %(start)s), least(ended, %(end)s)
FROM {RUNS_TABLE}
WHERE status = ANY(%(states)s) AND ended > %(start)s AND started < %(end)s
"""


@dataclass(frozen=True)
class Band:
    start: datetime
    end: datetime
    status: str  # one of BAND_STATES
    facilities: tuple[str, ...]


def _merge(runs: list[tuple[datetime, datetime, str]]) -> list[tuple[datetime, datetime, set]]:
    """Overlapping or touching runs as one, with the facilities of each."""
    merged: list[tuple[datetime, datetime, set]] = []
    for lo, hi, slug in sorted(runs):
        if merged and lo <= merged[-1][1]:
            start, end, slugs = merged[-1]
            merged[-1] = (start, max(end, hi), slugs | {slug})
        else:
            merged.append((lo, hi, {slug}))
    return merged


def facility_bands(start: datetime, end: datetime, from_runs: bool | None = None) -> list[Band]:
    """The outages and maintenance windows of every facility in [start, end),
    per state, overlapping ones merged; in time order within each state.
    From facility_runs when they are current (`from_runs` None), else (or
    False) from the reports."""
    stale = timedelta(seconds=settings.FACILITY_STALE_AFTER)
    params = {
        "start": start,
        "end": end,
        "stale": stale,
        "longest": max(stale, timedelta(seconds=FACILITY_MAX_INTERVAL)),
        "states": list(BAND_STATES),
    }
    with read_connection().cursor() as cursor:
        if from_runs is None:
            from_runs = runs_current(cursor, settings.FACILITY_STALE_AFTER)
        cursor.execute(BAND_RUNS_SQL if from_runs else BAND_REPORTS_SQL, params)
        rows = cursor.fetchall()
    by_state: dict[str, list[tuple[datetime, datetime, str]]] = {s: [] for s in BAND_STATES}
    for slug, status, lo, hi in rows:
        if hi > lo:
            by_state[status].append((lo, hi, slug))
    return [
        Band(lo, hi, status, tuple(sorted(slugs)))
        for status in BAND_STATES
        for lo, hi, slugs in _merge(by_state[status])
    ]
