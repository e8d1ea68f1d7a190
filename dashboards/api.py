"""The stats API (mounted under /api/v1/): every stat of the registry as JSON
or CSV, and what an entity page shows about one user, organization, project
or experiment."""

import csv
import io
from datetime import datetime
from typing import Annotated, Any, Literal

from django.http import HttpRequest, HttpResponse
from django.urls import reverse
from ninja import Field, Query, Router, Schema
from ninja.security import SessionAuth
from pydantic import WithJsonSchema, create_model

from audit.models import Entity, Event
from dashboards.entities import entity_url
from dashboards.stats import (
    SOURCES,
    STATS,
    Param,
    Stat,
    StatError,
    first_event_time,
    serialize_rows,
    to_csv,
)
from dashboards.stats import entity as entity_stats
from sphere_stats.api import ERRORS, ApiError, chosen_format, token_auth, varies_on_accept
from sphere_stats.roles import Role, has_role
from sphere_stats.windows import MAX_BUCKETS, PERIODS, RESOLUTIONS, Window, WindowError

router = Router(tags=["stats"])


class ViewerSession(SessionAuth):
    """A logged-in viewer (the CSV/JSON links under the charts)."""

    def authenticate(self, request: HttpRequest, key: str | None) -> Any:
        return request.user if has_role(request.user, Role.VIEWER) else None


AUTH = [ViewerSession(), *token_auth("read")]


class StatParam(Schema):
    name: str
    type: str
    description: str
    default: Any = None
    choices: list[str] = []
    required: bool = False
    minimum: int | None = None
    maximum: int | None = None


class StatInfo(Schema):
    name: str
    title: str
    description: str
    chart: str
    parameters: list[StatParam]
    uses_preaggregates: bool
    url: str


class StatList(Schema):
    window_parameters: list[StatParam]
    stats: list[StatInfo]


class StatColumn(Schema):
    name: str
    type: str


class StatWindow(Schema):
    period: str
    start: datetime
    end: datetime
    resolution: str
    tz: str


class StatOut(Schema):
    name: str
    title: str
    description: str
    window: StatWindow
    parameters: dict[str, Any]
    source: str
    columns: list[StatColumn]
    rows: list[list[Any]]


class StatNames:
    """A stat name's schema: the registered stats as an enum, read from the
    registry each time the schema is generated, so a stat added later is
    listed too. An unknown name still gets the API's 404."""

    def __get_pydantic_json_schema__(self, core_schema, handler) -> dict:
        schema = handler(core_schema)
        schema["enum"] = sorted(STATS)
        return schema


# The window's choices, from sphere_stats.windows, which parses them. The
# schema lists them; Window.from_query still checks them, so a bad value
# gets the window's own 400 naming the parameter.
PERIOD_CHOICES = [*PERIODS, "custom"]
RES_CHOICES = list(RESOLUTIONS)


SINCE_HELP = (
    "custom range start: a date, a date-time, or relative: now, now-45m, now-7d "
    "(units s, m, h, d, w)"
)
UNTIL_HELP = "custom range end (a date includes it; now-1h is relative); default now"
# The formats of a stat, by media type (the default first).
STAT_FORMATS = {"json": "application/json", "csv": "text/csv"}


# A stat parameter's schema by Param.type. The query string is read as text
# and each stat's Param.parse checks it, so a bad value gets the stat's own
# 400 naming it; the schema says what the value means.
PARAM_SCHEMAS: dict[str, dict[str, Any]] = {
    "string": {"type": "string"},
    "integer": {"type": "integer"},
    "boolean": {"type": "boolean"},
    "string[]": {"type": "array", "items": {"type": "string"}},
}


def _param_description(uses: list[tuple[Stat, Param]]) -> str:
    """The parameter's description, or each stat's where they differ."""
    by_text: dict[str, list[str]] = {}
    for stat, param in uses:
        by_text.setdefault(param.description, []).append(stat.name)
    if len(by_text) == 1:
        return next(iter(by_text))
    return "; ".join(f"{', '.join(names)}: {text}" for text, names in by_text.items())


