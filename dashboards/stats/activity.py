"""Events over time: per bucket and type, logins by outcome, failures by
type, and the period against the previous one.

They count with dashboards/stats/event_counts.py: whole UTC days from
event_counts_daily, the other whole hours from event_counts_hourly and the
partial hours at both edges of the window from `events`, regrouped into the
buckets of the display zone with date_trunc(unit, hour, zone).
"""

from collections import defaultdict
from collections.abc import Iterable
from datetime import datetime

from psycopg import sql

from audit import catalog
from audit.buckets import bucket_starts, cover, fetch
from audit.models import DailyLoginUser, HourlyLoginUser, MonthlyLoginUser
from dashboards.charts import (
    PALETTE,
    TALLER,
    Overlay,
    Series,
    axes,
    bar,
    layout,
    periodic,
    time_figure,
    time_traces,
    x_of,
)
from dashboards.stats.event_counts import event_counts
from dashboards.stats.registry import (
    NO_OPTIONS,
    Column,
    N,
    Param,
    Result,
    Stat,
    StatError,
    register,
)
from sphere_stats.windows import Window


def seen_event_types(types: Iterable[str]) -> set[str]:
    """Which of `types` some stored event has: one probe of
    idx_events_event_type per type, however many events it has."""
    rows = fetch(
        "SELECT t FROM unnest(%(types)s::text[]) AS t"
        " WHERE EXISTS (SELECT 1 FROM events WHERE event_type = t)",
        {"types": list(types)},
    )
    return {r[0] for r in rows}


# Where distinct_login_users reads each whole UTC unit of a window.
_LOGIN_USERS = {
    "month": (MonthlyLoginUser, "month"),
    "day": (DailyLoginUser, "day"),
    "hour": (HourlyLoginUser, "hour"),
}


def distinct_login_users(window: Window, source: str = "auto") -> int:
    """Distinct users with a successful login in the window: its whole UTC
    months from login_users_monthly, the whole days around them from
    login_users_daily, the whole hours around those from login_users_hourly
    (a year: some 12 rows per user, not 8,760), the partial hours at both
    edges from `events` (idx_events_logins_ts); source="raw" reads every
    login."""
    pieces = (
        [(None, window.start, window.end)]
        if source == "raw"
        else cover(window.start, window.end, ("hour", "day", "month"))
    )
    # UNION, not count(DISTINCT …): PostgreSQL hashes the users instead of
    # sorting every row. Each piece is one range scan of its table's key.
    selects, params = [], {}
    for i, (unit, lo, hi) in enumerate(pieces):
        params |= {f"lo{i}": lo, f"hi{i}": hi}
        if unit is None:
            selects.append(
                sql.SQL(
                    "SELECT subject FROM events WHERE event_type = 'user_login' AND success"
                    " AND timestamp >= {lo} AND timestamp < {hi}"
                ).format(lo=sql.Placeholder(f"lo{i}"), hi=sql.Placeholder(f"hi{i}"))
            )
        else:
            model, column = _LOGIN_USERS[unit]
            selects.append(
                sql.SQL(
                    "SELECT username FROM {table} WHERE {column} >= {lo} AND {column} < {hi}"
                ).format(
                    table=sql.Identifier(model._meta.db_table),
                    column=sql.Identifier(column),
                    lo=sql.Placeholder(f"lo{i}"),
                    hi=sql.Placeholder(f"hi{i}"),
                )
            )
    # UNION removes the duplicates; a lone SELECT needs its own DISTINCT.
    distinct = sql.SQL("count(*)" if len(selects) > 1 else "count(DISTINCT u)")
    query = sql.SQL("SELECT {} FROM ({}) AS users (u)").format(
        distinct, sql.SQL(" UNION ").join(selects)
    )
    return fetch(query, params)[0][0]


def _other_layer(by_type: dict[str, dict[str, int]], order: list[str]) -> dict[str, list[str]]:
    """The eight busiest types by name, the rest as one "other" layer:
    {layer: the types it shows}; `by_type` and `order` are regrouped in place."""
    types = {t: [t] for t in order}
    if len(order) > 9:
        other: dict[str, int] = defaultdict(int)
        for t in order[8:]:
            for x, n in by_type.pop(t).items():
                other[x] += n
        types = {t: [t] for t in order[:8]} | {"other": order[8:]}
        order[8:] = ["other"]
        by_type["other"] = dict(sorted(other.items()))
    return types


