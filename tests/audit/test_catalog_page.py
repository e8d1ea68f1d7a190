import pytest
from django.test import Client

from audit import catalog
from audit.ingest import ingest

pytestmark = pytest.mark.django_db


def test_it_lists_every_type_with_its_fields_and_example(viewer_client):
    page = viewer_client.get("/catalog/").content.decode()
    for name, spec in catalog.CATALOG.items():
        assert f'id="{name}"' in page
        for key in spec.payload:
            assert f"payload.{key}" in page
    assert "None: every event received so far has a catalog entry." in page


def test_it_counts_what_was_received_and_when(viewer_client):
    ingest(
        [{**catalog.CATALOG["user_login"].example, "timestamp": "2026-04-23T20:50:23Z"}] * 1
        + [{**catalog.CATALOG["user_login"].example, "timestamp": "2026-04-24T08:00:00Z"}]
    )
    page = viewer_client.get("/catalog/").content.decode()
    entry = page.split('id="user_login"')[1].split("</section>")[0]
    assert "2 received" in entry
    assert "last 2026-04-24 08:00 UTC" in entry


def test_it_needs_a_login():
    response = Client().get("/catalog/")
    assert response.status_code == 302
    assert "/accounts/login/" in response["Location"]