def _param_field(uses: list[tuple[Stat, Param]]) -> tuple[Any, Any]:
    """A query field (type, default) for one parameter name, the union of
    what every stat taking it accepts."""
    params = [param for _, param in uses]
    first = params[0]
    schema = {**PARAM_SCHEMAS[first.type], "description": _param_description(uses)}
    choices = list(dict.fromkeys(c for p in params for c in p.choices))
    if choices:
        (schema["items"] if first.type == "string[]" else schema)["enum"] = choices
    if all(p.minimum is not None for p in params):
        schema["minimum"] = min(p.minimum for p in params)
    if all(p.maximum is not None for p in params):
        schema["maximum"] = max(p.maximum for p in params)
    if len({repr(p.default) for p in params}) == 1 and first.default not in (None, [], ""):
        schema["default"] = first.default
    if first.type == "string[]":
        return Annotated[list[str], WithJsonSchema(schema)], []
    return Annotated[str | None, WithJsonSchema(schema)], None


def stat_query() -> type[Schema]:
    """The query schema of GET /api/v1/stats/{name}: the window's
    parameters, format and source, and every registered stat's own (one
    field per name, whatever stats take it)."""
    uses: dict[str, list[tuple[Stat, Param]]] = {}
    for stat in STATS.values():
        for param in stat.params:
            uses.setdefault(param.name, []).append((stat, param))
    return create_model(
        "StatQuery",
        __base__=Schema,
        period=(str | None, Field(None, json_schema_extra={"enum": PERIOD_CHOICES})),
        since=(str | None, Field(None, description=SINCE_HELP, examples=["now-7d"])),
        until=(str | None, Field(None, description=UNTIL_HELP)),
        res=(str | None, Field(None, json_schema_extra={"enum": RES_CHOICES})),
        tz=(str | None, None),
        format=(
            Literal["json", "csv"],
            Field("json", description="Without format, `Accept: text/csv` picks CSV."),
        ),
        source=(Literal["auto", "raw"], "auto"),
        **{name: _param_field(found) for name, found in uses.items()},
    )


StatQuery = stat_query()


WINDOW_PARAMETERS = [
    StatParam(
        name="period",
        type="string",
        description="last 1h, 24h, 7d, 30d, 90d, 1y, all, or custom (with since/until)",
        default="30d",
        choices=PERIOD_CHOICES,
    ),
    StatParam(name="since", type="string", description=SINCE_HELP),
    StatParam(name="until", type="string", description=UNTIL_HELP),
    StatParam(
        name="res",
        type="string",
        description="bucket size; chosen from the period's length when absent",
        choices=RES_CHOICES,
    ),
    StatParam(name="tz", type="string", description="display time zone (IANA)", default="UTC"),
    StatParam(
        name="format",
        type="string",
        default="json",
        description="json or csv; without it, Accept: text/csv picks csv",
        choices=list(STAT_FORMATS),
    ),
    StatParam(
        name="source",
        type="string",
        default="auto",
        description="raw: compute from the events table alone (slower; for checking)",
        choices=["auto", "raw"],
    ),
]


def stat_url(stat: Stat) -> str:
    return reverse("api:stat", kwargs={"name": stat.name})


def checked_window(query) -> Window:
    """Window.from_query, also refusing ranges with too many buckets (a
    custom range from year 1) and dates PostgreSQL or Python cannot hold."""
    try:
        window = Window.from_query(query, earliest=first_event_time)
    except OverflowError:
        raise WindowError("since", "is out of range") from None
    if window.approximate_buckets() > MAX_BUCKETS:
        raise WindowError("res", f"gives more than {MAX_BUCKETS} buckets: use a coarser one")
    return window


def window_out(window: Window) -> dict[str, Any]:
    """A window as StatWindow: its bounds in its display time zone."""
    return {
        "period": window.period,
        "start": window.local(window.start),
        "end": window.local(window.end),
        "resolution": window.resolution,
        "tz": window.tz_name,
    }


def compute(stat: Stat, request: HttpRequest) -> tuple[Window, dict, Any]:
    """The window, filters and result of one stat for a request's query
    string; raises StatError or WindowError on bad parameters."""
    window = checked_window(request.GET)
    filters = stat.parse(request.GET)
    source = request.GET.get("source") or "auto"
    if source not in SOURCES:
        raise StatError("source", "must be auto or raw")
    return window, filters, stat.result(window, filters, source)


