"""The JSON shapes a producer sends: the ingest body and, for each catalogued
event type, a JSON Schema (draft 2020-12) of its events and its payload.

EventIn, EventBatch and WrappedEvents are the ingest body's named schemas in
/api/v1/openapi.json (a client generator needs names to build a union);
`event_schema` and `payload_schema` are what GET /api/v1/catalog serves, so a
producer can validate an event before it sends it.

Both state the limits audit.ingest.validate_event enforces, from its own
constants and from the catalog's entries. What a JSON Schema cannot say
stays the validator's alone: a timestamp no more than 5 minutes ahead and
not before 1970, text without NUL, a payload of at most 64 KB and 16 levels.
"""

import uuid
from functools import cache
from typing import Annotated, Any

from django.conf import settings
from ninja import Field, Schema
from pydantic import ConfigDict, RootModel

from audit.catalog import BOOLEAN, CATALOG, INTEGER, OBJECT, STRING, STRING_LIST, EventType
from audit.ingest import MAX_ERROR_MESSAGE_LENGTH, MAX_NAME_LENGTH, NOT_BLANK, SLUG, TIMESTAMP

DIALECT = "https://json-schema.org/draft/2020-12/schema"


class EventIn(Schema):
    """One audit event, as the ingest API takes it."""

    # Schemathesis sends mostly valid events from this schema, which reach
    # the database: it must be the check the validator makes.
    model_config = ConfigDict(extra="forbid")

    event_uuid: uuid.UUID | None = Field(
        None, description="Generated when absent; the key that makes a resend a duplicate."
    )
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


class EventBatch(RootModel[list[EventIn]]):
    """A batch of events: stored all together or, if any is invalid, not at all."""

    root: Annotated[list[EventIn], Field(min_length=1, max_length=settings.INGEST_MAX_EVENTS)]


class WrappedEvents(Schema):
    """A batch as `{"events": [...]}`."""

    model_config = ConfigDict(extra="forbid")

    events: EventBatch


# A payload key's type (audit.catalog) in JSON Schema. JSON Schema's integer
# also admits 1.0, which the validator refuses: send integers without a point.
_KEY_TYPES: dict[str, dict[str, Any]] = {
    STRING: {"type": "string"},
    INTEGER: {"type": "integer"},
    BOOLEAN: {"type": "boolean"},
    STRING_LIST: {"type": "array", "items": {"type": "string"}},
    OBJECT: {"type": "object"},
}


def payload_schema(spec: EventType) -> dict[str, Any]:
    """The JSON Schema of one event type's payload: each catalogued key's
    type, choices and description, and which keys are required. Keys the
    catalog does not list are stored as they come."""
    properties = {}
    for key, entry in spec.payload.items():
        prop = dict(_KEY_TYPES[entry.type])
        if entry.choices:
            prop["enum"] = list(entry.choices)
        if entry.minimum is not None:
            prop["minimum"] = entry.minimum
        if entry.maximum is not None:
            prop["maximum"] = entry.maximum
        if entry.description:
            prop["description"] = entry.description
        properties[key] = prop
    schema: dict[str, Any] = {
        "$schema": DIALECT,
        "title": f"{spec.name} payload",
        "type": "object",
        "properties": properties,
    }
    required = [key for key, entry in spec.payload.items() if entry.required]
    if required:
        schema["required"] = required
    return schema


def event_schema(spec: EventType | None = None) -> dict[str, Any]:
    """The JSON Schema of a whole event of type `spec` (its event_type and
    subject_type fixed, its payload's keys checked), standalone; without
    `spec`, of any event, catalogued or not."""
    schema = EventIn.model_json_schema()
    schema = {"$schema": DIALECT, **schema}
    if spec is None:
        return schema
    properties = dict(schema["properties"])
    properties["event_type"] = {"const": spec.name, "description": spec.description}
    properties["subject_type"] = {"const": spec.subject_type}
    for name in ("caller", "subject", "target"):
        meaning = getattr(spec, name)
        if meaning:
            properties[name] = {**properties[name], "description": meaning}
    payload = payload_schema(spec)
    del payload["$schema"], payload["title"]
    properties["payload"] = payload
    required = list(schema["required"])
    if payload.get("required"):
        required.append("payload")
    return {
        **schema,
        "title": spec.name,
        "description": spec.description,
        "properties": properties,
        "required": required,
    }


@cache
def catalog_document() -> dict[str, Any]:
    """The catalog as GET /api/v1/catalog serves it (built once a process:
    the catalog is code)."""
    return {
        "dialect": DIALECT,
        "event_schema": event_schema(),
        "types": [
            {
                "name": spec.name,
                "group": spec.group,
                "description": spec.description,
                "subject_type": spec.subject_type,
                "caller": spec.caller,
                "subject": spec.subject,
                "target": spec.target or None,
                "event_schema": event_schema(spec),
                "payload_schema": payload_schema(spec),
                "example": spec.example,
            }
            for spec in CATALOG.values()
        ],
    }
