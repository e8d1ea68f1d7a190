"""Ingest and read API for audit events (mounted under /api/v1/)."""

import uuid
from datetime import datetime
from typing import Any, Literal

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.http import urlencode
from ninja import Field, Query, Router, Schema

from audit.coalesce import store_shared
from audit.export import FORMATS, Export, ExportError, parse_fields
from audit.filters import EventFilter, FilterError, decode_cursor, encode_cursor
from audit.ingest import IngestError, parse_body, validate
from audit.models import Event
from audit.schemas import EventBatch, EventIn, WrappedEvents, catalog_document
from sphere_stats.api import (
    ERRORS,
    ApiError,
    Error,
    accepts_gzip,
    api,
    chosen_format,
    link_next,
    token_auth,
    varies_on_accept,
)
from sphere_stats.metrics import count_ingested
from sphere_stats.ratelimit import rate_limit

router = Router(tags=["events"])
# What the API's renderer answers with (sphere_stats.api.Renderer).
INGEST_CONTENT_TYPE = "application/json; charset=utf-8"


class EventOut(Schema):
    event_uuid: uuid.UUID
    timestamp: datetime
    event_type: str
    caller: str
    subject: str
    subject_type: str
    target: str | None
    success: bool
    error_message: str | None
    payload: dict[str, Any]


class Conflict(Schema):
    index: int
    event_uuid: uuid.UUID
    message: str


class IngestOut(Schema):
    accepted: int = Field(..., description="Events newly stored.")
    duplicates: int = Field(..., description="Events already stored with identical content.")
    conflicts: list[Conflict] = Field(
        ..., description="Events whose uuid is stored with different content; never overwritten."
    )
    event_uuids: list[uuid.UUID] = Field(..., description="One uuid per event sent, in order.")


class EventPage(Schema):
    events: list[EventOut]
    next: str | None = Field(None, description="URL of the next (older) page, if any.")


# The view reads the body itself (JSON or NDJSON), so ninja does not see
# these models: they are put in components by name, which client generators
# need to make a union of them.
_INGEST_BODIES = (EventIn, EventBatch, WrappedEvents)
for _model in _INGEST_BODIES:
    api.component(_model)
_INGEST_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "oneOf": [
                        {"$ref": f"#/components/schemas/{model.__name__}"}
                        for model in _INGEST_BODIES
                    ]
                }
            },
            "application/x-ndjson": {
                "schema": {
                    "type": "string",
                    "description": "One EventIn object per line.",
                }
            },
        },
    }
}


@router.post(
    "/events",
    auth=token_auth("ingest"),
    response={201: IngestOut, 413: Error, 415: Error, **ERRORS},
    openapi_extra=_INGEST_BODY,
    summary='Ingest one event, an array, {"events": [...]} or NDJSON',
)
def ingest_events(request: HttpRequest):
    """Up to 10,000 events and 10 MB per request. Idempotent by `event_uuid`:
    a repeat is reported as a duplicate, a repeat with different content as a
    conflict; neither changes what is stored. A batch with any invalid event is
    rejected whole (400) and nothing is written."""
    rate_limit(request, "ingest")
    length = request.META.get("CONTENT_LENGTH") or "0"
    if length.isdigit() and int(length) > settings.INGEST_MAX_BODY_BYTES:
        raise ApiError(413, f"The body is larger than {settings.INGEST_MAX_BODY_BYTES} bytes.")
    try:
        body = request.body
    except RequestDataTooBig:
        raise ApiError(
            413, f"The body is larger than {settings.INGEST_MAX_BODY_BYTES} bytes."
        ) from None
    events = []
    try:
        events = parse_body(body, request.content_type)
        result = store_shared(validate(events))
    except IngestError as exc:
        count_ingested(rejected=len(events))  # none of a batch with an invalid event is stored
        raise ApiError(exc.status, exc.error, exc.details) from None
    count_ingested(result.accepted, result.duplicates, len(result.conflicts))
    # Already IngestOut's JSON (every uuid a string): returned as it is, not
    # validated again field by field, a tenth of a single-event POST's time.
    # tests/audit/test_ingest.py holds answers of each kind to the schema.
    return JsonResponse(result.as_dict(), status=201, content_type=INGEST_CONTENT_TYPE)


