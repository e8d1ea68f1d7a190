"""The events changelist and its export in the Django admin."""

import csv
import io
import json

import pytest
from django.contrib.auth.models import User
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from tests.audit.exp_helpers import variety

pytestmark = pytest.mark.django_db

CHANGELIST = "/admin/audit/event/"


@pytest.fixture
def staff_client() -> Client:
    user = User.objects.create_superuser("root", password="pw-root")
    client = Client()
    client.force_login(user)
    return client


def test_the_changelist_filters_by_catalog_event_types(staff_client):
    variety()
    response = staff_client.get(CHANGELIST + "?event_type=user_login")
    assert response.status_code == 200
    text = response.content.decode()
    assert "@alice" in text and "orgtest" not in text
    # The choices come from the catalog: every type is offered, seen or not.
    assert "?event_type=facility_status" in text


def test_a_large_changelist_shows_an_estimate_instead_of_counting(staff_client):
    with connection.cursor() as cursor:
        cursor.execute(
            """
            INSERT INTO events (event_uuid, timestamp, event_type, caller, subject,
                                subject_type, target, success, error_message, payload)
            SELECT gen_random_uuid(), now() - i * interval '1 second', 'user_login',
                   'u' || i, 'u' || i, 'user', NULL, true, NULL, '{}'
            FROM generate_series(1, 20000) AS i
            """
        )
        cursor.execute("ANALYZE events")
    with CaptureQueriesContext(connection) as ctx:
        response = staff_client.get(CHANGELIST)
    assert response.status_code == 200
    counts = [q["sql"] for q in ctx.captured_queries if "COUNT(" in q["sql"].upper()]
    assert counts == []
    assert any(q["sql"].startswith("EXPLAIN") for q in ctx.captured_queries)


@pytest.mark.parametrize("fmt_index,fmt", [(0, "csv"), (1, "json"), (2, "ndjson")])
def test_the_admin_export_streams_the_filtered_rows(staff_client, fmt_index, fmt):
    variety()
    page = staff_client.get(CHANGELIST + "export/?success__exact=0")
    assert page.status_code == 200
    response = staff_client.post(
        CHANGELIST + "export/?success__exact=0",
        {"format": str(fmt_index), "resource": "0"},
    )
    assert response.status_code == 200
    assert response.streaming
    body = b"".join(response.streaming_content).decode()
    if fmt == "csv":
        rows = list(csv.DictReader(io.StringIO(body)))
    elif fmt == "json":
        rows = json.loads(body)
    else:
        rows = [json.loads(line) for line in body.splitlines()]
    assert sorted(r["event_type"] for r in rows) == ["realization_allocated", "user_login"]


def test_the_changelist_cannot_change_events(staff_client):
    variety()
    assert staff_client.get(CHANGELIST + "add/").status_code == 403
