"""Entities existing: how many users, organizations, projects and
experiments were in each state at a moment (the overview's cards) and at the
end of each bucket (the growth chart).

They read entity_changes_monthly, _daily and _hourly (how many entities
entered and left each state per UTC month, day and hour, written by
triggers on entity_intervals, audit migrations 0008, 0027 and 0030) and
entity_intervals for the partial hours; source="raw" replays the
lifecycle events instead (audit.aggregates.computed_intervals).
"""

from collections import defaultdict
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from psycopg import sql

from audit import aggregates, catalog
from audit.buckets import HourPlan, bucket_of, bucket_starts, fetch, unit_floor
from audit.catalog import ENTITY_KINDS as ENTITY_KIND_SPECS
from audit.models import EntityInterval
from dashboards.charts import GRID, PALETTE, Overlay, Series, layout, time_figure, time_traces, x_of
from dashboards.stats.event_counts import MOVED_RUNS, daily_plan
from dashboards.stats.registry import ENTITY_KINDS, NO_OPTIONS, Column, Result, Stat, register
from sphere_stats.windows import Window, utc_floor

INTERVALS = sql.Identifier(EntityInterval._meta.db_table)
# Written by triggers on entity_intervals (audit migrations 0008, 0027, 0030); no model.
CHANGES = aggregates.ENTITY_CHANGES.table
CHANGES_DAILY = aggregates.ENTITY_CHANGES_DAILY.table
CHANGES_MONTHLY = aggregates.ENTITY_CHANGES_MONTHLY.table


def _alive(start: datetime, end: datetime | None, moment: datetime) -> bool:
    # State after every event before `moment` (the window's half-open end).
    return start < moment and (end is None or end >= moment)


def _raw_counts_at(moments: list[datetime], kinds: list[str]) -> list[dict]:
    intervals = aggregates.computed_intervals(kinds)
    answers = []
    for moment in moments:
        counts: dict[tuple[str, str], int] = defaultdict(int)
        for kind, state, start, end in intervals:
            if _alive(start, end, moment):
                counts[kind, state] += 1
        answers.append(dict(counts))
    return answers


# In a state at t = entered it before t - left it before t: the deltas of
# every UTC month before t's (entity_changes_monthly), of the days of t's
# month before t's day (entity_changes_daily), of the hours of t's day
# before t's hour (entity_changes_hourly), and of the intervals
# beginning or ending in t's partial hour (idx_intervals_from,
# idx_intervals_to). Some hundreds of rows a moment, however long the log.
COUNTS_AT_SQL = sql.SQL(
    "SELECT 'hours', f.i, c.kind, c.state, sum(c.delta)::bigint"
    " FROM unnest(%(floors)s::timestamptz[], %(floor_days)s::timestamptz[],"
    "  %(floor_months)s::timestamptz[]) WITH ORDINALITY AS f (floor, day, month, i)"
    " CROSS JOIN LATERAL ("
    "  SELECT kind, state, delta FROM {monthly} WHERE kind = ANY(%(kinds)s) AND month < f.month"
    "  UNION ALL SELECT kind, state, delta FROM {daily}"
    "  WHERE kind = ANY(%(kinds)s) AND day >= f.month AND day < f.day"
    "  UNION ALL SELECT kind, state, delta FROM {hourly}"
    "  WHERE kind = ANY(%(kinds)s) AND hour >= f.day AND hour < f.floor) AS c"
    " GROUP BY 2, 3, 4"
    " UNION ALL SELECT 'edge', m.i, v.kind, v.state, sum(v.d)::bigint"
    " FROM unnest(%(moments)s::timestamptz[], %(moment_floors)s::timestamptz[])"
    "  WITH ORDINALITY AS m (t, floor, i)"
    " CROSS JOIN LATERAL ("
    "  SELECT kind, state, 1 AS d FROM {intervals}"
    "   WHERE kind = ANY(%(kinds)s) AND valid_from >= m.floor AND valid_from < m.t"
    "  UNION ALL SELECT kind, state, -1 FROM {intervals}"
    "   WHERE kind = ANY(%(kinds)s) AND valid_to >= m.floor AND valid_to < m.t) AS v"
    " GROUP BY 2, 3, 4"
).format(
    monthly=sql.Identifier(CHANGES_MONTHLY),
    daily=sql.Identifier(CHANGES_DAILY),
    hourly=sql.Identifier(CHANGES),
    intervals=INTERVALS,
)


