"""The import_events command, and the export → import round trip."""

import gzip
import json
from io import StringIO

import pytest
from django.core.management import call_command

from audit.models import Event, HourlyCount
from tests.audit.exp_helpers import event, variety

pytestmark = pytest.mark.django_db


def snapshot() -> tuple[list, list]:
    events = list(Event.objects.order_by("event_uuid").values_list(*Event.COLUMNS))
    counts = list(HourlyCount.objects.order_by("bucket", "event_type", "success").values_list())
    return events, counts


def run_import(path) -> str:
    out = StringIO()
    call_command("import_events", str(path), stdout=out)
    return out.getvalue()


@pytest.mark.parametrize("fmt", ["csv", "json", "ndjson"])
@pytest.mark.parametrize("gz", [False, True])
def test_export_then_import_into_an_empty_database_gives_identical_rows(tmp_path, fmt, gz):
    variety()
    before = snapshot()
    path = tmp_path / f"events.{fmt}{'.gz' if gz else ''}"
    args = ["export_events", "--format", fmt, "-o", str(path), "--tz", "Asia/Kolkata"]
    call_command(*args, *(["--gzip"] if gz else []), stdout=StringIO())
    Event.objects.all().delete()
    HourlyCount.objects.all().delete()

    report = run_import(path)

    assert "5 accepted, 0 duplicate, 0 rejected" in report
    assert snapshot() == before


def test_importing_the_same_file_twice_changes_nothing(tmp_path):
    variety()
    path = tmp_path / "events.ndjson"
    call_command("export_events", "-o", str(path), stdout=StringIO())
    before = snapshot()
    assert "0 accepted, 5 duplicate, 0 rejected" in run_import(path)
    assert snapshot() == before


def test_a_bad_line_is_reported_with_its_number_and_the_good_ones_are_imported(tmp_path):
    good, also_good = event(), event(caller="bob")
    bad_type = event(success="yes")
    lines = [
        json.dumps(good),
        "{not json",
        json.dumps(bad_type),
        "",
        json.dumps(also_good),
    ]
    path = tmp_path / "mixed.ndjson"
    path.write_text("\n".join(lines) + "\n")

    report = run_import(path)

    assert "2 accepted, 0 duplicate, 2 rejected" in report
    assert "line 2: not JSON" in report
    assert "line 3: success: must be true or false" in report
    assert Event.objects.count() == 2


def test_a_conflicting_event_is_rejected_not_overwritten(tmp_path):
    stored = variety()
    changed = dict(stored[0], caller="mallory")
    path = tmp_path / "conflict.ndjson"
    path.write_text(json.dumps(changed) + "\n")
    report = run_import(path)
    assert "1 rejected" in report and "line 1:" in report
    assert Event.objects.get(event_uuid=changed["event_uuid"]).caller == "glawler"


def test_it_reports_csv_lines_by_their_line_in_the_file(tmp_path):
    variety()
    path = tmp_path / "events.csv"
    call_command("export_events", "--format", "csv", "-o", str(path), stdout=StringIO())
    text = path.read_text().replace(",false,", ",maybe,", 1)
    path.write_text(text)
    Event.objects.all().delete()
    report = run_import(path)
    # The first row is line 2; the realization row's error message spans two lines.
    assert "4 accepted, 0 duplicate, 1 rejected" in report
    assert "line 2: success: 'maybe' is not true or false" in report


def test_a_plain_json_array_is_numbered_by_item(tmp_path):
    path = tmp_path / "events.json"
    path.write_text(json.dumps([event(), event(timestamp="yesterday")], indent=2))
    report = run_import(path)
    assert "1 accepted, 0 duplicate, 1 rejected" in report
    assert "item 2: timestamp:" in report


def test_dry_run_stores_nothing(tmp_path):
    path = tmp_path / "events.ndjson.gz"
    path.write_bytes(gzip.compress((json.dumps(event()) + "\n").encode()))
    out = StringIO()
    call_command("import_events", str(path), "--dry-run", stdout=out)
    assert "1 would be accepted" in out.getvalue()
    assert Event.objects.count() == 0