# On a narrow card a legend at the side leaves the bars no room.
SIDE_LEGEND = {"orientation": "v", "x": 1.02, "y": 1, "font": {"size": 11}}


def _side_legend_meta(height: int) -> dict:
    return {
        "narrow": {
            "legend.orientation": "h",
            "legend.x": 0,
            "legend.y": 1.02,
            "legend.yanchor": "bottom",
            "height": 420,
        },
        "wide": {
            "legend.orientation": "v",
            "legend.x": 1.02,
            "legend.y": 1,
            "legend.yanchor": "auto",
            "height": height,
        },
    }


@register
class EventsByType(Stat):
    name = "events_by_type"
    title = "Events per bucket, by type"
    description = "Events received per bucket, stacked by event type."
    chart = "bar"
    uses_preaggregates = True
    timeseries = True
    params = (
        Param(
            "event_type",
            "only these event types (repeatable): types of the catalog, or uncatalogued "
            "types that some stored event has",
            "string[]",
            [],
        ),
        Param("success", "only succeeded (true) or failed (false) events", "boolean"),
    )

    def parse(self, query):
        filters = super().parse(query)
        # A misspelt type would answer with empty rows, as if nothing had
        # happened. The catalog cannot be the whole list (ingest stores
        # uncatalogued types too), so a type outside it must exist in events.
        uncatalogued = [t for t in filters["event_type"] if catalog.get(t) is None]
        if uncatalogued:
            unknown = sorted(set(uncatalogued) - seen_event_types(uncatalogued))
            if unknown:
                raise StatError(
                    "event_type",
                    f"unknown event type {unknown[0]!r}: not in the catalog and in no event",
                )
        return filters

    def compute(self, window, filters, source="auto"):
        counts = defaultdict(int)
        for bucket, event_type, _, n in event_counts(
            window, types=filters.get("event_type"), success=filters.get("success"), source=source
        ):
            counts[bucket, event_type] += n
        rows = [[b, t, n] for (b, t), n in sorted(counts.items())]
        return Result(
            [Column("bucket", "datetime"), Column("event_type"), Column("events", "integer")], rows
        )

    def figure(self, result, window, options=NO_OPTIONS):
        by_type: dict[str, dict[str, int]] = defaultdict(dict)
        starts: dict[str, datetime] = {}
        totals: dict[str, int] = defaultdict(int)
        for bucket, event_type, n in result.rows:
            x = x_of(bucket, window)
            by_type[event_type][x] = n
            starts[x] = bucket
            totals[event_type] += n
        order = sorted(by_type, key=lambda t: (-totals[t], t))
        types = _other_layer(by_type, order)
        unit, success = window.unit, options.filters.get("success")
        series = [
            Series(
                bar(t, list(by_type[t]), list(by_type[t].values()), unit),
                [starts[x] for x in by_type[t]],
                {"event_type": types[t], "success": success},
            )
            for t in order
        ]
        overlay = Overlay(
            lambda rows: [(bucket, n) for bucket, _, n in rows],
            "all types, previous period",
            {"event_type": options.filters.get("event_type"), "success": success},
            extra=periodic(unit),
        )
        chart = layout(barmode="stack", bargap=0.1, **axes(window, f"Events per {unit}"))
        chart["legend"] = SIDE_LEGEND
        chart["margin"] = {"l": 60, "r": 10, "t": 10, "b": 50}
        chart["meta"] = _side_legend_meta(chart["height"])
        traces = time_traces(window, unit, options, series, overlay)
        return time_figure(traces, chart, window, options.bands)


