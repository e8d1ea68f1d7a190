"""Facility status API (mounted under /api/v1/): the map's data as JSON."""

import csv
import io
import re
from datetime import date, datetime
from typing import Any, Literal

from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from ninja import Field, Query, Router, Schema

from facilities.models import Facility
from facilities.status import Report
from facilities.summary import FacilityRow, facility_detail, facility_rows, stale_after
from sphere_stats.api import ERRORS, ApiError, chosen_format, token_auth, varies_on_accept
from sphere_stats.windows import WindowError, parse_zone

router = Router(tags=["facilities"])

State = Literal["up", "degraded", "down", "maintenance", "unknown"]
SLUG = re.compile(r"^[-a-zA-Z0-9_]{1,64}$")


class StatusOut(Schema):
    status: State
    since: datetime | None = Field(
        ..., description="Start of the current run of this status (null: never reported)."
    )
    stale: bool = Field(..., description="True when unknown because reports stopped.")
    holds_until: datetime | None = Field(
        ...,
        description="When the status turns unknown unless another report comes: the last "
        "report's time plus its payload.interval, or FACILITY_STALE_AFTER if that is longer "
        "(null: never reported).",
    )
    last_report_at: datetime | None
    last_report_status: str | None
    message: str | None = Field(..., description="The last report's message.")
    reported_by: str | None


class ResourcesOut(Schema):
    in_use: int = Field(..., description="Distinct hosts held by active allocations.")
    capacity: int
    active_realizations: int
    active_materializations: int


class FacilityOut(Schema):
    slug: str
    name: str
    kind: str
    description: str
    url: str
    latitude: float
    longitude: float
    status: StatusOut
    resources: ResourcesOut


class ChangeOut(Schema):
    timestamp: datetime
    status: str
    message: str


class DayOut(Schema):
    date: date
    status: State = Field(..., description="The worst reported state of the day.")
    up_percent: float | None = Field(..., description="Up time over time with a known state.")
    seconds: dict[str, float] = Field(..., description="Seconds in each state, unknown included.")


class UptimeOut(Schema):
    time_zone: str
    up_percent: float | None
    days: list[DayOut]


class MaterializationOut(Schema):
    name: str
    project: str
    experiment: str
    resources: list[str]
    since: datetime
    caller: str


class FacilityDetailOut(FacilityOut):
    changes: list[ChangeOut] = Field(..., description="Status changes, newest first.")
    uptime: UptimeOut
    materializations: list[MaterializationOut]


class DetailQuery(Schema):
    tz: str = Field("UTC", description="IANA time zone the uptime days are cut in.")


def _report_fields(report: Report | None) -> dict:
    return {
        "last_report_at": report.timestamp if report else None,
        "last_report_status": report.status if report else None,
        "message": (report.message or None) if report else None,
        "reported_by": (report.caller or None) if report else None,
    }


def _facility(row: FacilityRow) -> dict:
    f, status, usage = row.facility, row.status, row.usage
    return {
        "slug": f.slug,
        "name": f.name,
        "kind": f.kind,
        "description": f.description,
        "url": f.url,
        "latitude": f.latitude,
        "longitude": f.longitude,
        "status": {
            "status": status.status,
            "since": status.since,
            "stale": status.stale,
            "holds_until": status.holds_until(stale_after()),
            **_report_fields(status.last_report),
        },
        "resources": {
            "in_use": usage.in_use,
            "capacity": f.capacity_nodes,
            "active_realizations": usage.realizations,
            "active_materializations": usage.materializations,
        },
    }


class FacilityListQuery(Schema):
    format: Literal["json", "csv"] = Field(
        "json", description="Without format, `Accept: text/csv` picks CSV."
    )


LIST_FORMATS = {"json": "application/json", "csv": "text/csv"}
# The CSV's columns: (header, path into the JSON object of a facility).
CSV_COLUMNS = (
    ("slug", ("slug",)),
    ("name", ("name",)),
    ("kind", ("kind",)),
    ("status", ("status", "status")),
    ("since", ("status", "since")),
    ("stale", ("status", "stale")),
    ("last_report_at", ("status", "last_report_at")),
    ("holds_until", ("status", "holds_until")),
    ("nodes_in_use", ("resources", "in_use")),
    ("nodes_capacity", ("resources", "capacity")),
    ("active_realizations", ("resources", "active_realizations")),
    ("active_materializations", ("resources", "active_materializations")),
    ("latitude", ("latitude",)),
    ("longitude", ("longitude",)),
)


def _list_csv(facilities: list[dict]) -> HttpResponse:
    """One row per facility: the JSON list's fields, nested ones flattened."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(header for header, _ in CSV_COLUMNS)
    for facility in facilities:
        row = []
        for _, path in CSV_COLUMNS:
            value: Any = facility
            for key in path:
                value = value[key]
            row.append(value.isoformat() if isinstance(value, datetime) else value)
        writer.writerow(row)
    response = HttpResponse(out.getvalue(), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = 'attachment; filename="facilities.csv"'
    return response


@router.get(
    "/facilities",
    auth=token_auth("read"),
    response={200: list[FacilityOut], **ERRORS},
    summary="Every facility with its current status and resources in use",
    openapi_extra={
        "responses": {
            200: {
                "description": "The facilities as JSON, or as CSV with format=csv or "
                "Accept: text/csv.",
                "content": {
                    "application/json": {
                        "schema": {
                            "type": "array",
                            "items": {"$ref": "#/components/schemas/FacilityOut"},
                        }
                    },
                    "text/csv": {"schema": {"type": "string"}},
                },
            }
        }
    },
)
def list_facilities(
    request: HttpRequest, query: Query[FacilityListQuery], response: HttpResponse
) -> Any:
    facilities = [_facility(row) for row in facility_rows(timezone.now())]
    if chosen_format(request, LIST_FORMATS) == "csv":
        return varies_on_accept(_list_csv(facilities))
    varies_on_accept(response)
    return facilities


@router.get(
    "/facilities/{slug}",
    auth=token_auth("read"),
    response={200: FacilityDetailOut, **ERRORS},
    summary="One facility: status, status changes, daily uptime for 90 days",
)
def get_facility(request: HttpRequest, slug: str, query: Query[DetailQuery]):
    try:
        zone = parse_zone(query.tz)
    except WindowError as exc:
        raise ApiError(400, exc.message, [{"field": "tz", "message": exc.message}]) from None
    facility = Facility.objects.filter(slug=slug).first() if SLUG.match(slug) else None
    if facility is None:
        raise ApiError(404, f"No facility {slug!r}.")
    detail = facility_detail(facility, timezone.now(), zone)
    return {
        **_facility(detail.row),
        "changes": [
            {"timestamp": c.timestamp, "status": c.status, "message": c.message}
            for c in detail.changes
        ],
        "uptime": {
            "time_zone": zone.key,
            "up_percent": detail.uptime.up_percent,
            "days": [
                {
                    "date": day.date,
                    "status": day.status,
                    "up_percent": day.up_percent,
                    "seconds": day.seconds,
                }
                for day in detail.uptime.days
            ],
        },
        "materializations": [
            {
                "name": m.name,
                "project": m.project,
                "experiment": m.experiment,
                "resources": list(m.resources),
                "since": m.since,
                "caller": m.caller,
            }
            for m in detail.usage.materializations
        ],
    }