def entity_counts_at(
    moments: list[datetime], kinds: Iterable[str], source: str = "auto"
) -> list[dict[tuple[str, str], int]]:
    """For each moment, {(kind, state): entities in that state just before it}."""
    kinds = list(kinds)
    if source == "raw":
        return _raw_counts_at(moments, kinds)
    if not moments:
        return []
    floors = sorted({utc_floor(m, "hour") for m in moments})
    totals: list[dict[tuple[str, str], int]] = [defaultdict(int) for _ in floors]
    edges: dict[tuple[int, str, str], int] = defaultdict(int)
    params = {
        "floors": floors,
        "floor_days": [utc_floor(f, "day") for f in floors],
        "floor_months": [unit_floor(f, "month") for f in floors],
        "kinds": kinds,
        "moments": moments,
        "moment_floors": [utc_floor(m, "hour") for m in moments],
    }
    for part, i, kind, state, n in fetch(COUNTS_AT_SQL, params):
        if part == "hours":
            totals[i - 1][kind, state] += n
        else:
            edges[i - 1, kind, state] += n
    at_floor = dict(zip(floors, totals, strict=True))
    answers = []
    for i, moment in enumerate(moments):
        counts = defaultdict(int, at_floor[utc_floor(moment, "hour")])
        for (j, kind, state), n in edges.items():
            if j == i:
                counts[kind, state] += n
        answers.append({key: n for key, n in counts.items() if n})
    return answers


def _raw_deltas(window: Window, kinds: list[str]) -> dict[tuple[str, datetime], int]:
    """(kind, bucket): entities entered minus left, replayed from `events`."""
    moments = []
    for kind, _state, start, end in aggregates.computed_intervals(kinds):
        for moment, sign in ((start, 1), (end, -1)):
            if moment is not None and window.start <= moment < window.end:
                moments.append((kind, moment, sign))
    # Cut by PostgreSQL too, so both answers share every bucket edge.
    cut = fetch(
        "SELECT date_trunc(%(unit)s, m, %(tz)s) FROM unnest(%(moments)s::timestamptz[])"
        " WITH ORDINALITY AS u(m, i) ORDER BY i",
        {"unit": window.unit, "tz": window.tz_name, "moments": [m for _, m, _ in moments]},
    )
    deltas: dict[tuple[str, datetime], int] = defaultdict(int)
    for (kind, _, sign), (bucket,) in zip(moments, cut, strict=True):
        deltas[kind, bucket] += sign
    return deltas


