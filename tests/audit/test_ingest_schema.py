"""The ingest schema a client reads (/api/v1/openapi.json) says what the
validator enforces: an event the schema accepts is stored, one it refuses is
a 400 naming the field. Checked with jsonschema-rs, the validator
schemathesis fuzzes with, on the schema as served."""

from datetime import UTC, datetime

import jsonschema_rs
import pytest
from django.conf import settings
from django.test import Client

from audit.ingest import validate_event

NOW = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
VALID = {
    "timestamp": "2026-04-23T20:50:23.597554Z",
    "event_type": "user_login",
    "caller": "alice",
    "subject": "alice",
    "subject_type": "user",
    "success": True,
}
# (what differs from VALID, the field the validator names or None if valid)
CASES = [
    ({}, None),
    ({"event_uuid": "0b9d6a0e-8f43-4b8e-9a43-3f0c2b1d6f55", "target": "bob"}, None),
    ({"timestamp": "2026-04-23 20:50:23.5+00"}, None),  # PostgreSQL's text form
    ({"timestamp": None, "target": None, "error_message": None}, None),
    ({"caller": ""}, None),  # a system action has no user
    ({"subject": "x" * 255, "error_message": "e" * 8192}, None),
    ({"colour": "blue"}, "colour"),
    ({"event_uuid": "not-a-uuid"}, "event_uuid"),
    ({"timestamp": "2026-04-23T20:50:23"}, "timestamp"),
    ({"timestamp": "yesterday"}, "timestamp"),
    ({"event_type": "User Login"}, "event_type"),
    ({"event_type": "x" * 65}, "event_type"),
    ({"subject_type": "9users"}, "subject_type"),
    ({"subject": ""}, "subject"),
    ({"subject": "   "}, "subject"),
    ({"subject": "x" * 256}, "subject"),
    ({"caller": "x" * 256}, "caller"),
    ({"target": "x" * 256}, "target"),
    ({"error_message": "e" * 8193}, "error_message"),
    ({"success": "true"}, "success"),
    ({"success": None}, "success"),
    ({"payload": ["not", "an", "object"]}, "payload"),
]


@pytest.fixture
def body_schemas(db) -> list[dict]:
    post = Client().get("/api/v1/openapi.json").json()["paths"]["/api/v1/events"]["post"]
    return post["requestBody"]["content"]["application/json"]["schema"]["oneOf"]


@pytest.mark.parametrize(("change", "field"), CASES)
def test_the_schema_accepts_exactly_what_the_validator_accepts(body_schemas, change, field):
    event = {**VALID, **change}
    schema = jsonschema_rs.validator_for(body_schemas[0], validate_formats=True)
    row, errors = validate_event(0, event, NOW)
    assert {e["field"] for e in errors} == ({field} - {None})
    assert schema.is_valid(event) == (row is not None)


def test_a_batch_in_the_schema_holds_one_to_the_configured_number_of_events(body_schemas):
    array, wrapped = body_schemas[1], body_schemas[2]["properties"]["events"]
    for batch in (array, wrapped):
        assert (batch["minItems"], batch["maxItems"]) == (1, settings.INGEST_MAX_EVENTS)
    schema = jsonschema_rs.validator_for(array)
    assert schema.is_valid([VALID])
    assert not schema.is_valid([])
