"""The stats registry: one small class per stat, all of the same shape.

Each stat has a name, title, description, its own parameters (besides the
shared window: period, since, until, res, tz) and `compute(window, filters,
source)` returning columns and rows. The same definition feeds the chart on
a page (`figure`), `GET /api/v1/stats/<name>` (JSON or CSV) and the CSV/JSON
links under every chart. Adding a stat means adding one class here, with
`@register`, and its test in tests/dashboards/test_stats.py.

`source="raw"` computes from the `events` table alone, bypassing every
pre-aggregate; the default uses them where they pay. Both give equal answers
(tests/dashboards/test_preaggregates.py).
"""

import csv
import hashlib
import io
import json
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.utils import timezone

from audit import catalog
from audit.catalog import ENTITY_KINDS as ENTITY_KIND_SPECS
from dashboards import queries
from sphere_stats.windows import Window

ENTITY_KINDS = ("user", "organization", "project", "experiment")
PALETTE = {
    "user": "#2563eb",
    "organization": "#7c3aed",
    "project": "#16a34a",
    "experiment": "#d97706",
    "succeeded": "#16a34a",
    "failed": "#dc2626",
}


class StatError(ValueError):
    """A bad stat parameter; `field` names it for the 400 answer."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


@dataclass(frozen=True)
class Param:
    name: str
    description: str
    type: str = "string"  # string, integer, boolean, string[]
    default: Any = None
    choices: tuple[str, ...] = ()
    minimum: int | None = None
    maximum: int | None = None
    required: bool = False

    def parse(self, query) -> Any:
        if self.type == "string[]":
            values = [v for v in query.getlist(self.name) if v]
            for value in values:
                if self.choices and value not in self.choices:
                    raise StatError(self.name, f"unknown value {value!r}")
            return values
        raw = (query.get(self.name) or "").strip()
        if not raw:
            if self.required:
                raise StatError(self.name, "is required")
            return self.default
        if self.type == "integer":
            try:
                value = int(raw)
            except ValueError:
                raise StatError(self.name, "must be an integer") from None
            if (self.minimum is not None and value < self.minimum) or (
                self.maximum is not None and value > self.maximum
            ):
                raise StatError(self.name, f"must be between {self.minimum} and {self.maximum}")
            return value
        if self.type == "boolean":
            if raw.lower() in ("true", "1", "yes"):
                return True
            if raw.lower() in ("false", "0", "no"):
                return False
            raise StatError(self.name, "must be true or false")
        if self.choices and raw not in self.choices:
            raise StatError(self.name, f"must be one of {', '.join(self.choices)}")
        if len(raw) > 255:
            raise StatError(self.name, "is longer than 255 characters")
        return raw

    def describe(self) -> dict:
        return {
            "name": self.name,
            "type": self.type,
            "description": self.description,
            "default": self.default,
            "choices": list(self.choices),
            "required": self.required,
            "minimum": self.minimum,
            "maximum": self.maximum,
        }


@dataclass(frozen=True)
class Column:
    name: str
    type: str = "string"  # string, integer, number, datetime
    # Entity kind the values name, so pages can link them.
    link: str = ""


@dataclass
class Result:
    columns: list[Column]
    rows: list[list[Any]]
    extra: dict[str, Any] = field(default_factory=dict)

    def dicts(self) -> list[dict[str, Any]]:
        names = [c.name for c in self.columns]
        return [dict(zip(names, row, strict=True)) for row in self.rows]


def _cell(value: Any, window: Window) -> Any:
    if isinstance(value, datetime):
        return window.local(value).isoformat()
    return value


def serialize_rows(result: Result, window: Window) -> list[list[Any]]:
    """Rows with datetimes as ISO 8601 in the display zone."""
    return [[_cell(v, window) for v in row] for row in result.rows]


def to_csv(result: Result, window: Window) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow([c.name for c in result.columns])
    for row in serialize_rows(result, window):
        writer.writerow(["" if v is None else v for v in row])
    return out.getvalue()


N = Param("n", "how many rows (top-N)", "integer", 10, minimum=1, maximum=100)
# "How many logins failed and for whom" wants every user, not a top-N: 0
# lifts the cap (the download links on /top/ ask for it).
N_OR_ALL = Param(
    "n",
    "how many users, most failures first; 0 for every user",
    "integer",
    10,
    minimum=0,
    maximum=100,
)
ENTITY_PARAMS = (
    Param("kind", "entity kind", choices=ENTITY_KINDS, required=True),
    Param("name", "entity name", required=True),
    Param("project", "the experiment's project (experiments only)", default=""),
)


class Stat:
    name = ""
    title = ""
    description = ""
    chart = "table"  # line, bar, heatmap, table, cards
    params: tuple[Param, ...] = ()
    uses_preaggregates = False

    def compute(self, window: Window, filters: dict[str, Any], source: str = "auto") -> Result:
        raise NotImplementedError

    def result(self, window: Window, filters: dict[str, Any], source: str = "auto") -> Result:
        """compute(), kept in Django's cache for STATS_CACHE_SECONDS.

        Pages, the JSON and the CSV of a stat read it through here, so a
        dashboard that several people (or one auto-refreshing tab) look at
        costs one computation per window per TTL. `source=raw`, the check
        against the table, is never cached.
        """
        ttl = settings.STATS_CACHE_SECONDS
        if source != "auto" or ttl <= 0:
            return self.compute(window, filters, source)
        key = _cache_key(self.name, window, filters, ttl)
        found = cache.get(key)
        if found is None:
            found = self.compute(window, filters, source)
            cache.set(key, found, ttl)
        return found

    def figure(self, result: Result, window: Window) -> dict | None:
        return None

    def parse(self, query) -> dict[str, Any]:
        filters = {p.name: p.parse(query) for p in self.params}
        if filters.get("kind") == "experiment" and not filters.get("project"):
            raise StatError("project", "is required for an experiment")
        return filters

    def describe(self) -> dict:
        return {
            "name": self.name,
            "title": self.title,
            "description": self.description,
            "chart": self.chart,
            "parameters": [p.describe() for p in self.params],
            "uses_preaggregates": self.uses_preaggregates,
        }


def _cache_key(name: str, window: Window, filters: dict[str, Any], ttl: int) -> str:
    # A relative window ("last 30 days") moves with the clock: its key names
    # the period and a TTL-long time slot, so an answer is never older than
    # the TTL. A custom range is keyed by both its ends, always: two ranges
    # from one `since` to different `until`s have different buckets. One
    # that ends in the future or within the last TTL can still gain events,
    # so it takes the slot as well. (A range without `until` ends at its
    # request's clock, so it is in effect computed afresh every time.)
    now = timezone.now()
    slot = int(now.timestamp() // ttl)
    if window.period == "custom":
        span = [window.start.isoformat(), window.end.isoformat()]
        if window.end > now - timedelta(seconds=ttl):
            span.append(slot)
    else:
        span = [window.period, slot]
    parts = [name, *span, window.resolution, window.zone.key, sorted(filters.items())]
    digest = hashlib.sha256(json.dumps(parts, default=str).encode()).hexdigest()
    return f"stat:{digest}"


STATS: dict[str, Stat] = {}


def register(cls: type[Stat]) -> type[Stat]:
    assert cls.name and cls.name not in STATS, cls.name
    STATS[cls.name] = cls()
    return cls


def get(name: str) -> Stat | None:
    return STATS.get(name)


# --- figure helpers -------------------------------------------------------------------


def _x(moment: datetime, window: Window) -> str:
    # Local wall time, so the axis reads in the display zone.
    return window.local(moment).strftime("%Y-%m-%d %H:%M")


def _layout(**extra) -> dict:
    layout = {
        "margin": {"l": 50, "r": 20, "t": 10, "b": 40},
        "height": 300,
        "legend": {"orientation": "h", "y": -0.2},
        "paper_bgcolor": "rgba(0,0,0,0)",
        "plot_bgcolor": "rgba(0,0,0,0)",
        "xaxis": {"gridcolor": "#e3e8ef"},
        "yaxis": {"gridcolor": "#e3e8ef", "rangemode": "tozero"},
        "hovermode": "x unified",
    }
    layout.update(extra)
    return layout


# --- cards ------------------------------------------------------------------------------

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
        before, after = queries.entity_counts_at([window.start, window.end], kinds, source)
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
        for _, event_type, success, n in queries.event_counts(
            window, bucketed=False, source=source
        ):
            totals["events"] += n
            if not success:
                totals["failures"] += n
            if event_type == "user_login":
                totals["logins_succeeded" if success else "logins_failed"] += n
        return {
            "logins_succeeded": totals["logins_succeeded"],
            "logins_failed": totals["logins_failed"],
            "login_users": queries.distinct_login_users(window, source),
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


# --- charts --------------------------------------------------------------------------------


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

    def compute(self, window, filters, source="auto"):
        growth = queries.entity_growth(window, ENTITY_KINDS, source)
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

    def figure(self, result, window):
        x = [_x(r[0], window) for r in result.rows]
        traces = [
            {
                "type": "scatter",
                "mode": "lines",
                "name": column.name,
                "x": x,
                "y": [r[i] for r in result.rows],
                "line": {"color": PALETTE[kind], "shape": "hv"},
            }
            for i, (column, kind) in enumerate(
                zip(result.columns[1:], ENTITY_KINDS, strict=True), start=1
            )
        ]
        return {"data": traces, "layout": _layout()}


@register
class EventsByType(Stat):
    name = "events_by_type"
    title = "Events per bucket, by type"
    description = "Events received per bucket, stacked by event type."
    chart = "bar"
    uses_preaggregates = True
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
            unknown = sorted(set(uncatalogued) - queries.seen_event_types(uncatalogued))
            if unknown:
                raise StatError(
                    "event_type",
                    f"unknown event type {unknown[0]!r}: not in the catalog and in no event",
                )
        return filters

    def compute(self, window, filters, source="auto"):
        counts = defaultdict(int)
        for bucket, event_type, _, n in queries.event_counts(
            window, types=filters.get("event_type"), success=filters.get("success"), source=source
        ):
            counts[bucket, event_type] += n
        rows = [[b, t, n] for (b, t), n in sorted(counts.items())]
        return Result(
            [Column("bucket", "datetime"), Column("event_type"), Column("events", "integer")], rows
        )

    def figure(self, result, window):
        by_type: dict[str, dict[str, int]] = defaultdict(dict)
        totals: dict[str, int] = defaultdict(int)
        for bucket, event_type, n in result.rows:
            by_type[event_type][_x(bucket, window)] = n
            totals[event_type] += n
        order = sorted(by_type, key=lambda t: (-totals[t], t))
        # The eight busiest types by name, the rest as one "other" layer.
        if len(order) > 9:
            other: dict[str, int] = defaultdict(int)
            for t in order[8:]:
                for x, n in by_type.pop(t).items():
                    other[x] += n
            order = [*order[:8], "other"]
            by_type["other"] = dict(sorted(other.items()))
        traces = [
            {
                "type": "bar",
                "name": t,
                "x": list(by_type[t]),
                "y": list(by_type[t].values()),
            }
            for t in order
        ]
        layout = _layout(barmode="stack", hovermode="closest", bargap=0.1)
        layout["legend"] = {"orientation": "v", "x": 1.02, "y": 1, "font": {"size": 11}}
        layout["margin"] = {"l": 50, "r": 10, "t": 10, "b": 40}
        return {"data": traces, "layout": layout}


@register
class Logins(Stat):
    name = "logins"
    title = "Logins, succeeded and failed"
    description = "Login attempts per bucket, by outcome."
    chart = "bar"
    uses_preaggregates = True

    def compute(self, window, filters, source="auto"):
        counts: dict[datetime, list[int]] = {}
        for bucket in queries.buckets(window):
            counts[bucket] = [0, 0]
        for bucket, _, success, n in queries.event_counts(
            window, types=["user_login"], source=source
        ):
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

    def figure(self, result, window):
        x = [_x(r[0], window) for r in result.rows]
        traces = [
            {
                "type": "bar",
                "name": name,
                "x": x,
                "y": [r[i] for r in result.rows],
                "marker": {"color": PALETTE[name]},
            }
            for i, name in ((1, "succeeded"), (2, "failed"))
        ]
        return {"data": traces, "layout": _layout(barmode="stack")}


@register
class ActiveUsers(Stat):
    name = "active_users"
    title = "Daily, weekly and monthly active users"
    description = (
        "Distinct users with a successful login per day, week (from Monday) and calendar "
        "month of the display time zone; the first and last weeks and months are cut to "
        "the period."
    )
    chart = "line"
    uses_preaggregates = True

    def compute(self, window, filters, source="auto"):
        rows = [list(r) for r in queries.active_users(window, source)]
        return Result(
            [Column("per"), Column("bucket", "datetime"), Column("users", "integer")], rows
        )

    def figure(self, result, window):
        traces = []
        for per, label, color in (
            ("day", "daily", "#2563eb"),
            ("week", "weekly", "#16a34a"),
            ("month", "monthly", "#7c3aed"),
        ):
            rows = [r for r in result.rows if r[0] == per]
            traces.append(
                {
                    "type": "scatter",
                    "mode": "lines+markers" if len(rows) < 40 else "lines",
                    "name": label,
                    "x": [_x(r[1], window) for r in rows],
                    "y": [r[2] for r in rows],
                    "line": {"color": color, "shape": "hv"},
                }
            )
        return {"data": traces, "layout": _layout()}


# --- top-N ---------------------------------------------------------------------------------


@register
class TopUsers(Stat):
    name = "top_users"
    title = "Most active users"
    description = "Users by the events they caused in the period (logins, changes, requests)."
    params = (N,)
    uses_preaggregates = True

    def compute(self, window, filters, source="auto"):
        rows = [list(r) for r in queries.top_callers(window, filters["n"], source)]
        return Result(
            [
                Column("user", link="user"),
                Column("events", "integer"),
                Column("logins", "integer"),
                Column("failures", "integer"),
            ],
            rows,
        )


@register
class TopProjects(Stat):
    name = "top_projects"
    title = "Most active projects"
    description = (
        "Projects by events about them or naming them (payload.project), experiments "
        "created, realizations or materializations in the period."
    )
    params = (
        N,
        Param("by", "what to rank by", default="events", choices=tuple(queries.PROJECT_MEASURES)),
    )

    uses_preaggregates = True

    def compute(self, window, filters, source="auto"):
        rows = [list(r) for r in queries.top_projects(window, filters["n"], filters["by"], source)]
        return Result(
            [
                Column("project", link="project"),
                Column("events", "integer"),
                Column("experiments", "integer"),
                Column("realizations", "integer"),
                Column("materializations", "integer"),
            ],
            rows,
        )


@register
class TopOrgs(Stat):
    name = "top_orgs"
    title = "Organizations by members"
    description = (
        "Organizations existing at the end of the period by their user and project "
        "members then, reconstructed from membership events."
    )
    params = (N,)
    uses_preaggregates = True

    def compute(self, window, filters, source="auto"):
        rows = [list(r) for r in queries.top_orgs_by_members(filters["n"], window.end, source)]
        return Result(
            [
                Column("organization", link="organization"),
                Column("user_members", "integer"),
                Column("project_members", "integer"),
            ],
            rows,
        )


@register
class TopFacilities(Stat):
    name = "top_facilities"
    title = "Facilities by allocations"
    description = "Successful realization and materialization allocations per facility."
    params = (N,)

    def compute(self, window, filters, source="auto"):
        rows = [list(r) for r in queries.top_facilities(window, filters["n"])]
        return Result(
            [
                Column("facility", link="facility"),
                Column("realizations", "integer"),
                Column("materializations", "integer"),
                Column("failed", "integer"),
            ],
            rows,
        )


@register
class FailuresByType(Stat):
    name = "failures_by_type"
    title = "Event types by failures"
    description = "Failed events per event type in the period, with the failure rate."
    uses_preaggregates = True
    params = (N,)

    def compute(self, window, filters, source="auto"):
        totals: dict[str, list[int]] = defaultdict(lambda: [0, 0])
        for _, event_type, success, n in queries.event_counts(
            window, bucketed=False, source=source
        ):
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


@register
class TopErrors(Stat):
    name = "top_errors"
    title = "Most frequent error messages"
    description = "Error messages of failed events in the period, most frequent first."
    params = (N,)

    def compute(self, window, filters, source="auto"):
        rows = [list(r) for r in queries.top_errors(window, filters["n"])]
        return Result(
            [
                Column("error_message"),
                Column("event_type"),
                Column("count", "integer"),
                Column("last_seen", "datetime"),
            ],
            rows,
        )


@register
class FailedLogins(Stat):
    name = "failed_logins"
    title = "Failed logins by user"
    description = "Who failed to log in during the period, how often, and the last error."
    params = (N_OR_ALL,)

    def compute(self, window, filters, source="auto"):
        found = queries.failed_logins(window, filters["n"] or None)
        rows = [list(r[:4]) for r in found]
        return Result(
            [
                Column("user", link="user"),
                Column("failures", "integer"),
                Column("last_attempt", "datetime"),
                Column("last_error"),
            ],
            rows,
            # How many users failed in all, so a page showing the top N can say so.
            {"total": found[0][4] if found else 0, "total_of": "users"},
        )


# --- one entity ------------------------------------------------------------------------------


def activity_year_start(window: Window) -> datetime:
    """Local midnight 52 full weeks plus this week ago (the heatmap's first
    Monday) in the display zone."""
    today = window.local(window.end).date()
    first = today - timedelta(days=today.weekday() + 52 * 7)
    return datetime.combine(first, datetime.min.time(), tzinfo=window.zone).astimezone(UTC)


@register
class EntityActivity(Stat):
    name = "entity_activity"
    title = "Activity over the last year"
    description = (
        "Events per day involving one user, organization, project or experiment over the "
        "53 weeks up to the end of the period (the calendar heatmap)."
    )
    chart = "heatmap"
    params = ENTITY_PARAMS
    uses_preaggregates = True

    def compute(self, window, filters, source="auto"):
        rows = queries.entity_daily(
            filters["kind"],
            filters["name"],
            filters["project"],
            window.tz_name,
            activity_year_start(window),
            window.end,
            source,
        )
        return Result(
            [Column("day", "datetime"), Column("events", "integer")], [list(r) for r in rows]
        )

    def figure(self, result, window):
        start = window.local(activity_year_start(window)).date()
        counts = {window.local(day).date(): n for day, n in result.rows}
        weeks = 53
        z = [[None] * weeks for _ in range(7)]
        text = [[""] * weeks for _ in range(7)]
        x = [(start + timedelta(weeks=w)).isoformat() for w in range(weeks)]
        end = window.local(window.end).date()
        for w in range(weeks):
            for d in range(7):
                day = start + timedelta(weeks=w, days=d)
                if day <= end:
                    z[d][w] = counts.get(day, 0)
                    text[d][w] = f"{day:%a %Y-%m-%d}: {z[d][w]} events"
        return {
            "data": [
                {
                    "type": "heatmap",
                    "x": x,
                    "y": ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"],
                    "z": z,
                    "text": text,
                    "hoverinfo": "text",
                    "xgap": 3,
                    "ygap": 3,
                    "showscale": False,
                    "colorscale": [
                        [0, "#ebedf0"],
                        [0.01, "#c6e48b"],
                        [0.3, "#7bc96f"],
                        [0.6, "#239a3b"],
                        [1, "#196127"],
                    ],
                }
            ],
            "layout": _layout(
                height=190,
                margin={"l": 40, "r": 10, "t": 10, "b": 30},
                yaxis={"autorange": "reversed", "fixedrange": True},
                xaxis={"type": "date", "tickformat": "%b", "dtick": "M1", "fixedrange": True},
                hovermode="closest",
            ),
        }


@register
class EntityEvents(Stat):
    name = "entity_events"
    title = "Events in the period"
    description = "Events per type involving one user, organization, project or experiment."
    params = ENTITY_PARAMS

    def compute(self, window, filters, source="auto"):
        rows = [
            [t, ok, bad, (catalog.get(t).description if catalog.get(t) else "uncatalogued")]
            for t, ok, bad in queries.entity_type_counts(
                filters["kind"], filters["name"], filters["project"], window, source
            )
        ]
        return Result(
            [
                Column("event_type"),
                Column("succeeded", "integer"),
                Column("failed", "integer"),
                Column("description"),
            ],
            rows,
        )
