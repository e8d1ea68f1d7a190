"""The stats registry: one small class per stat, all of the same shape.

Each stat has a name, title, description, its own parameters (besides the
shared window: period, since, until, res, tz) and `compute(window, filters,
source)` returning columns and rows. The same definition feeds the chart on
a page (`figure`, which ChartOptions extends with the previous period's
overlay, facility bands and each point's explorer URL), `GET
/api/v1/stats/<name>` (JSON or CSV) and the CSV/JSON links under every chart. Adding a stat means adding one class here, with
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
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from django.conf import settings
from django.core.cache import cache
from django.utils import timezone

from audit import catalog
from audit.catalog import ENTITY_KINDS as ENTITY_KIND_SPECS
from audit.export import neutralise
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


# A text parameter's longest value (names are shorter), and a repeatable
# one's most values: anything past these is no question a page asks.
MAX_TEXT = 255
MAX_VALUES = 200


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
            if len(values) > MAX_VALUES:
                raise StatError(self.name, f"at most {MAX_VALUES} values")
            for value in values:
                if self.choices and value not in self.choices:
                    raise StatError(self.name, f"unknown value {value[:40]!r}")
                if len(value) > MAX_TEXT:
                    raise StatError(self.name, f"is longer than {MAX_TEXT} characters")
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
        if len(raw) > MAX_TEXT:
            raise StatError(self.name, f"is longer than {MAX_TEXT} characters")
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


@dataclass(frozen=True)
class ChartOptions:
    """What a page adds to a stat's figure besides its result.

    `previous`: the same stat over the period just before, drawn dashed and
    aligned on this period's buckets. `explore`: each bar or point carries
    the explorer URL of exactly its bucket in `customdata`, which
    static/js/charts.js opens on a click (only for those who may open the
    explorer). `bands`: facility outages and maintenance (dashboards.bands).
    `filters`: the stat's parameters, which the explorer URLs keep.
    """

    previous: Result | None = None
    explore: bool = False
    bands: tuple = ()
    filters: dict[str, Any] = field(default_factory=dict)


NO_OPTIONS = ChartOptions()


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
        # Names come from events, so from anyone who can cause one: a text
        # cell a spreadsheet would run as a formula gets the export's quote.
        writer.writerow(
            ["" if v is None else neutralise(v) if isinstance(v, str) else v for v in row]
        )
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
    # A chart over time, per bucket: it takes the previous period's overlay
    # and the facility bands (ChartOptions).
    timeseries = False

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

    def figure(
        self, result: Result, window: Window, options: ChartOptions = NO_OPTIONS
    ) -> dict | None:
        """The Plotly figure (a dict) of a result, or None for a table."""
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

EXPLORER = "/events/"
# A bar spans its whole bucket (xperiod, centred with xperiodalignment), so
# a band over 14:00-18:00 lies over the day's bar, not between two bars.
# Weeks are ISO weeks: their period counts from a Monday.
X_PERIODS = {"hour": 3_600_000, "day": 86_400_000, "week": 604_800_000, "month": "M1"}
BAND_COLOURS = {"down": "rgba(220, 38, 38, 0.16)", "maintenance": "rgba(217, 119, 6, 0.18)"}
BAND_EDGES = {"down": "rgba(220, 38, 38, 0.45)", "maintenance": "rgba(217, 119, 6, 0.5)"}
BAND_LABELS = {"down": "Facility down", "maintenance": "Facility maintenance"}
PREVIOUS_COLOUR = "#94a3b8"
# The light scheme's text and grid (the --ink and --line of static/css/app.css);
# static/js/charts.js swaps them for the page's when it is drawn dark.
TEXT_COLOUR = "#1d2733"
GRID = {"gridcolor": "#e3e8ef", "zerolinecolor": "#e3e8ef"}
# On a phone-wide card the legend above takes several lines: a taller chart
# keeps its plot area (static/js/charts.js applies "narrow" there).
TALLER = {"narrow": {"height": 440}, "wide": {"height": 320}}


def _x(moment: datetime, window: Window) -> str:
    # Local wall time, so the axis reads in the display zone.
    return window.local(moment).strftime("%Y-%m-%d %H:%M")


def _wall(moment: datetime, window: Window) -> datetime:
    return window.local(moment).replace(tzinfo=None)


def bucket_end(start: datetime, unit: str, window: Window) -> datetime:
    """Where the bucket of `unit` starting at `start` ends: the next local
    hour, midnight, Monday or first of the month in the display zone, as
    date_trunc cuts them (a local day can last 23 or 25 hours)."""
    if unit == "hour":
        return start + timedelta(hours=1)
    local = _wall(start, window)
    if unit == "day":
        following = local + timedelta(days=1)
    elif unit == "week":
        following = local + timedelta(weeks=1)
    else:
        following = (local.replace(day=1) + timedelta(days=32)).replace(day=1)
    return following.replace(tzinfo=window.zone).astimezone(UTC)


def explorer_bound(moment: datetime, window: Window) -> str:
    """`moment` as the explorer reads since/until: local wall time in the
    window's zone, to the minute when that is exact; with seconds when the
    moment has them (a relative period starts at the request's second); with
    the UTC offset only where the wall time alone would be ambiguous (the
    repeated hour when clocks go back)."""
    local = window.local(moment)
    # fold=0: the explorer reads a wall time as its first occurrence.
    naive = local.replace(tzinfo=None, fold=0)
    text = naive.strftime("%Y-%m-%dT%H:%M")
    if naive.second or naive.microsecond:
        text = naive.isoformat()
    if naive.replace(tzinfo=window.zone).astimezone(UTC) != moment.astimezone(UTC):
        text = local.isoformat()
    return text


def explore_url(window: Window, start: datetime, end: datetime, **filters: Any) -> str:
    """The explorer's URL for the events of [start, end) cut to the window,
    in its zone, with the filters (event_type: a list; success; entity)."""
    params: list[tuple[str, str]] = [
        ("since", explorer_bound(max(start, window.start), window)),
        ("until", explorer_bound(min(end, window.end), window)),
        ("tz", window.tz_name),
    ]
    params += [("event_type", t) for t in filters.get("event_type") or ()]
    if filters.get("success") is not None:
        params.append(("success", "true" if filters["success"] else "false"))
    if filters.get("entity"):
        params.append(("entity", filters["entity"]))
    return f"{EXPLORER}?{urlencode(params)}"


def _truncate(moment: datetime, unit: str) -> datetime:
    """date_trunc on a naive wall time."""
    moment = moment.replace(minute=0, second=0, microsecond=0)
    if unit == "hour":
        return moment
    moment = moment.replace(hour=0)
    if unit == "week":
        return moment - timedelta(days=moment.weekday())
    if unit == "month":
        return moment.replace(day=1)
    return moment


HALF_BUCKET = {
    "hour": timedelta(minutes=30),
    "day": timedelta(hours=12),
    "week": timedelta(days=3, hours=12),
    "month": timedelta(days=15),
}


def aligned_x(bucket: datetime, window: Window, unit: str) -> str | None:
    """The x in this period of a previous-period bucket: shifted by the
    period's length in wall time and rounded to the nearest bucket of this
    period (a custom range across a DST change is an hour shorter in one
    period, and 90 days are not whole weeks). None when it lands before the
    first bucket."""
    previous = window.previous()
    shift = _wall(window.start, window) - _wall(previous.start, window)
    moment = _truncate(_wall(bucket, window) + shift + HALF_BUCKET[unit], unit)
    if moment < _truncate(_wall(window.start, window), unit) or moment >= _wall(window.end, window):
        return None
    return moment.strftime("%Y-%m-%d %H:%M")


def _previous_series(
    points: list[tuple[datetime, float]], window: Window, unit: str, add: bool
) -> dict[str, tuple[float, datetime]]:
    """{x in this period: (value, the previous bucket)}; two previous buckets
    landing on one x are summed when `add` (counts), else the later one
    kept (a level, such as entities existing)."""
    series: dict[str, tuple[float, datetime]] = {}
    for bucket, value in sorted(points, key=lambda p: p[0]):
        x = aligned_x(bucket, window, unit)
        if x is None:
            continue
        if add and x in series:
            value += series[x][0]
        series[x] = (value, bucket)
    return series


def _previous_trace(
    series: dict[str, tuple[float, datetime]],
    window: Window,
    unit: str,
    options: ChartOptions,
    *,
    name: str,
    color: str = PREVIOUS_COLOUR,
    url_filters: dict[str, Any] | None = None,
    **extra: Any,
) -> dict:
    """A dashed, lighter line of the previous period on this one's x."""
    previous = window.previous()
    trace = {
        "type": "scatter",
        "mode": "lines",
        "name": name,
        "x": list(series),
        "y": [v for v, _ in series.values()],
        "text": [_x(b, window) for _, b in series.values()],
        "line": {"color": color, "dash": "dash", "width": 1.5},
        "opacity": 0.75,
        "legendgroup": "previous",
        "hovertemplate": "%{y} in the previous period (%{text})<extra></extra>",
        **extra,
    }
    if options.explore and url_filters is not None:
        trace["customdata"] = [
            explore_url(previous, b, bucket_end(b, unit, window), **url_filters)
            for _, b in series.values()
        ]
        trace["hovertemplate"] = (
            "%{y} in the previous period (%{text})<br>Click to list them<extra></extra>"
        )
    return trace


_CLICK_HOVER = "%{y} events, %{x}<br>Click to list them<extra>%{fullData.name}</extra>"


def _periodic(unit: str) -> dict:
    """A trace's points placed mid-bucket (the bars span their bucket)."""
    return {
        "xperiod": X_PERIODS[unit],
        "xperiodalignment": "middle",
        **({"xperiod0": "2000-01-03"} if unit == "week" else {}),
    }


def _bar(name: str, x: list, y: list, unit: str, color: str | None = None) -> dict:
    trace = {"type": "bar", "name": name, "x": x, "y": y, **_periodic(unit)}
    if color:
        trace["marker"] = {"color": color}
    return trace


def _axes(window: Window, y_title: str, **yaxis: Any) -> dict:
    """The x axis (local time) and y axis of a time chart, titled."""
    return {
        "xaxis": {
            "title": {"text": f"Time ({window.tz_name})"},
            "type": "date",
            **GRID,
            "automargin": True,
        },
        "yaxis": {
            "title": {"text": y_title},
            **GRID,
            "rangemode": "tozero",
            "automargin": True,
            **yaxis,
        },
    }


def _layout(**extra) -> dict:
    layout = {
        "margin": {"l": 60, "r": 20, "t": 30, "b": 50},
        "height": 320,
        # Above the plot: below it, it would cover the x axis' title.
        "legend": {"orientation": "h", "x": 0, "y": 1.02, "yanchor": "bottom"},
        # Transparent: the card's colour shows through, light or dark.
        "paper_bgcolor": "rgba(0,0,0,0)",
        "plot_bgcolor": "rgba(0,0,0,0)",
        "font": {"color": TEXT_COLOUR},
        "xaxis": {**GRID},
        "yaxis": {**GRID, "rangemode": "tozero"},
        # One point per hover, the one under the pointer: a click opens
        # exactly the bar or point the label names.
        "hovermode": "closest",
    }
    layout.update(extra)
    return layout


def _facilities(names: set[str]) -> str:
    listed = sorted(names)
    return ", ".join(listed[:4]) + (f" and {len(listed) - 4} more" if len(listed) > 4 else "")


def _add_bands(
    figure: dict,
    window: Window,
    bands: tuple,
    axes: tuple[tuple[str, str], ...] = (("x", "paper"),),
) -> dict:
    """Facility outages and maintenance as light bands behind the data of
    each (xref, yref) axis pair, and one legend entry per state naming the
    facilities."""
    if not bands:
        return figure
    shapes = figure["layout"].setdefault("shapes", [])
    seen: dict[str, set[str]] = {}
    for band in bands:
        seen.setdefault(band.status, set()).update(band.facilities)
        for xref, yref in axes:
            shapes.append(
                {
                    "type": "rect",
                    "xref": xref,
                    "yref": yref,
                    "x0": window.local(band.start).strftime("%Y-%m-%d %H:%M:%S"),
                    "x1": window.local(band.end).strftime("%Y-%m-%d %H:%M:%S"),
                    "y0": 0,
                    "y1": 1,
                    "fillcolor": BAND_COLOURS[band.status],
                    # An edge keeps an outage of minutes visible on a year.
                    "line": {"color": BAND_EDGES[band.status], "width": 1},
                    "layer": "below",
                }
            )
    for status, names in seen.items():
        # A legend entry without points: shapes have no legend of their own.
        figure["data"].append(
            {
                "type": "scatter",
                "mode": "markers",
                "x": [None],
                "y": [None],
                "name": f"{BAND_LABELS[status]}: {_facilities(names)}",
                "marker": {"symbol": "square", "size": 12, "color": BAND_EDGES[status]},
                "hoverinfo": "skip",
                "legendgroup": "bands",
                "showlegend": True,
            }
        )
    return figure


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
    timeseries = True

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

    # Small multiples, two by two: each kind on its own y axis, so the
    # dozens of organizations do not lie flat under thousands of experiments.
    COLUMNS = ((0.0, 0.44), (0.56, 1.0))
    ROWS = ((0.6, 1.0), (0.0, 0.4))
    KIND_TYPES = {
        kind: [
            n for n, spec in catalog.CATALOG.items() if spec.lifecycle and spec.lifecycle[0] == kind
        ]
        for kind in ENTITY_KINDS
    }

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

    def figure(self, result, window, options=NO_OPTIONS):
        x = [_x(r[0], window) for r in result.rows]
        unit = window.unit
        traces, axes, annotations = [], [], []
        layout = _layout(height=440, margin={"l": 60, "r": 20, "t": 50, "b": 50})
        for i, (column, kind) in enumerate(
            zip(result.columns[1:], ENTITY_KINDS, strict=True), start=1
        ):
            n = "" if i == 1 else str(i)
            xref, yref = f"x{n}", f"y{n}"
            label = column.name.capitalize()
            trace = {
                "type": "scatter",
                "mode": "lines",
                "name": column.name,
                "x": x,
                "y": [r[i] for r in result.rows],
                "xaxis": xref,
                "yaxis": yref,
                "line": {"color": PALETTE[kind], "shape": "hv"},
                "showlegend": False,
                "hovertemplate": f"%{{y}} {column.name} at the end of %{{x}}<extra></extra>",
            }
            if options.explore:
                trace["customdata"] = [
                    explore_url(
                        window,
                        r[0],
                        bucket_end(r[0], unit, window),
                        event_type=self.KIND_TYPES[kind],
                    )
                    for r in result.rows
                ]
                trace["hovertemplate"] = (
                    f"%{{y}} {column.name} at the end of %{{x}}"
                    f"<br>Click to list the {kind} lifecycle events<extra></extra>"
                )
            traces.append(trace)
            if options.previous is not None:
                series = _previous_series(
                    [(r[0], r[i]) for r in options.previous.rows], window, unit, add=False
                )
                traces.append(
                    _previous_trace(
                        series,
                        window,
                        unit,
                        options,
                        name="previous period",
                        color=PALETTE[kind],
                        url_filters={"event_type": self.KIND_TYPES[kind]},
                        xaxis=xref,
                        yaxis=yref,
                        showlegend=i == 1,
                    )
                )
            column_domain = self.COLUMNS[(i - 1) % 2]
            row_domain = self.ROWS[(i - 1) // 2]
            bottom = (i - 1) // 2 == 1
            layout[f"xaxis{n}"] = {
                "domain": column_domain,
                "anchor": yref,
                "type": "date",
                **GRID,
                **({"matches": "x"} if i > 1 else {}),
                **({"title": {"text": f"Time ({window.tz_name})"}} if bottom else {}),
            }
            layout[f"yaxis{n}"] = {
                "domain": row_domain,
                "anchor": xref,
                **GRID,
                "rangemode": "tozero",
                "title": {"text": f"{column.name} existing"},
            }
            last = result.rows[-1][i] if result.rows else 0
            annotations.append(
                {
                    "text": f"<b>{label}</b> {last:,} at the end",
                    "xref": f"{xref} domain",
                    "yref": f"{yref} domain",
                    "x": 0,
                    "y": 1.02,
                    "xanchor": "left",
                    "yanchor": "bottom",
                    "showarrow": False,
                }
            )
            axes.append((xref, f"{yref} domain"))
        layout["annotations"] = annotations
        layout["legend"] = {"orientation": "h", "x": 0, "y": 1.1, "yanchor": "bottom"}
        layout["meta"] = self._narrow_and_wide(layout)
        figure = {"data": traces, "layout": layout}
        return _add_bands(figure, window, options.bands, tuple(axes))


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

    def figure(self, result, window, options=NO_OPTIONS):
        by_type: dict[str, dict[str, int]] = defaultdict(dict)
        starts: dict[str, datetime] = {}
        totals: dict[str, int] = defaultdict(int)
        for bucket, event_type, n in result.rows:
            x = _x(bucket, window)
            by_type[event_type][x] = n
            starts[x] = bucket
            totals[event_type] += n
        order = sorted(by_type, key=lambda t: (-totals[t], t))
        types = {t: [t] for t in order}
        # The eight busiest types by name, the rest as one "other" layer.
        if len(order) > 9:
            other: dict[str, int] = defaultdict(int)
            for t in order[8:]:
                for x, n in by_type.pop(t).items():
                    other[x] += n
            types["other"] = order[8:]
            order = [*order[:8], "other"]
            by_type["other"] = dict(sorted(other.items()))
        unit = window.unit
        success = options.filters.get("success")
        traces = []
        for t in order:
            trace = _bar(t, list(by_type[t]), list(by_type[t].values()), unit)
            if options.explore:
                trace["customdata"] = [
                    explore_url(
                        window,
                        starts[x],
                        bucket_end(starts[x], unit, window),
                        event_type=types[t],
                        success=success,
                    )
                    for x in by_type[t]
                ]
                trace["hovertemplate"] = _CLICK_HOVER
            traces.append(trace)
        if options.previous is not None:
            points: dict[datetime, int] = defaultdict(int)
            for bucket, _, n in options.previous.rows:
                points[bucket] += n
            series = _previous_series(list(points.items()), window, unit, add=True)
            traces.append(
                _previous_trace(
                    series,
                    window,
                    unit,
                    options,
                    name="all types, previous period",
                    url_filters={
                        "event_type": options.filters.get("event_type"),
                        "success": success,
                    },
                    **_periodic(unit),
                )
            )
        layout = _layout(barmode="stack", bargap=0.1, **_axes(window, f"Events per {unit}"))
        layout["legend"] = {"orientation": "v", "x": 1.02, "y": 1, "font": {"size": 11}}
        layout["margin"] = {"l": 60, "r": 10, "t": 10, "b": 50}
        # On a narrow card a legend at the side leaves the bars no room.
        layout["meta"] = {
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
                "height": layout["height"],
            },
        }
        return _add_bands({"data": traces, "layout": layout}, window, options.bands)


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

    def figure(self, result, window, options=NO_OPTIONS):
        x = [_x(r[0], window) for r in result.rows]
        unit = window.unit
        traces = []
        for i, name in ((1, "succeeded"), (2, "failed")):
            trace = _bar(name, x, [r[i] for r in result.rows], unit, PALETTE[name])
            if options.explore:
                trace["customdata"] = [
                    explore_url(
                        window,
                        r[0],
                        bucket_end(r[0], unit, window),
                        event_type=["user_login"],
                        success=name == "succeeded",
                    )
                    for r in result.rows
                ]
                trace["hovertemplate"] = _CLICK_HOVER
            traces.append(trace)
        if options.previous is not None:
            series = _previous_series(
                [(r[0], r[1] + r[2]) for r in options.previous.rows], window, unit, add=True
            )
            traces.append(
                _previous_trace(
                    series,
                    window,
                    unit,
                    options,
                    name="all logins, previous period",
                    url_filters={"event_type": ["user_login"]},
                    **_periodic(unit),
                )
            )
        layout = _layout(barmode="stack", **_axes(window, f"Logins per {unit}"), meta=TALLER)
        return _add_bands({"data": traces, "layout": layout}, window, options.bands)


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
    timeseries = True

    def compute(self, window, filters, source="auto"):
        rows = [list(r) for r in queries.active_users(window, source)]
        return Result(
            [Column("per"), Column("bucket", "datetime"), Column("users", "integer")], rows
        )

    def figure(self, result, window, options=NO_OPTIONS):
        traces = []
        for per, label, color in (
            ("day", "daily", "#2563eb"),
            ("week", "weekly", "#16a34a"),
            ("month", "monthly", "#7c3aed"),
        ):
            rows = [r for r in result.rows if r[0] == per]
            trace = {
                "type": "scatter",
                "mode": "lines+markers" if len(rows) < 40 else "lines",
                "name": label,
                "x": [_x(r[1], window) for r in rows],
                "y": [r[2] for r in rows],
                "line": {"color": color, "shape": "hv"},
                "hovertemplate": f"%{{y}} users logged in, {per} of %{{x}}<extra>{label}</extra>",
            }
            logins = {"event_type": ["user_login"], "success": True}
            if options.explore:
                trace["customdata"] = [
                    explore_url(window, r[1], bucket_end(r[1], per, window), **logins) for r in rows
                ]
                trace["hovertemplate"] = (
                    f"%{{y}} users logged in, {per} of %{{x}}<br>Click to list their logins"
                    f"<extra>{label}</extra>"
                )
            traces.append(trace)
            if options.previous is not None:
                series = _previous_series(
                    [(r[1], r[2]) for r in options.previous.rows if r[0] == per],
                    window,
                    per,
                    add=False,
                )
                traces.append(
                    _previous_trace(
                        series,
                        window,
                        per,
                        options,
                        name=f"{label}, previous period",
                        color=color,
                        url_filters=logins,
                    )
                )
        layout = _layout(**_axes(window, "Users who logged in (distinct)"), meta=TALLER)
        return _add_bands({"data": traces, "layout": layout}, window, options.bands)


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


def activity_first_day(window: Window) -> datetime:
    """Local midnight of the period's first day in the display zone: the
    heatmap shows every day the period touches, each day whole."""
    return _local_midnight(window.local(window.start).date(), window)


def _local_midnight(day, window: Window) -> datetime:
    return datetime.combine(day, datetime.min.time(), tzinfo=window.zone).astimezone(UTC)


def _nice_step(top: int) -> int:
    """An integer tick step giving at most five ticks up to `top` (1, 2, 5, 10, 20, ...)."""
    step = 1
    while top / step > 5:
        for factor in (2, 2.5, 2):
            step = int(step * factor)
            if top / step <= 5:
                break
    return step


WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


def _heat_scale(top: int) -> list:
    """Grey for a day without events, then light to dark green: the grey
    holds below half an event, so the colour key shows it too."""
    zero = 0.5 / top
    return [
        [0, "#ebedf0"],
        [zero, "#ebedf0"],
        [zero, "#c6e48b"],
        [max(zero, 0.3), "#7bc96f"],
        [max(zero, 0.6), "#239a3b"],
        [1, "#196127"],
    ]


@register
class EntityActivity(Stat):
    name = "entity_activity"
    title = "Activity per day"
    description = (
        "Events per day involving one user, organization, project or experiment on every "
        "day of the display time zone that the period touches, each day whole (the "
        "calendar heatmap: a column per week, from Monday)."
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
            activity_first_day(window),
            window.end,
            source,
        )
        return Result(
            [Column("day", "datetime"), Column("events", "integer")], [list(r) for r in rows]
        )

    def figure(self, result, window, options=NO_OPTIONS):
        first = window.local(activity_first_day(window)).date()
        last = window.local(window.end - timedelta(microseconds=1)).date()
        monday = first - timedelta(days=first.weekday())
        weeks = (last - monday).days // 7 + 1
        counts = {window.local(day).date(): n for day, n in result.rows}
        z = [[None] * weeks for _ in range(7)]
        text = [[""] * weeks for _ in range(7)]
        urls = [[""] * weeks for _ in range(7)]
        entity = ""
        if options.explore and options.filters.get("kind"):
            kind, name, project = (options.filters[k] for k in ("kind", "name", "project"))
            entity = f"{kind}:{project}/{name}" if kind == "experiment" else f"{kind}:{name}"
        # Each cell is a whole local day (entity_daily counts days whole),
        # so its explorer range is not cut to the period's edges.
        days = replace(
            window,
            start=activity_first_day(window),
            end=bucket_end(_local_midnight(last, window), "day", window),
        )
        for w in range(weeks):
            for d in range(7):
                day = monday + timedelta(weeks=w, days=d)
                if first <= day <= last:
                    z[d][w] = counts.get(day, 0)
                    text[d][w] = f"{day:%a %Y-%m-%d}: {z[d][w]} events"
                    if entity:
                        start = _local_midnight(day, window)
                        end = bucket_end(start, "day", window)
                        urls[d][w] = explore_url(days, start, end, entity=entity)
        # A column per week, labelled by its Monday. Over a short period
        # every week gets a tick ("Mar 02"); over a long one, the first week
        # of each month ("Mar").
        mondays = [monday + timedelta(weeks=w) for w in range(weeks)]
        x = [m.isoformat() for m in mondays]
        if weeks <= 10:
            ticks = [(m.isoformat(), f"{m:%b %d}") for m in mondays]
        else:
            starts = [w for w, m in enumerate(mondays) if w == 0 or m.month != mondays[w - 1].month]
            # A first month shown for a week or two would print over the next.
            if len(starts) > 1 and starts[1] - starts[0] < 3:
                starts.pop(0)
            ticks = [
                (x[w], f"{mondays[w]:%b}" if mondays[w].month != 1 else f"{mondays[w]:%b %Y}")
                for w in starts
            ]
        top = max([1, *counts.values()])
        trace = {
            "type": "heatmap",
            "x": x,
            "y": list(WEEKDAYS),
            "z": z,
            "text": text,
            "hovertemplate": "%{text}<extra></extra>",
            "xgap": 3,
            "ygap": 3,
            "zmin": 0,
            "colorscale": _heat_scale(top),
            "zmax": top,
            # The key below the grid, left, where the eye already is (a
            # year's grid and a week's end at different widths).
            "colorbar": {
                "title": {"text": "Events per day", "side": "right"},
                "orientation": "h",
                "x": 0,
                "xanchor": "left",
                "y": -0.5,
                "yanchor": "top",
                "lenmode": "pixels",
                "len": 220,
                "thickness": 10,
                "outlinewidth": 0,
                "tick0": 0,
                "dtick": _nice_step(top),
            },
        }
        if options.explore and entity:
            trace["customdata"] = urls
            trace["hovertemplate"] = "%{text}<br>Click to list them<extra></extra>"
        return {
            "data": [trace],
            "layout": _layout(
                height=270,
                margin={"l": 60, "r": 10, "t": 10, "b": 100},
                yaxis={
                    "autorange": "reversed",
                    "fixedrange": True,
                    # Square cells: a week's column as wide as a day's row is tall.
                    "scaleanchor": "x",
                    "scaleratio": 1,
                    "constrain": "domain",
                    "title": {"text": "Day of week"},
                    "automargin": True,
                    **GRID,
                },
                xaxis={
                    "type": "category",
                    "fixedrange": True,
                    "constrain": "domain",
                    "constraintoward": "left",
                    "tickvals": [t for t, _ in ticks],
                    "ticktext": [label for _, label in ticks],
                    "title": {"text": f"Week from Monday ({window.tz_name})"},
                    "showgrid": False,
                    **GRID,
                },
                # On a phone a year's squares would be specks: rows fill the height.
                meta={
                    "narrow": {"yaxis.scaleanchor": False, "xaxis.tickangle": -45},
                    "wide": {"yaxis.scaleanchor": "x", "xaxis.tickangle": "auto"},
                },
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