class FilterQuery(Schema):
    """The explorer's filters (audit.filters.EventFilter), as query parameters."""

    event_type: list[str] = Field(default_factory=list, description="Repeatable.")
    subject_type: str | None = None
    subject: str | None = None
    caller: str | None = None
    target: str | None = None
    # A string, not a bool: EventFilter parses it, so the API takes exactly
    # the explorer's values (a bool here turned `failed` into a 422).
    success: str | None = Field(
        None,
        description="true or false; also 1/0, yes/no, succeeded/failed, any (the explorer's).",
        examples=["false"],
    )
    entity: str | None = Field(
        None,
        description="Every event an entity page's timeline shows: user:<name>, "
        "organization:<name>, project:<name> or experiment:<project>/<name>.",
        examples=["user:glawler"],
    )
    payload: list[str] = Field(
        default_factory=list,
        description="Repeatable `key=value`: events whose payload contains it (JSONB @>); "
        "the value also matches an element of a list and a number or boolean.",
        examples=[["kind=usermember"]],
    )
    error_contains: str | None = Field(None, description="Error message contains (any case).")
    since: str | None = Field(
        None,
        description="RFC 3339, or relative: now, now-45m, now-7d (units s, m, h, d, w); "
        "inclusive. With `period=custom`: also a date or local time in tz.",
        examples=["now-7d"],
    )
    until: str | None = Field(
        None, description="RFC 3339 or relative (now-1h); exclusive.", examples=["now-1h"]
    )
    period: str | None = Field(
        None, description="1h, 24h, 7d, 30d, 90d, 1y, all or custom (the stats pages' window)."
    )
    tz: str | None = Field(None, description="IANA time zone for local times; default UTC.")


class EventQuery(FilterQuery):
    limit: int = Field(100, ge=1, le=1000)
    cursor: str | None = Field(None, description="From a previous page's `next`.")
    format: Literal["json", "csv"] = Field(
        "json",
        description="csv: the page as the export's CSV, the next page's URL in the Link "
        "header. Without format, `Accept: text/csv` picks CSV too.",
    )


# The formats of a list page, by media type (the default first).
PAGE_FORMATS = {"json": "application/json", "csv": "text/csv"}
EXPORT_FORMATS = {"csv": "text/csv", "json": "application/json", "ndjson": "application/x-ndjson"}


def _text(description: str) -> dict:
    return {"schema": {"type": "string", "description": description}}


_LINK_HEADER = {
    "Link": {
        "description": 'The next page as `<URL>; rel="next"` (RFC 8288), when there is one.',
        "schema": {"type": "string"},
    }
}
_LIST_RESPONSES = {
    "responses": {
        200: {
            "description": "One page of events, newest first: JSON, or CSV with format=csv "
            "or Accept: text/csv.",
            "headers": _LINK_HEADER,
            "content": {
                "application/json": {"schema": {"$ref": "#/components/schemas/EventPage"}},
                "text/csv": _text("The export's CSV header, then one event per row."),
            },
        }
    }
}


@router.get(
    "/events",
    auth=token_auth("read"),
    response={200: EventPage, **ERRORS},
    openapi_extra=_LIST_RESPONSES,
    summary="List events, newest first, with keyset pagination",
)
def list_events(request: HttpRequest, query: Query[EventQuery], response: HttpResponse):
    try:
        event_filter = EventFilter.from_query(request.GET)
        qs = event_filter.apply(Event.objects.all()).newest_first()
        if query.cursor:
            qs = qs.before(*decode_cursor(query.cursor))
    except FilterError as exc:
        raise ApiError(400, str(exc), [{"field": exc.field, "message": exc.message}]) from None
    rows = list(qs[: query.limit + 1])
    next_url = None
    if len(rows) > query.limit:
        rows = rows[: query.limit]
        params = request.GET.copy()
        params["cursor"] = encode_cursor(rows[-1].timestamp, rows[-1].event_uuid)
        # A relative bound (now-7d) is pinned to this page's moment: read
        # again on the next page, it would have moved.
        for name in ("since", "until"):
            moment = getattr(event_filter, name)
            if moment and params.get(name, "").strip().startswith("now"):
                params[name] = moment.isoformat()
        next_url = request.build_absolute_uri(
            reverse("api:list_events") + "?" + urlencode(params, doseq=True)
        )
    if chosen_format(request, PAGE_FORMATS) == "csv":
        csv = HttpResponse(_page_csv(rows, event_filter), content_type=FORMATS["csv"])
        return varies_on_accept(link_next(csv, next_url))
    varies_on_accept(link_next(response, next_url))
    return {"events": [r.as_dict() for r in rows], "next": next_url}


def _page_csv(rows: list[Event], event_filter: EventFilter) -> bytes:
    """One page of events as the export writes them (its columns, local
    times in the filter's tz, spreadsheet-safe cells)."""
    page = Event.objects.filter(event_uuid__in=[row.event_uuid for row in rows])
    export = Export(page, format="csv", zone=event_filter.zone)
    # An empty IN () is no SQL Django will write: the header alone.
    return b"".join(export.body()) if rows else export.header()


