"""The export_events command."""

import gzip
import json
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from tests.audit.exp_helpers import BASE, event, store, variety

pytestmark = pytest.mark.django_db


def test_it_writes_ndjson_of_every_event_by_default(tmp_path):
    stored = variety()
    out = tmp_path / "all.ndjson"
    stdout = StringIO()
    call_command("export_events", "--output", str(out), stdout=stdout)
    lines = out.read_text().splitlines()
    assert [json.loads(line)["event_uuid"] for line in lines] == [
        e["event_uuid"] for e in reversed(stored)
    ]
    assert "Wrote" in stdout.getvalue()


def test_it_applies_the_explorer_filters(tmp_path):
    variety()
    store(event(timestamp=BASE - timedelta(days=1), caller="someone-else"))
    out = tmp_path / "some.csv"
    call_command(
        "export_events",
        "--format",
        "csv",
        "--event-type",
        "org_member_added",
        "--payload",
        "kind=usermember",
        "--caller",
        "glawler",
        "--since",
        (BASE - timedelta(hours=1)).isoformat(),
        "--fields",
        "payload.role",
        "--output",
        str(out),
        stdout=StringIO(),
    )
    lines = out.read_text().splitlines()
    assert lines[0].endswith(",timestamp_local,payload.role")
    assert len(lines) == 2 and lines[1].endswith(",member")


def test_it_gzips_when_asked(tmp_path):
    variety()
    out = tmp_path / "all.json.gz"
    call_command("export_events", "--format", "json", "--gzip", "-o", str(out), stdout=StringIO())
    assert len(json.loads(gzip.decompress(out.read_bytes()))) == 5


def test_it_refuses_a_bad_filter_with_a_clear_message(tmp_path):
    with pytest.raises(CommandError, match="since"):
        call_command("export_events", "--since", "yesterday", "-o", str(tmp_path / "x"))
