import json
from functools import partial
from typing import Any

from django.conf import settings
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.cache import patch_vary_headers
from django.utils.http import urlencode
from django.utils.safestring import SafeString, mark_safe
from django.views.decorators.http import require_GET
from plotly.utils import PlotlyJSONEncoder

from audit.filters import FilterError, decode_cursor, encode_cursor
from audit.models import Entity, Event, newest_of
from dashboards.bands import Band, facility_bands
from dashboards.entities import (
    KINDS,
    ending_event,
    entity_url,
    find,
    first_event,
    suggestions,
)
from dashboards.parallel import by_name, in_parallel
from dashboards.stats import STATS, ChartOptions, Result, StatError, first_event_time
from dashboards.stats.entity import members, memberships_of
from sphere_stats.roles import Role, has_role, role_required
from sphere_stats.windows import Window

TIMELINE_PAGE = 50
# `compare=previous` overlays the previous period on the time charts.
COMPARE_PREVIOUS = "previous"
CHART_CONFIG = {"displaylogo": False, "responsive": True, "modeBarButtonsToRemove": ["lasso2d"]}
_PLURALS = {
    "user": "users",
    "organization": "organizations",
    "project": "projects",
    "experiment": "experiments",
    "realization": "realizations",
    "materialization": "materializations",
}
# A kind's states on its card, the usual one first: "380 active · 25 pending · 7 frozen".
STATE_ORDER = ("active", "pending", "frozen")
# What a state means, for the badge on an entity page and the card's tooltip.
STATE_HELP = {
    "pending": "created, waiting for approval",
    "active": "exists and can be used",
    "frozen": "exists but cannot be used",
    "exists": "",
    "gone": "declined or deleted",
}


def _card_label(kind: str, states: tuple[str, ...]) -> str:
    """A card's title: the kind's plural for one with several states (their
    sum) or only "exists" (Experiments), else the state and the plural
    (Active realizations)."""
    plural = _PLURALS[kind].capitalize()
    if len(states) > 1 or states == ("exists",):
        return plural
    return f"{states[0].capitalize()} {_PLURALS[kind]}"


def entity_cards(rows: list[list]) -> list[dict[str, Any]]:
    """The overview's cards from current_counts rows (kind, state, count,
    at_period_start, change): one per kind, its states summed, with the count
    and change of each state beside the total when it has several."""
    by_kind: dict[str, list[tuple[str, int, int]]] = {}
    for kind, state, count, _, change in rows:
        by_kind.setdefault(kind, []).append((state, count, change))
    cards = []
    for kind, states in by_kind.items():
        states.sort(key=lambda s: STATE_ORDER.index(s[0]) if s[0] in STATE_ORDER else 99)
        change = sum(c for _, _, c in states)
        cards.append(
            {
                "kind": kind,
                "label": _card_label(kind, tuple(s for s, _, _ in states)),
                "value": sum(n for _, n, _ in states),
                "change": change,
                "delta": _delta(change, True),
                "states": [
                    {"state": state, "count": n, "change": c, "help": STATE_HELP.get(state, "")}
                    for state, n, c in states
                ]
                if len(states) > 1
                else [],
            }
        )
    return cards


SUMMARY_LABELS = {
    "logins_succeeded": ("Logins succeeded", True),
    "logins_failed": ("Logins failed", False),
    "login_users": ("Users who logged in", True),
    "events": ("Events received", True),
    "failure_rate": ("Failure rate %", False),
}
# Metrics that are percentages: their cards show the change in percentage
# points, since a percent of a percent misleads.
PERCENT_METRICS = ("failure_rate",)
TOP_STATS = (
    "top_projects",
    "top_users",
    "failed_logins",
    "top_orgs",
    "top_facilities",
    "failures_by_type",
    "top_errors",
)
# The same, the longest first: the rest take a few milliseconds each.
TOP_LONGEST_FIRST = ("failed_logins", "top_projects", "top_users", "top_orgs", *TOP_STATS[4:])


def _window(request: HttpRequest) -> tuple[Window, str]:
    """The request's window and a page-wide message (always empty now).

    A bad parameter is replaced by its default alone and its error rides on
    the window (`window.errors`): the window controls show it beside its
    field, and the rest of the view stays as asked."""
    window = Window.forgiving(request.GET, earliest=first_event_time, limit_buckets=True)
    return window, ""