# The deltas regrouped into buckets as the event counts are (HourPlan,
# daily_plan): a whole UTC day from entity_changes_daily, in the bucket most
# of its hours go to, and its hours that go to another bucket (`moved`: a
# Kolkata day's 5.5) summed from entity_changes_hourly, +d in theirs and -d
# in the day's; the other whole hours from entity_changes_hourly, in runs (a
# split hour counted in its `keep` bucket), and the raw ranges from the
# intervals' ends. Reading those days' 24 hours each instead took 17.5 ms
# against 14.8 for 90 days in Asia/Kolkata at 10M events, 8.7 against 6.2 in
# New York.
GROWTH_SQL = (
    "WITH r AS (SELECT * FROM unnest(%(raw_lo)s::timestamptz[], %(raw_hi)s::timestamptz[],"
    "  %(raw_label)s::timestamptz[], %(raw_keep)s::timestamptz[]) AS r (lo, hi, label, keep)),"
    " ends AS ("
    "  SELECT coalesce(r.label, {at_bucket}) AS b, r.keep, v.kind,"
    "   sum(v.d) AS d FROM r CROSS JOIN LATERAL ("
    "   SELECT kind, valid_from AS at, 1 AS d FROM {intervals}"
    "   WHERE kind = ANY(%(kinds)s) AND valid_from >= r.lo AND valid_from < r.hi"
    "   UNION ALL SELECT kind, valid_to, -1 FROM {intervals}"
    "   WHERE kind = ANY(%(kinds)s) AND valid_to >= r.lo AND valid_to < r.hi OFFSET 0) AS v"
    "  GROUP BY 1, 2, 3),"
    " moved AS ("
    "  SELECT h.kind, m.bucket, m.label, sum(h.delta) AS d"
    f"  FROM {MOVED_RUNS}"
    "  CROSS JOIN LATERAL (SELECT * FROM {hourly}"
    "   WHERE hour >= m.lo AND hour < m.hi AND kind = ANY(%(kinds)s) OFFSET 0) AS h"
    "  GROUP BY 1, 2, 3)"
    " SELECT kind, b, sum(d)::bigint FROM ("
    "  SELECT d.kind, r.label, d.delta"
    "  FROM unnest(%(days)s::timestamptz[], %(day_labels)s::timestamptz[]) AS r (day, label)"
    "  JOIN {daily} AS d ON d.day = r.day"
    "  WHERE d.kind = ANY(%(kinds)s) AND d.day >= %(hours_from)s AND d.day < %(hours_to)s"
    "  UNION ALL SELECT h.kind, {hour_bucket}, h.delta"
    "  FROM unnest(%(hour_lo)s::timestamptz[], %(hour_hi)s::timestamptz[]) AS r (lo, hi)"
    "  JOIN {hourly} AS h ON h.hour >= r.lo AND h.hour < r.hi{split}"
    "  WHERE h.kind = ANY(%(kinds)s) AND h.hour >= %(hours_from)s AND h.hour < %(hours_to)s"
    "{whole_raw}"
    "  UNION ALL SELECT kind, bucket, d FROM moved"
    "  UNION ALL SELECT kind, label, -d FROM moved"
    "  UNION ALL SELECT kind, b, d FROM ends"
    "  UNION ALL SELECT kind, keep, -d FROM ends WHERE keep IS NOT NULL"
    ") AS s (kind, b, d) GROUP BY 1, 2"
)
# Only where the plan has split hours or hours read raw (a zone off the
# whole hour, a DST change): the join and filter cost as much as the read.
GROWTH_SPLIT = (
    " LEFT JOIN unnest(%(split)s::timestamptz[], %(keep)s::timestamptz[]) AS k (hour, keep)"
    " ON k.hour = h.hour"
)
GROWTH_WHOLE_RAW = "  AND h.hour <> ALL(%(whole_raw)s::timestamptz[])"


def _stored_deltas(
    window: Window, kinds: list[str], starts: list[datetime]
) -> dict[tuple[str, datetime], int]:
    """(kind, bucket): entities entered minus left, from entity_changes_daily
    and _hourly, and entity_intervals for the partial hours; `starts`: the
    window's buckets."""
    plan = HourPlan.of(window.start, window.end, window.unit, window.tz_name)
    hour_bucket = bucket_of(sql.SQL("h.hour"))
    if plan.split:
        hour_bucket = sql.SQL("coalesce(k.keep, {})").format(hour_bucket)
    query = sql.SQL(GROWTH_SQL).format(
        at_bucket=bucket_of(sql.SQL("v.at")),
        hour_bucket=hour_bucket,
        split=sql.SQL(GROWTH_SPLIT if plan.split else ""),
        whole_raw=sql.SQL(GROWTH_WHOLE_RAW if plan.whole_raw else ""),
        intervals=INTERVALS,
        hourly=sql.Identifier(CHANGES),
        daily=sql.Identifier(CHANGES_DAILY),
    )
    params = {
        **plan.range_params(),
        **plan.hour_params(),
        "unit": window.unit,
        "tz": window.tz_name,
        "kinds": kinds,
    }
    params |= daily_plan(plan, window, bucketed=True, starts=starts)
    deltas: dict[tuple[str, datetime], int] = defaultdict(int)
    for kind, bucket, delta in fetch(query, params):
        deltas[kind, bucket] += delta
    return deltas


