"""Facilities in the admin: CSV/JSON import and export with validation."""

import json

import pytest
import tablib
from django.contrib.auth.models import User
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client

from facilities.admin import FacilityResource, invalid_row_messages
from facilities.models import Facility

pytestmark = pytest.mark.django_db

HEADER = "slug,name,latitude,longitude,kind,description,url,capacity_nodes\n"
GOOD_AND_BAD = (
    HEADER
    + "isi,USC ISI,33.98,-118.44,compute,,https://www.isi.edu/,64\n"
    + "mars,Mars base,95.5,-118.44,compute,,,10\n"
    + "utah,Utah,40.76,-111.84,compute,,,96\n"
)


@pytest.fixture
def superuser_client() -> Client:
    user = User.objects.create_superuser("root", password="pw")
    client = Client()
    client.force_login(user)
    return client


def test_an_import_with_a_bad_row_imports_the_good_rows_and_reports_the_bad_one():
    dataset = tablib.Dataset().load(GOOD_AND_BAD, format="csv")
    result = FacilityResource().import_data(dataset, dry_run=False)
    assert sorted(Facility.objects.values_list("slug", flat=True)) == ["isi", "utah"]
    (line,) = invalid_row_messages(result)
    assert line.startswith("Row 2: latitude:")
    assert "90" in line


def test_out_of_range_longitudes_and_reserved_slugs_are_rejected():
    rows = HEADER + "east,East,10,181,,,,1\nmap,Map,10,10,,,,1\n"
    result = FacilityResource().import_data(tablib.Dataset().load(rows, format="csv"))
    lines = invalid_row_messages(result)
    assert lines[0].startswith("Row 1: longitude:")
    assert lines[1].startswith("Row 2: slug:") and "reserved" in lines[1]
    assert not Facility.objects.exists()


def test_importing_the_same_file_again_updates_rather_than_duplicates():
    rows = HEADER + "isi,USC ISI,33.98,-118.44,compute,,,64\n"
    FacilityResource().import_data(tablib.Dataset().load(rows, format="csv"))
    rows = HEADER + "isi,USC ISI,33.98,-118.44,compute,,,80\n"
    FacilityResource().import_data(tablib.Dataset().load(rows, format="csv"))
    assert list(Facility.objects.values_list("slug", "capacity_nodes")) == [("isi", 80)]


def test_the_admin_previews_the_bad_row_and_still_lets_the_good_rows_in(superuser_client):
    upload = SimpleUploadedFile("facilities.csv", GOOD_AND_BAD.encode(), content_type="text/csv")
    preview = superuser_client.post(
        "/admin/facilities/facility/import/",
        {"import_file": upload, "format": "0", "resource": "0"},
    )
    assert preview.status_code == 200
    html = preview.content.decode()
    assert "Some rows failed to validate" in html
    assert "Ensure this value is less than or equal to 90" in html
    # The header is line 1, so the second data row is on line 3.
    assert "Will not be imported: Row 2 (CSV line 3): latitude" in html
    confirm = preview.context["confirm_form"]
    assert not Facility.objects.exists()

    response = superuser_client.post(
        "/admin/facilities/facility/process_import/",
        {**confirm.initial, "confirm": "Confirm import"},
        follow=True,
    )
    assert sorted(Facility.objects.values_list("slug", flat=True)) == ["isi", "utah"]
    notes = [str(m) for m in response.context["messages"]]
    assert any(n.startswith("Not imported: Row 2 (CSV line 3): latitude") for n in notes)


def test_the_csv_line_counts_values_spanning_lines_and_blank_lines(superuser_client):
    rows = (
        HEADER
        + 'isi,USC ISI,33.98,-118.44,compute,"Marina del Rey,\nCalifornia",,64\n'
        + "\n"
        + "mars,Mars base,95.5,-118.44,compute,,,10\n"
    )
    upload = SimpleUploadedFile("facilities.csv", rows.encode(), content_type="text/csv")
    preview = superuser_client.post(
        "/admin/facilities/facility/import/",
        {"import_file": upload, "format": "0", "resource": "0"},
    )
    assert "Row 2 (CSV line 5): latitude" in preview.content.decode()


def test_a_json_import_names_the_row_only(superuser_client):
    rows = [{"slug": "mars", "name": "Mars", "latitude": 95.5, "longitude": 1, "capacity_nodes": 1}]
    upload = SimpleUploadedFile(
        "facilities.json", json.dumps(rows).encode(), content_type="application/json"
    )
    preview = superuser_client.post(
        "/admin/facilities/facility/import/",
        {"import_file": upload, "format": "1", "resource": "0"},
    )
    html = preview.content.decode()
    assert "Will not be imported: Row 1: latitude" in html
    assert "CSV line" not in html


def test_the_admin_exports_json_that_imports_back(superuser_client):
    Facility.objects.create(
        slug="tacc", name="TACC", latitude=30.39, longitude=-97.73, capacity_nodes=120
    )
    response = superuser_client.post(
        "/admin/facilities/facility/export/",
        {
            "format": "1",
            "resource": "0",
            **{f"facilityresource_{f}": "on" for f in FacilityResource.Meta.fields},
        },
    )
    assert response.status_code == 200
    rows = json.loads(response.content)
    assert rows[0]["slug"] == "tacc" and rows[0]["latitude"] == 30.39
    Facility.objects.all().delete()
    FacilityResource().import_data(tablib.Dataset().load(json.dumps(rows), format="json"))
    assert Facility.objects.get(slug="tacc").capacity_nodes == 120