def _page(
    request: HttpRequest, template: str, partial: str, context: dict, status: int = 200
) -> HttpResponse:
    """The full page, or only its body for an htmx request.

    The body carries the window controls out of band (`oob_controls`): they
    sit outside the swapped region, and unless they are re-rendered with
    each body, the copy htmx keeps for the Back button shows the period of
    the first load. A history restore (Back after htmx's cache lost the
    page) swaps the whole <body>, so it gets the full page.
    """
    if request.htmx and not request.htmx.history_restore_request:
        response = render(request, partial, {**context, "oob_controls": True}, status=status)
    else:
        response = render(request, template, context, status=status)
    patch_vary_headers(response, ["HX-Request", "HX-History-Restore-Request"])
    return response


def _links(name: str, window: Window, filters: dict[str, Any]) -> dict[str, str]:
    params = window.params(**{k: v for k, v in filters.items() if v not in (None, "", [])})
    url = f"{reverse('api:stat', kwargs={'name': name})}?{urlencode(params, doseq=True)}"
    return {
        "json": url,
        "csv": f"{url}&format=csv",
    }


def run_stat(
    stat_name: str,
    window: Window,
    *,
    compare: bool = False,
    explore: bool = False,
    bands: tuple[Band, ...] = (),
    **filters: Any,
) -> dict[str, Any]:
    """One stat computed for a page: its result, chart HTML and data links.

    A chart over time also takes the previous period's overlay (`compare`),
    the facility bands, and, for those who may open the explorer, the
    explorer URL of each bar or point (`explore`)."""
    stat = STATS[stat_name]
    name = stat.name
    for param in stat.params:
        filters.setdefault(param.name, param.default)
    result: Result = stat.result(window, filters)
    options = ChartOptions(
        previous=stat.result(window.previous(), filters) if compare and stat.timeseries else None,
        explore=explore,
        bands=bands if stat.timeseries else (),
        filters=filters,
    )
    figure = stat.figure(result, window, options)
    total = result.extra.get("total")
    # A stat that counts all its rows (failed_logins) takes n=0 for "every
    # row": the page shows the top N, its downloads hold them all.
    links = _links(name, window, filters if total is None else {**filters, "n": 0})
    return {
        "stat": stat,
        "result": result,
        "rows": result.rows,
        "columns": result.columns,
        "figure": chart_json(figure) if figure is not None else "",
        "height": figure["layout"].get("height", 300) if figure is not None else 0,
        "links": links,
        "total": total,
        "truncated": total is not None and total > len(result.rows),
        "empty": not any(result.rows),
    }


# What json_script escapes: the JSON then cannot end its <script> element.
_SCRIPT_ESCAPES = (("<", "\\u003C"), (">", "\\u003E"), ("&", "\\u0026"))


def chart_json(figure: dict) -> SafeString:
    """A figure and its Plotly config as JSON for a <script type="application/json">.

    static/js/charts.js draws it, the charts in view first and the rest when
    the browser is idle: the page's load event does not wait on Plotly, and
    the page holds no inline script (a Content-Security-Policy can forbid them).
    """
    text = json.dumps(
        {
            "data": figure.get("data", []),
            "layout": figure.get("layout", {}),
            "config": CHART_CONFIG,
        },
        cls=PlotlyJSONEncoder,
        separators=(",", ":"),
    )
    # str.replace, not str.translate: translate looks up every character
    # in Python (17 ms for a 90-day overview's 390 kB of charts).
    for char, escape in _SCRIPT_ESCAPES:
        text = text.replace(char, escape)
    return mark_safe(text)  # noqa: S308 (escaped above, as json_script does)


def _chart_controls(request: HttpRequest, compare: bool) -> dict[str, Any]:
    """What the toggle above the charts shows: the previous-period overlay's
    state, and whether a click on a chart opens the explorer."""
    return {
        "compare": compare,
        "compare_value": COMPARE_PREVIOUS,
        "charts_clickable": has_role(request.user, Role.ANALYST),
    }


def _delta(change: float | None, higher_is_better: bool) -> str:
    if not change:
        return "flat"
    return "up" if (change > 0) == higher_is_better else "down"