class StatListQuery(Schema):
    format: Literal["json", "csv"] = Field(
        "json", description="Without format, `Accept: text/csv` picks CSV."
    )


STAT_LIST_COLUMNS = ("name", "title", "description", "chart", "parameters", "url")


def _stat_list_csv(stats: list[dict]) -> HttpResponse:
    """One row per stat; its parameters' names in one cell, space-separated."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(STAT_LIST_COLUMNS)
    for stat in stats:
        names = " ".join(p["name"] for p in stat["parameters"])
        writer.writerow([names if c == "parameters" else stat[c] for c in STAT_LIST_COLUMNS])
    response = HttpResponse(out.getvalue(), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = 'attachment; filename="stats.csv"'
    return response


@router.get(
    "/stats/",
    response={200: StatList, **ERRORS},
    auth=AUTH,
    url_name="stats",
    openapi_extra={
        "responses": {
            200: {
                "description": "Every stat as JSON, or as CSV (one row per stat) with "
                "format=csv or Accept: text/csv.",
                "content": {
                    "application/json": {"schema": {"$ref": "#/components/schemas/StatList"}},
                    "text/csv": {"schema": {"type": "string"}},
                },
            }
        }
    },
)
def list_stats(request: HttpRequest, query: Query[StatListQuery], response: HttpResponse) -> Any:
    """Every stat with its parameters and URL (plugin discovery)."""
    stats = [{**stat.describe(), "url": stat_url(stat)} for stat in STATS.values()]
    if chosen_format(request, STAT_FORMATS) == "csv":
        return varies_on_accept(_stat_list_csv(stats))
    varies_on_accept(response)
    return {"window_parameters": WINDOW_PARAMETERS, "stats": stats}


@router.get(
    "/stats/{name}",
    response={200: StatOut, **ERRORS},
    auth=AUTH,
    url_name="stat",
    openapi_extra={
        "responses": {
            200: {
                "description": "The stat as JSON, or as CSV with format=csv or Accept: text/csv.",
                "content": {
                    "application/json": {"schema": {"$ref": "#/components/schemas/StatOut"}},
                    "text/csv": {"schema": {"type": "string"}},
                },
            }
        }
    },
)
def get_stat(
    request: HttpRequest,
    name: Annotated[str, StatNames()],
    query: Query[StatQuery],
    response: HttpResponse,
) -> Any:
    """One stat over a window: columns and rows (JSON), or CSV with format=csv
    or `Accept: text/csv`."""
    stat = STATS.get(name)
    if stat is None:
        raise ApiError(404, f"No stat named {name!r}; GET /api/v1/stats/ lists them.")
    try:
        window, filters, result = compute(stat, request)
    except (StatError, WindowError) as exc:
        raise ApiError(
            400, f"Invalid parameter {exc.field}.", [{"field": exc.field, "message": exc.message}]
        ) from None
    if chosen_format(request, STAT_FORMATS) == "csv":
        csv = HttpResponse(to_csv(result, window), content_type="text/csv; charset=utf-8")
        csv["Content-Disposition"] = f'attachment; filename="{stat.name}.csv"'
        return varies_on_accept(csv)
    varies_on_accept(response)
    return {
        "name": stat.name,
        "title": stat.title,
        "description": stat.description,
        "window": window_out(window),
        "parameters": filters,
        "source": "raw" if query.source == "raw" or not stat.uses_preaggregates else "auto",
        "columns": [{"name": c.name, "type": c.type} for c in result.columns],
        "rows": serialize_rows(result, window),
    }


# --- entities --------------------------------------------------------------------


class MemberOut(Schema):
    member: str = Field(..., description="A username, or a project name (projectmember).")
    kind: str = Field(..., description="usermember or projectmember.")
    role: str | None
    state: str | None
    since: datetime = Field(..., description="Member since (the latest add after any removal).")


class MembershipOut(Schema):
    kind: Literal["organization", "project"]
    name: str
    role: str | None
    state: str | None


class TypeCount(Schema):
    event_type: str
    succeeded: int
    failed: int
    description: str = Field(..., description="The catalog's description, or uncatalogued.")


class EntityOut(Schema):
    kind: str
    name: str
    project: str | None = Field(..., description="An experiment's project; null otherwise.")
    page: str = Field(..., description="The entity's page in the portal.")
    state: str | None = Field(
        ...,
        description="pending, active, frozen (users, organizations, projects), exists "
        "(experiments) or gone; null when only failed events name it.",
    )
    since: datetime | None = Field(..., description="When its latest existence began.")
    until: datetime | None = Field(..., description="When it ended (state gone).")
    first_seen: datetime | None
    predates_log: bool | None = Field(
        ..., description="No creation event: first seen in another event or an inventory."
    )
    created_by: str | None
    category: str | None
    description: str | None
    members: list[MemberOut] | None = Field(
        ..., description="Current members of an organization or project; null for other kinds."
    )
    memberships: list[MembershipOut] | None = Field(
        ..., description="A user's organizations and projects now; null for other kinds."
    )
    window: StatWindow
    counts: list[TypeCount] = Field(..., description="Events involving it in the window, by type.")


EntityKind = Literal["user", "organization", "project", "experiment"]


class EntityQuery(Schema):
    project: str | None = Field(None, description="The experiment's project (experiments only).")
    period: str | None = Field(None, json_schema_extra={"enum": PERIOD_CHOICES})
    since: str | None = Field(None, description=SINCE_HELP, examples=["now-7d"])
    until: str | None = Field(None, description=UNTIL_HELP)
    tz: str | None = None


@router.get(
    "/entities/{kind}/{name}",
    response={200: EntityOut, **ERRORS},
    auth=AUTH,
    url_name="entity",
    tags=["entities"],
    summary="One user, organization, project or experiment: state, members, event counts",
)
def get_entity(
    request: HttpRequest, kind: EntityKind, name: str, query: Query[EntityQuery]
) -> dict[str, Any]:
    """What its page shows: its state and history from the lifecycle events,
    its members (organizations, projects) or memberships (users), and its
    events in the window (default the last 30 days) counted by type."""
    project = (query.project or "").strip() if kind == "experiment" else ""
    if kind == "experiment" and not project:
        raise ApiError(
            400,
            "Invalid parameter project.",
            [{"field": "project", "message": "is required for an experiment"}],
        )
    try:
        window = checked_window(request.GET)
    except WindowError as exc:
        raise ApiError(
            400, f"Invalid parameter {exc.field}.", [{"field": exc.field, "message": exc.message}]
        ) from None
    entity = Entity.objects.filter(kind=kind, scope=project, name=name).first()
    if entity is None and not Event.objects.involving(kind, name, project).exists():
        where = f" in project {project!r}" if project else ""
        raise ApiError(404, f"No {kind} named {name!r}{where} in the audit log.")
    members = memberships = None
    if kind in ("organization", "project"):
        current = entity is not None and entity.state != Entity.GONE
        members = [
            {"member": member, "kind": member_kind, "role": role, "state": state, "since": joined}
            for member, member_kind, role, state, joined in (
                entity_stats.members(kind, name, entity.since) if current else []
            )
        ]
    if kind == "user":
        memberships = [
            {"kind": group_kind, "name": group, "role": role, "state": state}
            for group_kind, group, role, state in entity_stats.memberships_of(name)
        ]
    counts = STATS["entity_events"].result(window, {"kind": kind, "name": name, "project": project})
    return {
        "kind": kind,
        "name": name,
        "project": project or None,
        "page": entity_url(kind, name, project),
        **_entity_fields(entity),
        "members": members,
        "memberships": memberships,
        "window": window_out(window),
        "counts": [
            {"event_type": t, "succeeded": ok, "failed": bad, "description": about}
            for t, ok, bad, about in counts.rows
        ],
    }


def _entity_fields(entity: Entity | None) -> dict[str, Any]:
    names = ("state", "since", "until", "first_seen", "predates_log")
    texts = ("created_by", "category", "description")
    if entity is None:
        return dict.fromkeys((*names, *texts))
    return {
        **{name: getattr(entity, name) for name in names},
        # Empty text in the table is "not known": null here, as for no row.
        **{name: getattr(entity, name) or None for name in texts},
    }