@register
class Logins(Stat):
    name = "logins"
    title = "Logins, succeeded and failed"
    description = "Login attempts per bucket, by outcome."
    chart = "bar"
    uses_preaggregates = True
    timeseries = True

    def compute(self, window, filters, source="auto"):
        counts: dict[datetime, list[int]] = {}
        for bucket in bucket_starts(window.unit, window.tz_name, window.start, window.end):
            counts[bucket] = [0, 0]
        for bucket, _, success, n in event_counts(window, types=["user_login"], source=source):
            counts.setdefault(bucket, [0, 0])[0 if success else 1] += n
        rows = [[b, ok, bad] for b, (ok, bad) in sorted(counts.items())]
        return Result(
            [
                Column("bucket", "datetime"),
                Column("succeeded", "integer"),
                Column("failed", "integer"),
            ],
            rows,
        )

    def figure(self, result, window, options=NO_OPTIONS):
        x = [x_of(r[0], window) for r in result.rows]
        unit = window.unit
        series = [
            Series(
                bar(name, x, [r[i] for r in result.rows], unit, PALETTE[name]),
                [r[0] for r in result.rows],
                {"event_type": ["user_login"], "success": name == "succeeded"},
            )
            for i, name in ((1, "succeeded"), (2, "failed"))
        ]
        overlay = Overlay(
            lambda rows: [(r[0], r[1] + r[2]) for r in rows],
            "all logins, previous period",
            {"event_type": ["user_login"]},
            extra=periodic(unit),
        )
        traces = time_traces(window, unit, options, series, overlay)
        chart = layout(barmode="stack", **axes(window, f"Logins per {unit}"), meta=TALLER)
        return time_figure(traces, chart, window, options.bands)


@register
class FailuresByType(Stat):
    name = "failures_by_type"
    title = "Event types by failures"
    description = "Failed events per event type in the period, with the failure rate."
    uses_preaggregates = True
    params = (N,)

    def compute(self, window, filters, source="auto"):
        totals: dict[str, list[int]] = defaultdict(lambda: [0, 0])
        for _, event_type, success, n in event_counts(window, bucketed=False, source=source):
            totals[event_type][0 if success else 1] += n
        rows = [
            [t, bad, ok + bad, round(100.0 * bad / (ok + bad), 2)]
            for t, (ok, bad) in totals.items()
            if bad
        ]
        rows.sort(key=lambda r: (-r[1], r[0]))
        return Result(
            [
                Column("event_type"),
                Column("failures", "integer"),
                Column("events", "integer"),
                Column("failure_rate_percent", "number"),
            ],
            rows[: filters["n"]],
        )


def _change(value: float, previous: float) -> float | None:
    if not previous:
        return None
    return round(100.0 * (value - previous) / previous, 1)


@register
class PeriodSummary(Stat):
    name = "period_summary"
    title = "This period against the previous one"
    description = (
        "Logins succeeded and failed, distinct users who logged in, events received and "
        "the failure rate in the period, beside the previous period of the same length: "
        "the change as a difference (percentage points for the failure rate) and in "
        "percent of the previous value."
    )
    chart = "cards"
    uses_preaggregates = True

    def _measure(self, window, source) -> dict[str, float]:
        totals = defaultdict(int)
        for _, event_type, success, n in event_counts(window, bucketed=False, source=source):
            totals["events"] += n
            if not success:
                totals["failures"] += n
            if event_type == "user_login":
                totals["logins_succeeded" if success else "logins_failed"] += n
        return {
            "logins_succeeded": totals["logins_succeeded"],
            "logins_failed": totals["logins_failed"],
            "login_users": distinct_login_users(window, source),
            "events": totals["events"],
            "failure_rate": round(100.0 * totals["failures"] / totals["events"], 2)
            if totals["events"]
            else 0.0,
        }

    def compute(self, window, filters, source="auto"):
        now, before = self._measure(window, source), self._measure(window.previous(), source)
        # A rate's change reads in points: 3.48% to 3.74% is +0.26 points,
        # while the relative +7.5% looks like a jump in failures.
        rows = [
            [k, now[k], before[k], round(now[k] - before[k], 2), _change(now[k], before[k])]
            for k in now
        ]
        return Result(
            [
                Column("metric"),
                Column("value", "number"),
                Column("previous", "number"),
                Column("change", "number"),
                Column("change_percent", "number"),
            ],
            rows,
        )