def entity_growth(window: Window, kinds: Iterable[str], source: str = "auto") -> dict:
    """{kind: [entities existing at the end of each bucket]} and the buckets."""
    kinds = list(kinds)
    starts = bucket_starts(window.unit, window.tz_name, window.start, window.end)
    (baseline,) = entity_counts_at([window.start], kinds, source)
    if source == "raw":
        deltas = _raw_deltas(window, kinds)
    else:
        deltas = _stored_deltas(window, kinds, starts)
    series = {}
    for kind in kinds:
        total = sum(n for (k, _), n in baseline.items() if k == kind)
        values = []
        for start in starts:
            total += deltas.get((kind, start), 0)
            values.append(total)
        series[kind] = values
    return {"buckets": starts, "series": series}


# Every state of every entity kind (audit.catalog.ENTITY_KINDS), in order.
CARD_ROWS = tuple(
    (kind.name, state) for kind in ENTITY_KIND_SPECS.values() for state in kind.states
)


@register
class CurrentCounts(Stat):
    name = "current_counts"
    title = "Entities existing now"
    description = (
        "Users, organizations and projects by state (pending, active, frozen), "
        "experiments, and active realizations and materializations at the end of the "
        "period, derived from the events (created, activated, frozen, catalogued minus "
        "declined and deleted; re-creations counted once; an entity first seen in another "
        "event exists from then), with the change since the start of the period."
    )
    chart = "cards"
    uses_preaggregates = True

    def compute(self, window, filters, source="auto"):
        kinds = sorted({k for k, _ in CARD_ROWS})
        before, after = entity_counts_at([window.start, window.end], kinds, source)
        rows = []
        for kind, state in CARD_ROWS:
            now, then = after.get((kind, state), 0), before.get((kind, state), 0)
            rows.append([kind, state, now, then, now - then])
        return Result(
            [
                Column("kind"),
                Column("state"),
                Column("count", "integer"),
                Column("at_period_start", "integer"),
                Column("change", "integer"),
            ],
            rows,
        )


