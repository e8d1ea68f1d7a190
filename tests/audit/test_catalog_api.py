"""GET /api/v1/catalog: each catalogued event type with its meaning and JSON
Schemas (draft 2020-12), which accept its example and refuse what the ingest
refuses, so a producer can check an event before it sends it."""

import copy

import pytest
from django.test import Client
from jsonschema import Draft202012Validator

from audit.catalog import CATALOG

pytestmark = pytest.mark.django_db


@pytest.fixture
def served(api_client) -> dict:
    response = api_client.get("/api/v1/catalog")
    assert response.status_code == 200
    return response.json()


def by_name(served: dict) -> dict[str, dict]:
    return {entry["name"]: entry for entry in served["types"]}


def validator(schema: dict) -> Draft202012Validator:
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)


def test_it_lists_every_catalogued_type_with_its_subject_type_and_meaning(served):
    types = by_name(served)
    assert list(types) == list(CATALOG)
    assert served["dialect"] == "https://json-schema.org/draft/2020-12/schema"
    added = types["org_member_added"]
    assert added["subject_type"] == "organization"
    assert added["description"] == CATALOG["org_member_added"].description
    assert added["target"].startswith("the member: a username")
    assert types["user_login"]["target"] is None
    payload = added["payload_schema"]
    assert payload["required"] == ["kind", "role"]
    assert payload["properties"]["role"] == {
        "type": "string",
        "enum": ["creator", "maintainer", "member"],
        "description": "the new role",
    }
    resources = types["realization_allocated"]["payload_schema"]["properties"]["resources"]
    assert resources["type"] == "array" and resources["items"] == {"type": "string"}


@pytest.mark.parametrize("name", list(CATALOG))
def test_every_example_is_valid_by_its_schemas_and_stored_by_the_ingest(served, post_events, name):
    entry = by_name(served)[name]
    example = entry["example"]
    validator(entry["event_schema"]).validate(example)
    validator(entry["payload_schema"]).validate(example.get("payload", {}))
    validator(served["event_schema"]).validate(example)
    assert post_events(example).status_code == 201


def changed(example: dict, change: dict, drop: tuple[str, ...] = ()) -> dict:
    event = copy.deepcopy(example)
    for key, value in change.items():
        if key.startswith("payload."):
            event.setdefault("payload", {})[key.removeprefix("payload.")] = value
        else:
            event[key] = value
    for key in drop:
        if key.startswith("payload."):
            event["payload"].pop(key.removeprefix("payload."))
        else:
            event.pop(key)
    return event


# (event type, how its example is spoiled, fields dropped, the field the ingest names)
REFUSED = [
    ("org_member_added", {}, ("payload.role",), "payload.role"),
    ("org_member_added", {"payload.role": "owner"}, (), "payload.role"),
    ("project_member_added", {"payload.kind": "projectmember"}, (), "payload.kind"),
    ("realization_allocated", {"payload.resources": "n001"}, (), "payload.resources"),
    ("realization_allocated", {"payload.resources": [1, 2]}, (), "payload.resources"),
    ("facility_status", {}, ("payload",), "payload.status"),
    ("user_catalogued", {"payload.state": "deleted"}, (), "payload.state"),
    ("user_login", {"payload.method": None}, (), "payload.method"),
    ("experiment_created", {"subject_type": "project"}, (), "subject_type"),
    ("org_created", {"colour": "blue"}, (), "colour"),
]


@pytest.mark.parametrize(("name", "change", "drop", "field"), REFUSED)
def test_an_event_the_ingest_refuses_its_schema_refuses_too(
    served, post_events, name, change, drop, field
):
    entry = by_name(served)[name]
    event = changed(entry["example"], change, drop)
    response = post_events(event)
    assert response.status_code == 400
    assert field in {d["field"] for d in response.json()["details"]}
    assert not validator(entry["event_schema"]).is_valid(event)
    if field.startswith("payload."):
        assert not validator(entry["payload_schema"]).is_valid(event.get("payload", {}))


def test_a_token_of_either_scope_reads_it_and_no_token_is_refused(ingest_token, read_token):
    for token in (ingest_token, read_token):
        response = Client(HTTP_AUTHORIZATION=f"Bearer {token}").get("/api/v1/catalog")
        assert response.status_code == 200
    assert Client().get("/api/v1/catalog").status_code == 401
