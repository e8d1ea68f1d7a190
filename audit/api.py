"""Ingest and read API for audit events (mounted under /api/v1/)."""

import uuid
from datetime import datetime
from typing import Any, Literal

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, JsonResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.http import urlencode
from ninja import Field, Query, Router, Schema
from pydantic import ConfigDict

from audit.export import Export, ExportError, accepts_gzip, parse_fields
from audit.filters import EventFilter, FilterError, decode_cursor, encode_cursor
from audit.ingest import (
    MAX_ERROR_MESSAGE_LENGTH,
    MAX_NAME_LENGTH,
    NOT_BLANK,
    SLUG,
    TIMESTAMP,
    IngestError,
    ingest,
    parse_body,
)
from audit.models import Event
from sphere_stats.api import ERRORS, ApiError, Error, token_auth
from sphere_stats.ratelimit import rate_limit

router = Router(tags=["events"])
# What the API's renderer answers with (sphere_stats.api.Renderer).
INGEST_CONTENT_TYPE = "application/json; charset=utf-8"


class EventIn(Schema):
    # The limits audit.ingest.validate_event enforces, from its own
    # constants, so the schema a client reads is the check it meets (and
    # schemathesis sends mostly valid events, which reach the database).
    # What a schema cannot say stays the validator's alone: a timestamp no
    # more than 5 minutes ahead, text without NUL, each known event type's
    # payload fields.
    model_config = ConfigDict(extra="forbid")

    event_uuid: uuid.UUID | None = Field(None, description="Generated when absent.")
    timestamp: str | None = Field(
        None,
        description="RFC 3339 with an offset, or PostgreSQL's text form; absent means now.",
        examples=["2026-04-23T20:50:23.597554Z"],
        pattern=TIMESTAMP.pattern,
    )
    event_type: str = Field(..., examples=["org_member_added"], pattern=SLUG.pattern)
    caller: str = Field(..., examples=["glawler"], max_length=MAX_NAME_LENGTH)
    subject: str = Field(
        ..., examples=["orgtest"], max_length=MAX_NAME_LENGTH, pattern=NOT_BLANK.pattern
    )
    subject_type: str = Field(..., examples=["organization"], pattern=SLUG.pattern)
    target: str | None = Field(None, max_length=MAX_NAME_LENGTH)
    success: bool
    error_message: str | None = Field(None, max_length=MAX_ERROR_MESSAGE_LENGTH)
    payload: dict[str, Any] = Field(default_factory=dict)


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


# Inlined rather than a $ref: no operation takes EventIn as a parameter, so
# ninja leaves it out of components and a $ref would dangle.
_EVENT_IN = EventIn.model_json_schema()
_EVENT_ARRAY = {
    "type": "array",
    "items": _EVENT_IN,
    "minItems": 1,
    "maxItems": settings.INGEST_MAX_EVENTS,
}
_INGEST_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "oneOf": [
                        _EVENT_IN,
                        _EVENT_ARRAY,
                        {
                            "type": "object",
                            "required": ["events"],
                            "properties": {"events": _EVENT_ARRAY},
                        },
                    ]
                }
            },
            "application/x-ndjson": {"schema": {"type": "string"}},
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
    try:
        result = ingest(parse_body(body, request.content_type))
    except IngestError as exc:
        raise ApiError(exc.status, exc.error, exc.details) from None
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
        None, description="RFC 3339; inclusive. With `period=custom`: a date or local time in tz."
    )
    until: str | None = Field(None, description="RFC 3339; exclusive.")
    period: str | None = Field(
        None, description="1h, 24h, 7d, 30d, 90d, 1y, all or custom (the stats pages' window)."
    )
    tz: str | None = Field(None, description="IANA time zone for local times; default UTC.")


class EventQuery(FilterQuery):
    limit: int = Field(100, ge=1, le=1000)
    cursor: str | None = Field(None, description="From a previous page's `next`.")


@router.get(
    "/events",
    auth=token_auth("read"),
    response={200: EventPage, **ERRORS},
    summary="List events, newest first, with keyset pagination",
)
def list_events(request: HttpRequest, query: Query[EventQuery]):
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
        next_url = request.build_absolute_uri(
            reverse("api:list_events") + "?" + urlencode(params, doseq=True)
        )
    return {"events": [r.as_dict() for r in rows], "next": next_url}


class ExportQuery(FilterQuery):
    format: Literal["csv", "json", "ndjson"] = "csv"
    fields: str | None = Field(
        None, description="CSV only: payload keys as extra columns, e.g. payload.kind,payload.role."
    )
    cursor: str | None = Field(
        None,
        description="Resume an interrupted export after this row: the event_uuid of the last "
        "complete line received (or a cursor from the list endpoint). An empty value is a 400, "
        "not a fresh export.",
    )


def _text(description: str) -> dict:
    return {"schema": {"type": "string", "description": description}}


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
            format=query.format,
            zone=event_filter.zone,
            fields=parse_fields(query.fields),
        )
    except (FilterError, ExportError) as exc:
        raise ApiError(400, str(exc), [{"field": exc.field, "message": exc.message}]) from None
    return export.response(
        event_filter.file_stem(now=timezone.now()),
        content_encoding=accepts_gzip(request.headers.get("Accept-Encoding", "")),
    )


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
