"""The events changelist and its export in the Django admin."""

import csv
import io
import json
import re

import pytest
from django.contrib.auth.models import User
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from sphere_stats.models import ApiToken
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


def test_a_large_changelist_shows_an_estimate_instead_of_counting(staff_client, many_events):
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


def test_revoking_a_token_in_the_admin_locks_it_out_of_the_api(staff_client):
    revoked, secret = ApiToken.issue("portal", ["ingest", "read"])
    kept_secret = ApiToken.issue("other", ["read"])[1]
    api = Client(HTTP_AUTHORIZATION=f"Bearer {secret}")
    assert api.get("/api/v1/events").status_code == 200

    response = staff_client.post(
        "/admin/sphere_stats/apitoken/",
        {"action": "revoke", "_selected_action": [str(revoked.pk)]},
        follow=True,
    )
    assert response.status_code == 200
    assert "Revoked 1 token(s)." in response.content.decode()

    refused = api.get("/api/v1/events")
    assert refused.status_code == 401
    assert "invalid API token" in refused.json()["error"]
    assert Client(HTTP_X_API_KEY=secret).get("/api/v1/events").status_code == 401
    other = Client(HTTP_AUTHORIZATION=f"Bearer {kept_secret}")
    assert other.get("/api/v1/events").status_code == 200


# --- the changelist at ten million rows -------------------------------------


@pytest.fixture
def many_events() -> None:
    """20,000 logins: past the paginator's exact-count limit, 400 pages of 50."""
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


def test_the_changelist_never_counts_facets(staff_client):
    variety()
    with CaptureQueriesContext(connection) as ctx:
        response = staff_client.get(CHANGELIST + "?_facets=True")
    assert response.status_code == 200
    assert "Show counts" not in response.content.decode()
    # Facets are COUNT(...) FILTER (WHERE ...) per choice; the paginator's own
    # count of a small table (below the estimate threshold) is not one.
    assert [q["sql"] for q in ctx.captured_queries if "FILTER (WHERE" in q["sql"].upper()] == []


def test_search_is_an_exact_match_on_the_indexed_columns(staff_client):
    variety()
    with CaptureQueriesContext(connection) as ctx:
        found = staff_client.get(CHANGELIST, {"q": "@alice"}).content.decode()
    assert "user_login" in found and "orgtest" not in found
    listing = next(q["sql"] for q in ctx.captured_queries if q["sql"].startswith('SELECT "events"'))
    # Plain equalities a btree index serves; "=subject" was UPPER(subject) = UPPER(...).
    assert "UPPER(" not in listing and '"events"."subject" = ' in listing
    partial = staff_client.get(CHANGELIST, {"q": "alice"}).content.decode()
    assert "@alice" not in partial


def test_a_large_changelist_labels_its_count_an_estimate(staff_client, many_events):
    text = staff_client.get(CHANGELIST).content.decode()
    assert re.search(r"about [\d,]+ events \(estimate\)", text)


def test_page_links_stop_at_the_deepest_page_offered(staff_client, many_events):
    text = staff_client.get(CHANGELIST).content.decode()
    assert 'href="?p=200"' in text
    assert 'href="?p=400"' not in text and 'href="?p=399"' not in text


def test_a_deep_page_is_refused_with_a_pointer_to_the_explorer(staff_client, many_events):
    response = staff_client.get(CHANGELIST, {"p": "5000", "event_type": "user_login"})
    assert response.status_code == 302
    assert "p=200" in response["Location"] and "event_type=user_login" in response["Location"]
    page = staff_client.get(response["Location"]).content.decode()
    assert "Page 5000 is not offered" in page and "/events/" in page


def test_the_admin_export_file_is_named_after_its_filters(staff_client):
    variety()
    response = staff_client.post(
        CHANGELIST + "export/?success__exact=0&event_type=user_login&q=alice",
        {"format": "0", "resource": "0"},
    )
    assert response.status_code == 200
    assert re.match(
        r'attachment; filename="events_user_login_failed_search-alice_start_\d{8}T\d{4}Z\.csv"',
        response["Content-Disposition"],
    )
