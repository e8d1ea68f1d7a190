"""The pieces every stat's Plotly figure is built from: layout and axes in
the page's colours, bars spanning their bucket, facility bands, and for a
chart over time the explorer URL of each point and the previous period's
line (`time_traces`, which every time chart draws its traces through).

Figures are plain dicts; static/js/charts.js draws them with the vendored
plotly.js and swaps the light colours for the dark scheme's.
"""

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from django.urls import get_script_prefix, reverse

from sphere_stats.windows import Window

if TYPE_CHECKING:
    from dashboards.stats.registry import ChartOptions

PALETTE = {
    "user": "#2563eb",
    "organization": "#7c3aed",
    "project": "#16a34a",
    "experiment": "#d97706",
    "succeeded": "#16a34a",
    "failed": "#dc2626",
}
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


def x_of(moment: datetime, window: Window) -> str:
    # Local wall time, so the axis reads in the display zone.
    return _x_text(moment, window.zone)


# A year's page places some 2,400 points, mostly on the same buckets.
@lru_cache(maxsize=8192)
def _x_text(moment: datetime, zone: ZoneInfo) -> str:
    return moment.astimezone(zone).strftime("%Y-%m-%d %H:%M")


def wall(moment: datetime, window: Window) -> datetime:
    return window.local(moment).replace(tzinfo=None)


def bucket_end(start: datetime, unit: str, window: Window) -> datetime:
    """Where the bucket of `unit` starting at `start` ends: the next local
    hour, midnight, Monday or first of the month in the display zone, as
    date_trunc cuts them (a local day can last 23 or 25 hours)."""
    return _bucket_end(start, unit, window.zone)


def _bucket_end(start: datetime, unit: str, zone: ZoneInfo) -> datetime:
    if unit == "hour":
        return start + timedelta(hours=1)
    local = start.astimezone(zone).replace(tzinfo=None)
    if unit == "day":
        following = local + timedelta(days=1)
    elif unit == "week":
        following = local + timedelta(weeks=1)
    else:
        following = (local.replace(day=1) + timedelta(days=32)).replace(day=1)
    return following.replace(tzinfo=zone).astimezone(UTC)


def explorer_bound(moment: datetime, window: Window) -> str:
    """`moment` as the explorer reads since/until: local wall time in the
    window's zone, to the minute when that is exact; with seconds when the
    moment has them (a relative period starts at the request's second); with
    the UTC offset only where the wall time alone would be ambiguous (the
    repeated hour when clocks go back)."""
    return _bound_text(moment, window.zone)


# Every chart of a page links its buckets to the explorer, and the charts of
# one page share their buckets (a year's page asked for 750 bounds, 33 ms of
# its Python): each moment's text is made once per zone and process.
@lru_cache(maxsize=8192)
def _bound_text(moment: datetime, zone: ZoneInfo) -> str:
    local = moment.astimezone(zone)
    # fold=0: the explorer reads a wall time as its first occurrence.
    naive = local.replace(tzinfo=None, fold=0)
    text = naive.strftime("%Y-%m-%dT%H:%M")
    if naive.second or naive.microsecond:
        text = naive.isoformat()
    if naive.replace(tzinfo=zone).astimezone(UTC) != moment.astimezone(UTC):
        text = local.isoformat()
    return text


def explore_url(window: Window, start: datetime, end: datetime, **filters: Any) -> str:
    """The explorer's URL for the events of [start, end) cut to the window,
    in its zone, with the filters (event_type: a list; success; entity)."""
    return _explore_link(window, _encoded_bounds(window, start, end), filters)


def _encoded_bounds(window: Window, start: datetime, end: datetime) -> str:
    return _bounds_query(max(start, window.start), min(end, window.end), window.zone)


# Every series of a chart (events by type has one per type), and every chart
# of a page, has the same buckets: each bucket's since/until is found and
# encoded once (a year's overview links 760 points of 190 buckets).
@lru_cache(maxsize=8192)
def _bucket_query(start: datetime, unit: str, zone: ZoneInfo, lo: datetime, hi: datetime) -> str:
    end = _bucket_end(start, unit, zone)
    return _bounds_query(max(start, lo), min(end, hi), zone)


@lru_cache(maxsize=8192)
def _bounds_query(since: datetime, until: datetime, zone: ZoneInfo) -> str:
    return urlencode([("since", _bound_text(since, zone)), ("until", _bound_text(until, zone))])


def _explore_link(window: Window, bounds: str, filters: dict[str, Any]) -> str:
    path, rest = _link_parts(window, filters)
    return f"{path}{bounds}&{rest}"