@require_GET
@role_required(Role.VIEWER)
def overview(request: HttpRequest) -> HttpResponse:
    window, error = _window(request)
    chart_options = {
        "compare": request.GET.get("compare") == COMPARE_PREVIOUS,
        "explore": has_role(request.user, Role.ANALYST),
        "bands": tuple(facility_bands(window.start, window.end)),
    }
    charts = ("entity_growth", "events_by_type", "logins", "active_users")
    # The longest first (a year at 10M in Asia/Kolkata: the active users
    # 41 ms, the top projects 21, the events by type 20, the summary 15, the
    # growth 10, the logins 8, the cards 2), STATS_WIDTH + 1 at a time: one
    # more than the top-N page, since a chart's figure is Python, which runs
    # beside the others' SQL. Each thread takes the next as it finishes one,
    # so a long stat never starts last and keeps the page waiting for it alone.
    calls = {
        "active_users": partial(run_stat, "active_users", window, **chart_options),
        "top_projects": partial(run_stat, "top_projects", window, n=5),
        "events_by_type": partial(run_stat, "events_by_type", window, **chart_options),
        "period_summary": partial(run_stat, "period_summary", window),
        "entity_growth": partial(run_stat, "entity_growth", window, **chart_options),
        "logins": partial(run_stat, "logins", window, **chart_options),
        "current_counts": partial(run_stat, "current_counts", window),
    }
    done = by_name(calls, width=settings.STATS_WIDTH + 1)
    current, summary, top_projects = (
        done["current_counts"],
        done["period_summary"],
        done["top_projects"],
    )
    drawn = [done[name] for name in charts]
    cards = entity_cards(current["rows"])
    period_cards = [
        {
            "label": SUMMARY_LABELS[metric][0],
            "value": value,
            "previous": previous,
            "change": change,
            "points": difference if metric in PERCENT_METRICS else None,
            "delta": _delta(
                difference if metric in PERCENT_METRICS else change, SUMMARY_LABELS[metric][1]
            ),
        }
        for metric, value, previous, difference, change in summary["rows"]
    ]
    context = {
        "window": window,
        "error": error,
        "cards": cards,
        "period_cards": period_cards,
        "current": current,
        "summary": summary,
        "charts": drawn,
        "top_projects": top_projects,
        **_chart_controls(request, chart_options["compare"]),
    }
    return _page(request, "dashboards/overview.html", "dashboards/_overview_body.html", context)


@require_GET
@role_required(Role.VIEWER)
def top(request: HttpRequest) -> HttpResponse:
    window, error = _window(request)
    try:
        n = STATS["top_users"].parse(request.GET)["n"]
        by = STATS["top_projects"].parse(request.GET)["by"]
    except StatError as exc:
        error, n, by = f"{exc.field}: {exc.message}", 10, "events"
    # Its stats are all SQL: STATS_WIDTH at a time (one per CPU of the
    # database server), the longest first (a year at 10M: the failed logins
    # 46 ms, the projects 23, the users 15, the orgs 14, the rest 2-7 each),
    # so that the failed logins have a CPU to themselves; shown in TOP_STATS'
    # order.
    calls = {
        name: partial(run_stat, name, window, n=n, **({"by": by} if name == "top_projects" else {}))
        for name in TOP_LONGEST_FIRST
    }
    done = by_name(calls, width=settings.STATS_WIDTH)
    tables = [done[name] for name in TOP_STATS]
    context = {"window": window, "error": error, "n": n, "by": by, "tables": tables}
    return _page(request, "dashboards/top.html", "dashboards/_top_body.html", context)


def _timeline_page(request: HttpRequest, kind: str, name: str, project: str) -> dict[str, Any]:
    parts = Event.objects.involving_parts(kind, name, project)
    cursor = request.GET.get("cursor", "")
    if cursor:
        try:
            older = decode_cursor(cursor)
        except FilterError:
            raise Http404("That timeline cursor is not one this server issued.") from None
        parts = [part.before(*older) for part in parts]
    events = newest_of(parts, TIMELINE_PAGE + 1)
    more = len(events) > TIMELINE_PAGE
    events = events[:TIMELINE_PAGE]
    next_url = ""
    if more:
        last = events[-1]
        base = entity_url(kind, name, project) + "timeline/"
        cursor = encode_cursor(last.timestamp, last.event_uuid)
        tz = request.GET.get("tz") or "UTC"
        next_url = f"{base}?{urlencode({'cursor': cursor, 'tz': tz})}"
    return {"events": events, "next_url": next_url}


def _entity_stats(request: HttpRequest, window: Window, filters: dict) -> list[dict[str, Any]]:
    """An entity page's events by type and activity heatmap, side by side,
    the events by type first: a busy user's is the longer (at 10M events
    the busiest user's: 55 ms, and 26 for the heatmap in Asia/Kolkata). A
    day's cell opens the explorer on that day's events, for analysts."""
    explore = has_role(request.user, Role.ANALYST)
    return in_parallel(
        [
            partial(run_stat, "entity_events", window, **filters),
            partial(run_stat, "entity_activity", window, explore=explore, **filters),
        ]
    )


