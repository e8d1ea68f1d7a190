"""The import_events command, and the export → import round trip."""

import gzip
import json
from io import StringIO

import pytest
from django.core.management import call_command

from audit.models import DailyCount, Event, HourlyCount, HourlyLoginUser
from tests.audit.exp_helpers import event, store, variety

pytestmark = pytest.mark.django_db


def snapshot() -> tuple[list, list]:
    events = list(Event.objects.order_by("event_uuid").values_list(*Event.COLUMNS))
    counts = list(HourlyCount.objects.order_by("bucket", "event_type", "success").values_list())
    counts += list(DailyCount.objects.order_by("day", "event_type", "success").values_list())
    counts += list(HourlyLoginUser.objects.order_by("hour", "username").values_list())
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
    DailyCount.objects.all().delete()

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


def without(values: dict, *names: str) -> dict:
    return {k: v for k, v in values.items() if k not in names}


def test_a_file_without_uuids_imported_twice_is_stored_once(tmp_path):
    lines = [without(event(caller=name), "event_uuid") for name in ("alice", "bob", "carol")]
    path = tmp_path / "old-log.ndjson"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))

    assert "3 accepted, 0 duplicate, 0 rejected" in run_import(path)
    first = snapshot()
    again = run_import(path)

    assert "0 accepted, 3 duplicate, 0 rejected" in again
    assert "duplicate lines (already stored, or repeated): 1, 2, 3" in again
    assert snapshot() == first


def test_the_derived_uuid_is_the_same_from_csv_and_ndjson(tmp_path):
    nested = {**event()["payload"], "zeta": {"b": 1, "a": [2]}}
    stored = store(event(caller="alice"), event(caller="bob", payload=nested))
    csv_path, ndjson_path = tmp_path / "events.csv", tmp_path / "events.ndjson"
    call_command("export_events", "--format", "csv", "-o", str(csv_path), stdout=StringIO())
    header, *rows = csv_path.read_text().splitlines()
    # The uuid cell emptied: a CSV from a log that never had uuids.
    csv_path.write_text("\n".join([header, *("," + r.split(",", 1)[1] for r in rows)]) + "\n")
    ndjson_path.write_text("".join(json.dumps(without(e, "event_uuid")) + "\n" for e in stored))
    Event.objects.all().delete()
    HourlyCount.objects.all().delete()
    DailyCount.objects.all().delete()

    assert "2 accepted" in run_import(csv_path)
    from_csv = snapshot()
    Event.objects.all().delete()
    HourlyCount.objects.all().delete()
    DailyCount.objects.all().delete()
    assert "2 accepted" in run_import(ndjson_path)

    assert snapshot() == from_csv


def test_a_line_without_a_timestamp_is_rejected_with_its_number(tmp_path):
    lines = [
        event(),
        without(event(caller="bob"), "timestamp"),
        event(caller="carol", timestamp=None),
    ]
    path = tmp_path / "undated.ndjson"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))

    report = run_import(path)

    assert "1 accepted, 0 duplicate, 2 rejected" in report
    assert "line 2: timestamp: is required" in report
    assert "line 3: timestamp: is required" in report
    assert list(Event.objects.values_list("caller", flat=True)) == ["glawler"]
