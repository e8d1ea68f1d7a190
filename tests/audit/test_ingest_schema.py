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
def served(db) -> dict:
    return Client().get("/api/v1/openapi.json").json()


@pytest.fixture
def body_schemas(served) -> list[dict]:
    """The JSON body's alternatives (each a $ref to a named component, as
    client generators need them), each with the components it refers to."""
    post = served["paths"]["/api/v1/events"]["post"]
    alternatives = post["requestBody"]["content"]["application/json"]["schema"]["oneOf"]
    return [{**alternative, "components": served["components"]} for alternative in alternatives]


def named(served: dict, name: str) -> dict:
    return served["components"]["schemas"][name]


@pytest.mark.parametrize(("change", "field"), CASES)
def test_the_schema_accepts_exactly_what_the_validator_accepts(body_schemas, change, field):
    event = {**VALID, **change}
    schema = jsonschema_rs.validator_for(body_schemas[0], validate_formats=True)
    row, errors = validate_event(0, event, NOW)
    assert {e["field"] for e in errors} == ({field} - {None})
    assert schema.is_valid(event) == (row is not None)


def test_the_body_is_one_event_a_batch_or_a_wrapped_batch(body_schemas):
    assert [b["$ref"].rsplit("/", 1)[1] for b in body_schemas] == [
        "EventIn",
        "EventBatch",
        "WrappedEvents",
    ]
    whole = jsonschema_rs.validator_for(
        {"oneOf": body_schemas, "components": body_schemas[0]["components"]}
    )
    for body in (VALID, [VALID, VALID], {"events": [VALID]}):
        assert whole.is_valid(body), body
    for body in ([], {"events": []}, {"events": [VALID], "extra": 1}, "text"):
        assert not whole.is_valid(body), body


def test_a_batch_in_the_schema_holds_one_to_the_configured_number_of_events(served, body_schemas):
    array = named(served, "EventBatch")
    assert (array["minItems"], array["maxItems"]) == (1, settings.INGEST_MAX_EVENTS)
    assert named(served, "WrappedEvents")["properties"]["events"] == {
        "$ref": "#/components/schemas/EventBatch"
    }
    schema = jsonschema_rs.validator_for(body_schemas[1])
    assert schema.is_valid([VALID])
    assert not schema.is_valid([])
    assert not schema.is_valid([VALID] * (settings.INGEST_MAX_EVENTS + 1))