class ExportQuery(FilterQuery):
    format: Literal["csv", "json", "ndjson"] = Field(
        "csv",
        description="Without format, the Accept header picks one: text/csv, "
        "application/json or application/x-ndjson.",
    )
    fields: str | None = Field(
        None, description="CSV only: payload keys as extra columns, e.g. payload.kind,payload.role."
    )
    cursor: str | None = Field(
        None,
        description="Resume an interrupted export after this row: the event_uuid of the last "
        "complete line received (or a cursor from the list endpoint). An empty value is a 400, "
        "not a fresh export.",
    )


_EXPORT_RESPONSES = {
    "responses": {
        200: {
            "description": "The matching events, newest first, streamed. "
            "gzip-compressed (Content-Encoding) when the request accepts gzip.",
            "content": {
                "text/csv": _text("A header line, then one event per row."),
                "application/json": {
                    "schema": {"type": "array", "items": {"$ref": "#/components/schemas/EventOut"}}
                },
                "application/x-ndjson": _text("One JSON event per line."),
            },
        }
    }
}


@router.get(
    "/events/export",
    auth=token_auth("read"),
    response={**ERRORS},
    openapi_extra=_EXPORT_RESPONSES,
    summary="Export every matching event as CSV, JSON or NDJSON (streamed, no row cap)",
)
def export_events(request: HttpRequest, query: Query[ExportQuery]):
    """The explorer's filters; no period means all time. The body streams from
    the database with constant memory; an interrupted NDJSON download resumes
    with `cursor` set to the event_uuid of its last complete line."""
    rate_limit(request, "export")
    try:
        event_filter = EventFilter.from_query(request.GET)
        qs = event_filter.apply(Event.objects.all())
        # `cursor=` present but empty is a resume whose cursor got lost (the
        # last line of a truncated file): starting over would append every
        # row again, so it is refused.
        if "cursor" in request.GET:
            qs = qs.before(*_resume_point(request.GET["cursor"].strip()))
        export = Export(
            qs,
            format=chosen_format(request, EXPORT_FORMATS),
            zone=event_filter.zone,
            fields=parse_fields(query.fields),
        )
        export.check()
    except (FilterError, ExportError) as exc:
        raise ApiError(400, str(exc), [{"field": exc.field, "message": exc.message}]) from None
    response = export.response(
        event_filter.file_stem(now=timezone.now()),
        content_encoding=accepts_gzip(request.headers.get("Accept-Encoding", "")),
    )
    return varies_on_accept(response)


def _resume_point(cursor: str) -> tuple[datetime, uuid.UUID]:
    """(timestamp, event_uuid) to resume after: an event_uuid or a list cursor."""
    if not cursor:
        raise FilterError("cursor", "is empty: give the event_uuid of the last complete line")
    try:
        key = uuid.UUID(cursor)
    except ValueError:
        return decode_cursor(cursor)
    timestamp = Event.objects.filter(event_uuid=key).values_list("timestamp", flat=True).first()
    if timestamp is None:
        raise FilterError("cursor", f"no event {key} to resume after")
    return timestamp, key


@router.get(
    "/events/{event_uuid}",
    auth=token_auth("read"),
    response={200: EventOut, **ERRORS},
    summary="One event by uuid",
)
def get_event(request: HttpRequest, event_uuid: str):
    try:
        key = uuid.UUID(event_uuid)
    except ValueError:
        raise ApiError(
            400, "event_uuid is not a UUID.", [{"field": "event_uuid", "message": "not a UUID"}]
        ) from None
    event = Event.objects.filter(event_uuid=key).first()
    if event is None:
        raise ApiError(404, f"No event {key}.")
    return event.as_dict()


class CatalogType(Schema):
    name: str
    group: str
    description: str
    subject_type: str = Field(..., description="The subject_type every event of this type has.")
    caller: str = Field(..., description="Who the caller is in this type's events.")
    subject: str = Field(..., description="What the subject names.")
    target: str | None = Field(..., description="What the target names; null: none.")
    event_schema: dict[str, Any] = Field(
        ..., description="JSON Schema (draft 2020-12) of a whole event of this type."
    )
    payload_schema: dict[str, Any] = Field(
        ..., description="JSON Schema (draft 2020-12) of its payload alone."
    )
    example: dict[str, Any]


class CatalogOut(Schema):
    dialect: str = Field(..., description="The JSON Schema dialect of every schema here.")
    event_schema: dict[str, Any] = Field(
        ...,
        description="JSON Schema of any event. A type not in the catalog is stored as it "
        "comes, with only these checks.",
    )
    types: list[CatalogType]


@router.get(
    "/catalog",
    auth=token_auth("ingest", "read"),
    response={200: CatalogOut, **ERRORS},
    tags=["catalog"],
    summary="The event catalog: each type's meaning, JSON Schemas and an example",
)
def get_catalog(request: HttpRequest):
    """What the ingest checks for each catalogued event type, as JSON Schema,
    so a producer can validate its events before it sends them. A token with
    either scope reads it."""
    return catalog_document()