def _link_parts(window: Window, filters: dict[str, Any]) -> tuple[str, str]:
    """An explorer link's text before its bounds and after them."""
    rest = _explore_filters(
        window.tz_name,
        tuple(filters.get("event_type") or ()),
        filters.get("success"),
        filters.get("entity") or "",
    )
    return f"{_explorer_path(get_script_prefix())}?", rest


@lru_cache(maxsize=8)
def _explorer_path(script_prefix: str) -> str:
    # reverse() costs 0.1 ms, once per point of every chart: once per prefix.
    return reverse("explorer")


@lru_cache(maxsize=1024)
def _explore_filters(
    tz_name: str, types: tuple[str, ...], success: bool | None, entity: str
) -> str:
    # The same for every point of a series (a chart has hundreds): encoded once.
    params = [("tz", tz_name), *(("event_type", t) for t in types)]
    if success is not None:
        params.append(("success", "true" if success else "false"))
    if entity:
        params.append(("entity", entity))
    return urlencode(params)


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
    shift = wall(window.start, window) - wall(previous.start, window)
    moment = _truncate(wall(bucket, window) + shift + HALF_BUCKET[unit], unit)
    if moment < _truncate(wall(window.start, window), unit) or moment >= wall(window.end, window):
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
    options: "ChartOptions",
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
        "text": [x_of(b, window) for _, b in series.values()],
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


CLICK_HOVER = "%{y} events, %{x}<br>Click to list them<extra>%{fullData.name}</extra>"


@dataclass
class Series:
    """One trace of a chart over time, and the bucket each of its points
    stands for: a click opens that bucket's events in the explorer, with
    `url_filters` (event_type: a list; success; entity)."""

    trace: dict
    starts: list[datetime]
    url_filters: dict[str, Any]
    click_hover: str = ""


@dataclass
class Overlay:
    """The previous period's line of a chart over time: `points` reads
    (bucket, value) pairs from the previous period's rows; with `add`, two
    previous buckets landing on one x are summed (counts), else the later
    one is kept (a level, such as entities existing)."""

    points: Callable[[list[list]], list[tuple[datetime, float]]]
    name: str
    url_filters: dict[str, Any]
    add: bool = True
    color: str = PREVIOUS_COLOUR
    extra: dict[str, Any] = field(default_factory=dict)


def time_traces(
    window: Window,
    unit: str,
    options: "ChartOptions",
    series: list[Series],
    overlay: Overlay | None = None,
) -> list[dict]:
    """The traces of a chart over time: each series, whose points carry
    their bucket's explorer URL in `customdata` when `options.explore`; then
    the previous period's dashed line when `options.previous`."""
    traces = []
    for one in series:
        if options.explore:
            # The path and filters are the series' own, found once (the
            # script prefix is a context-local lookup: 2 µs a point).
            path, rest = _link_parts(window, one.url_filters)
            zone, lo, hi = window.zone, window.start, window.end
            one.trace["customdata"] = [
                f"{path}{_bucket_query(start, unit, zone, lo, hi)}&{rest}" for start in one.starts
            ]
            one.trace["hovertemplate"] = one.click_hover or CLICK_HOVER
        traces.append(one.trace)
    if overlay is not None and options.previous is not None:
        points = overlay.points(options.previous.rows)
        traces.append(
            _previous_trace(
                _previous_series(points, window, unit, overlay.add),
                window,
                unit,
                options,
                name=overlay.name,
                color=overlay.color,
                url_filters=overlay.url_filters,
                **overlay.extra,
            )
        )
    return traces


def periodic(unit: str) -> dict:
    """A trace's points placed mid-bucket (the bars span their bucket)."""
    return {
        "xperiod": X_PERIODS[unit],
        "xperiodalignment": "middle",
        **({"xperiod0": "2000-01-03"} if unit == "week" else {}),
    }


def bar(name: str, x: list, y: list, unit: str, color: str | None = None) -> dict:
    trace = {"type": "bar", "name": name, "x": x, "y": y, **periodic(unit)}
    if color:
        trace["marker"] = {"color": color}
    return trace


def axes(window: Window, y_title: str, **yaxis: Any) -> dict:
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


def layout(**extra) -> dict:
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


def time_figure(
    traces: list[dict],
    chart: dict,
    window: Window,
    bands: tuple,
    axes: tuple[tuple[str, str], ...] = (("x", "paper"),),
) -> dict:
    """A time chart's figure: its traces and layout with the facility bands
    (add_bands). A chart without a single point spans the window on each x
    axis: Plotly's empty date axis would show the year 2000."""
    if not any(x is not None for trace in traces for x in trace.get("x", ())):
        for name in [key for key in chart if key.startswith("xaxis")]:
            chart[name]["range"] = [x_of(window.start, window), x_of(window.end, window)]
    return add_bands({"data": traces, "layout": chart}, window, bands, axes)


def add_bands(
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