@register
class EntityGrowth(Stat):
    name = "entity_growth"
    title = "Growth of users, organizations, projects and experiments"
    description = (
        "How many users (pending, active or frozen), organizations, projects and "
        "experiments existed at the end of each bucket."
    )
    chart = "line"
    uses_preaggregates = True
    timeseries = True

    def compute(self, window, filters, source="auto"):
        growth = entity_growth(window, ENTITY_KINDS, source)
        rows = [
            [bucket, *(growth["series"][k][i] for k in ENTITY_KINDS)]
            for i, bucket in enumerate(growth["buckets"])
        ]
        return Result(
            [
                Column("bucket", "datetime"),
                Column("users", "integer"),
                Column("organizations", "integer"),
                Column("projects", "integer"),
                Column("experiments", "integer"),
            ],
            rows,
        )

    # Small multiples, two by two: each kind on its own y axis, so the
    # dozens of organizations do not lie flat under thousands of experiments.
    COLUMNS = ((0.0, 0.44), (0.56, 1.0))
    ROWS = ((0.6, 1.0), (0.0, 0.4))
    KIND_TYPES = {kind: list(catalog.lifecycle_types(kind)) for kind in ENTITY_KINDS}

    def _narrow_and_wide(self, layout: dict) -> dict:
        """Relayouts for static/js/charts.js: on a narrow card the four
        charts stand in one column (two abreast, each would be 100 px
        wide), and back when the card widens."""
        narrow: dict[str, Any] = {"height": 820, "legend.y": 1.04}
        wide: dict[str, Any] = {"height": layout["height"], "legend.y": layout["legend"]["y"]}
        gap, tall = 0.1, (1 - 3 * 0.1) / 4
        for i in range(4):
            n = "" if i == 0 else str(i + 1)
            top = 1 - i * (tall + gap)
            narrow[f"xaxis{n}.domain"] = [0, 1]
            narrow[f"yaxis{n}.domain"] = [top - tall, top]
            narrow[f"xaxis{n}.title.text"] = layout["xaxis4"]["title"]["text"] if i == 3 else ""
            wide[f"xaxis{n}.domain"] = layout[f"xaxis{n}"]["domain"]
            wide[f"yaxis{n}.domain"] = layout[f"yaxis{n}"]["domain"]
            wide[f"xaxis{n}.title.text"] = layout[f"xaxis{n}"].get("title", {}).get("text", "")
        return {"narrow": narrow, "wide": wide}

    def _kind_traces(self, result, window, options, i: int, kind: str) -> list[dict]:
        """The line of the i-th column (one kind) on its own axes, and its
        previous period's."""
        n = "" if i == 1 else str(i)
        name = result.columns[i].name
        trace = {
            "type": "scatter",
            "mode": "lines",
            "name": name,
            "x": [x_of(r[0], window) for r in result.rows],
            "y": [r[i] for r in result.rows],
            "xaxis": f"x{n}",
            "yaxis": f"y{n}",
            "line": {"color": PALETTE[kind], "shape": "hv"},
            "showlegend": False,
            "hovertemplate": f"%{{y}} {name} at the end of %{{x}}<extra></extra>",
        }
        lifecycle = {"event_type": self.KIND_TYPES[kind]}
        series = Series(
            trace,
            [r[0] for r in result.rows],
            lifecycle,
            f"%{{y}} {name} at the end of %{{x}}"
            f"<br>Click to list the {kind} lifecycle events<extra></extra>",
        )
        overlay = Overlay(
            lambda rows: [(r[0], r[i]) for r in rows],
            "previous period",
            lifecycle,
            add=False,
            color=PALETTE[kind],
            extra={"xaxis": f"x{n}", "yaxis": f"y{n}", "showlegend": i == 1},
        )
        return time_traces(window, window.unit, options, [series], overlay)

    def _kind_axes(self, result, window, i: int) -> dict:
        """The i-th column's x and y axes, in its place of the two by two
        grid, and its title with the count at the end."""
        n = "" if i == 1 else str(i)
        name = result.columns[i].name
        bottom = (i - 1) // 2 == 1
        last = result.rows[-1][i] if result.rows else 0
        return {
            f"xaxis{n}": {
                "domain": self.COLUMNS[(i - 1) % 2],
                "anchor": f"y{n}",
                "type": "date",
                **GRID,
                **({"matches": "x"} if i > 1 else {}),
                **({"title": {"text": f"Time ({window.tz_name})"}} if bottom else {}),
            },
            f"yaxis{n}": {
                "domain": self.ROWS[(i - 1) // 2],
                "anchor": f"x{n}",
                **GRID,
                "rangemode": "tozero",
                "title": {"text": f"{name} existing"},
            },
            "annotation": {
                "text": f"<b>{name.capitalize()}</b> {last:,} at the end",
                "xref": f"x{n} domain",
                "yref": f"y{n} domain",
                "x": 0,
                "y": 1.02,
                "xanchor": "left",
                "yanchor": "bottom",
                "showarrow": False,
            },
        }

    def figure(self, result, window, options=NO_OPTIONS):
        traces, axes, annotations = [], [], []
        chart = layout(height=440, margin={"l": 60, "r": 20, "t": 50, "b": 50})
        for i, kind in enumerate(ENTITY_KINDS, start=1):
            traces += self._kind_traces(result, window, options, i, kind)
            placed = self._kind_axes(result, window, i)
            annotations.append(placed.pop("annotation"))
            chart.update(placed)
            n = "" if i == 1 else str(i)
            axes.append((f"x{n}", f"y{n} domain"))
        chart["annotations"] = annotations
        chart["legend"] = {"orientation": "h", "x": 0, "y": 1.1, "yanchor": "bottom"}
        chart["meta"] = self._narrow_and_wide(chart)
        return time_figure(traces, chart, window, options.bands, tuple(axes))
