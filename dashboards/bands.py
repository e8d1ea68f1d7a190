"""Facility outages and maintenance windows over a period, for the time charts.

A `facility_status` report holds from its timestamp until the next report of
its facility, but for at most its hold time (its payload.interval, never less
than FACILITY_STALE_AFTER; facilities/status.py):
the same rule the map and the uptime bars follow, so a band on a chart
covers exactly the time the uptime bar shows red (down) or in the
maintenance colour. The runs of all facilities are merged per state: a chart
draws one band where any facility was down, naming the facilities.
"""

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings

from audit.catalog import FACILITY_MAX_INTERVAL
from facilities.models import hold_sql, interval_sql
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
    SELECT subject, timestamp, payload->>'status' AS status, {interval_sql("payload")} AS interval
    FROM events
    WHERE event_type = '{STATUS_EVENT}' AND subject_type = 'facility'
      AND timestamp >= %(start)s AND timestamp < %(end)s
    UNION ALL
    (SELECT DISTINCT ON (subject) subject, timestamp, payload->>'status', {interval_sql("payload")}
     FROM events
     WHERE event_type = '{STATUS_EVENT}' AND subject_type = 'facility'
       AND timestamp < %(start)s AND timestamp >= %(start)s - %(longest)s
     ORDER BY subject, timestamp DESC)
), timed AS (
    SELECT subject, timestamp, status, interval,
           lead(timestamp) OVER (PARTITION BY subject ORDER BY timestamp) AS next_report
    FROM reports
)
SELECT subject, status, greatest(timestamp, %(start)s) AS lo,
       least(coalesce(next_report, %(end)s), timestamp + {hold_sql("interval")}, %(end)s) AS hi
FROM timed
WHERE status = ANY(%(states)s)
ORDER BY subject, timestamp
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


def facility_bands(start: datetime, end: datetime) -> list[Band]:
    """The outages and maintenance windows of every facility in [start, end),
    per state, overlapping ones merged; in time order within each state."""
    stale = timedelta(seconds=settings.FACILITY_STALE_AFTER)
    params = {
        "start": start,
        "end": end,
        "stale": stale,
        "longest": max(stale, timedelta(seconds=FACILITY_MAX_INTERVAL)),
        "states": list(BAND_STATES),
    }
    with read_connection().cursor() as cursor:
        cursor.execute(BAND_REPORTS_SQL, params)
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
