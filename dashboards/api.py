"""The stats API: every stat of the registry as JSON or CSV (mounted under /api/v1/)."""

from datetime import datetime
from typing import Annotated, Any, Literal

from django.http import HttpRequest, HttpResponse
from django.urls import reverse
from ninja import Field, Query, Router, Schema
from ninja.security import SessionAuth

from dashboards import queries
from dashboards.stats import STATS, Stat, StatError, serialize_rows, to_csv
from sphere_stats.api import ERRORS, ApiError, token_auth
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


class StatQuery(Schema):
    period: str | None = Field(None, json_schema_extra={"enum": PERIOD_CHOICES})
    since: str | None = None
    until: str | None = None
    res: str | None = Field(None, json_schema_extra={"enum": RES_CHOICES})
    tz: str | None = None
    format: Literal["json", "csv"] = "json"
    source: Literal["auto", "raw"] = "auto"
    n: str | None = None
    by: str | None = None
    event_type: list[str] = []
    success: str | None = None
    kind: str | None = None
    name: str | None = None
    project: str | None = None


WINDOW_PARAMETERS = [
    StatParam(
        name="period",
        type="string",
        description="last 1h, 24h, 7d, 30d, 90d, 1y, all, or custom (with since/until)",
        default="30d",
        choices=PERIOD_CHOICES,
    ),
    StatParam(name="since", type="string", description="custom range start (date or time)"),
    StatParam(name="until", type="string", description="custom range end (a date includes it)"),
    StatParam(
        name="res",
        type="string",
        description="bucket size; chosen from the period's length when absent",
        choices=RES_CHOICES,
    ),
    StatParam(name="tz", type="string", description="display time zone (IANA)", default="UTC"),
    StatParam(name="format", type="string", default="json", description="json or csv"),
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
        window = Window.from_query(query, earliest=queries.first_event_time)
    except OverflowError:
        raise WindowError("since", "is out of range") from None
    if window.approximate_buckets() > MAX_BUCKETS:
        raise WindowError("res", f"gives more than {MAX_BUCKETS} buckets: use a coarser one")
    return window


def compute(stat: Stat, request: HttpRequest) -> tuple[Window, dict, Any]:
    """The window, filters and result of one stat for a request's query
    string; raises StatError or WindowError on bad parameters."""
    window = checked_window(request.GET)
    filters = stat.parse(request.GET)
    source = request.GET.get("source") or "auto"
    if source not in queries.SOURCES:
        raise StatError("source", "must be auto or raw")
    return window, filters, stat.result(window, filters, source)


@router.get("/stats/", response={200: StatList, **ERRORS}, auth=AUTH, url_name="stats")
def list_stats(request: HttpRequest) -> dict:
    """Every stat with its parameters and URL (plugin discovery)."""
    return {
        "window_parameters": WINDOW_PARAMETERS,
        "stats": [{**stat.describe(), "url": stat_url(stat)} for stat in STATS.values()],
    }


@router.get(
    "/stats/{name}",
    response={200: StatOut, **ERRORS},
    auth=AUTH,
    url_name="stat",
    openapi_extra={
        "responses": {
            200: {
                "description": "The stat as JSON, or as CSV with format=csv.",
                "content": {
                    "application/json": {"schema": {"$ref": "#/components/schemas/StatOut"}},
                    "text/csv": {"schema": {"type": "string"}},
                },
            }
        }
    },
)
def get_stat(
    request: HttpRequest, name: Annotated[str, StatNames()], query: Query[StatQuery]
) -> Any:
    """One stat over a window: columns and rows (JSON), or CSV with format=csv."""
    stat = STATS.get(name)
    if stat is None:
        raise ApiError(404, f"No stat named {name!r}; GET /api/v1/stats/ lists them.")
    try:
        window, filters, result = compute(stat, request)
    except (StatError, WindowError) as exc:
        raise ApiError(
            400, f"Invalid parameter {exc.field}.", [{"field": exc.field, "message": exc.message}]
        ) from None
    if query.format == "csv":
        response = HttpResponse(to_csv(result, window), content_type="text/csv; charset=utf-8")
        response["Content-Disposition"] = f'attachment; filename="{stat.name}.csv"'
        return response
    return {
        "name": stat.name,
        "title": stat.title,
        "description": stat.description,
        "window": {
            "period": window.period,
            "start": window.local(window.start),
            "end": window.local(window.end),
            "resolution": window.resolution,
            "tz": window.tz_name,
        },
        "parameters": filters,
        "source": "raw" if query.source == "raw" or not stat.uses_preaggregates else "auto",
        "columns": [{"name": c.name, "type": c.type} for c in result.columns],
        "rows": serialize_rows(result, window),
    }