def _entity_context(
    request: HttpRequest, kind: str, name: str, project: str
) -> tuple[dict[str, Any], bool]:
    window, error = _window(request)
    scope = project if kind == "experiment" else ""
    entity = Entity.objects.filter(kind=kind, scope=scope, name=name).first()
    known = entity is not None or Event.objects.involving(kind, name, project).exists()
    context: dict[str, Any] = {
        "window": window,
        "error": error,
        "kind": kind,
        "kind_label": KINDS[kind]["label"],
        "name": name,
        "project": project,
        "entity": entity,
        "known": known,
        "page_url": entity_url(kind, name, project),
    }
    if not known:
        return context, False
    if entity is not None:
        context["state_help"] = STATE_HELP.get(entity.state, "")
        ended_by = ending_event(entity)
        context["ended_by"] = ended_by
        # "declined" or "deleted", from org_declined, user_deleted, ...
        context["ended_how"] = ended_by.event_type.rsplit("_", 1)[-1] if ended_by else "ended"
        if entity.predates_log:
            context["first_event"] = first_event(entity)
    filters = {"kind": kind, "name": name, "project": project}
    context["counts"], context["heatmap"] = _entity_stats(request, window, filters)
    if kind in ("organization", "project") and entity and entity.state != Entity.GONE:
        context["members"] = members(kind, name, entity.since)
    if kind == "project":
        context["experiments"] = (
            Entity.objects.current().filter(kind="experiment", scope=name).order_by("name")
        )
    if kind == "user":
        context["memberships"] = memberships_of(name)
    context["is_analyst"] = has_role(request.user, Role.ANALYST)
    if context["is_analyst"]:
        context["timeline"] = _timeline_page(request, kind, name, project)
        # The timeline's own rows (audit's involving, all time) in its time zone.
        named = f"{kind}:{project}/{name}" if kind == "experiment" else f"{kind}:{name}"
        context["export_query"] = urlencode(
            {"entity": named, "period": "all", "tz": window.tz_name}
        )
    return context, True


def _entity_page(request: HttpRequest, kind: str, name: str, project: str = "") -> HttpResponse:
    context, known = _entity_context(request, kind, name, project)
    return _page(
        request,
        "dashboards/entity.html",
        "dashboards/_entity_body.html",
        context,
        status=200 if known else 404,
    )


@require_GET
@role_required(Role.VIEWER)
def user_page(request: HttpRequest, name: str) -> HttpResponse:
    return _entity_page(request, "user", name)


@require_GET
@role_required(Role.VIEWER)
def org_page(request: HttpRequest, name: str) -> HttpResponse:
    return _entity_page(request, "organization", name)


@require_GET
@role_required(Role.VIEWER)
def project_page(request: HttpRequest, name: str) -> HttpResponse:
    return _entity_page(request, "project", name)


@require_GET
@role_required(Role.VIEWER)
def experiment_page(request: HttpRequest, project: str, name: str) -> HttpResponse:
    return _entity_page(request, "experiment", name, project)


@require_GET
@role_required(Role.ANALYST)
def timeline(request: HttpRequest, kind: str, name: str, project: str = "") -> HttpResponse:
    """Older pages of an entity's timeline (the "Older events" link)."""
    window, _ = _window(request)
    context = {
        "timeline": _timeline_page(request, kind, name, project),
        "kind": kind,
        "window": window,
    }
    if request.htmx:
        response = render(request, "dashboards/_timeline_rows.html", context)
    else:
        context.update(
            {"name": name, "project": project, "page_url": entity_url(kind, name, project)}
        )
        context["kind_label"] = KINDS[kind]["label"]
        response = render(request, "dashboards/timeline.html", context)
    patch_vary_headers(response, ["HX-Request"])
    return response


@require_GET
@role_required(Role.VIEWER)
def search_suggest(request: HttpRequest) -> HttpResponse:
    """<option> elements for the navigation search's <datalist>."""
    query = request.GET.get("q", "").strip()
    options = suggestions(query) if query else []
    response = render(request, "dashboards/_suggestions.html", {"options": options})
    patch_vary_headers(response, ["HX-Request"])
    return response


@require_GET
@role_required(Role.VIEWER)
def search(request: HttpRequest) -> HttpResponse:
    """Jump to the one entity the query names, or list the candidates."""
    query = request.GET.get("q", "").strip()
    exact, partial = find(query) if query else ([], [])
    if len(exact) == 1:
        return redirect(exact[0]["url"])
    if not exact and len(partial) == 1:
        return redirect(partial[0]["url"])
    return render(
        request,
        "dashboards/search.html",
        {"q": query, "matches": exact + [m for m in partial if m not in exact]},
    )
