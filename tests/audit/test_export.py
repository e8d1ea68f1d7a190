"""The streaming writers (audit/export.py) and the explorer's download view."""

import csv
import gzip
import io
import json
import re
from datetime import timedelta

import pytest
import time_machine

from audit.export import neutralise, unneutralise
from tests.audit.exp_helpers import BASE, event, odd_event, store, variety

pytestmark = pytest.mark.django_db

NOW = BASE + timedelta(days=1)


def download(client, query: str) -> tuple[bytes, object]:
    response = client.get(f"/events/export?{query}")
    assert response.status_code == 200, response.content[:500]
    return b"".join(response.streaming_content), response


def csv_rows(body: bytes) -> list[dict]:
    return list(csv.DictReader(io.StringIO(body.decode())))


@time_machine.travel(NOW, tick=False)
def test_it_writes_the_ten_columns_then_the_local_time(analyst_client):
    variety()
    body, response = download(analyst_client, "format=csv&period=all&tz=America/New_York")
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    header = body.decode().splitlines()[0]
    assert header == (
        "event_uuid,timestamp,event_type,caller,subject,subject_type,target,success,"
        "error_message,payload,timestamp_local"
    )
    rows = csv_rows(body)
    assert len(rows) == 5
    newest = rows[0]
    assert newest["timestamp"] == "2026-04-23T20:04:00.123456Z"
    assert newest["timestamp_local"] == "2026-04-23T16:04:00.123456-04:00"
    assert newest["success"] == "false"
    assert json.loads(newest["payload"]) == {"note": '+1 ünïcode \\ backslash "quote"'}


@time_machine.travel(NOW, tick=False)
def test_it_keeps_quotes_commas_and_newlines_inside_one_cell(analyst_client):
    variety()
    rows = csv_rows(
        download(analyst_client, "format=csv&period=all&event_type=realization_allocated")[0]
    )
    assert rows[0]["error_message"] == "'" + '=HYPERLINK("http://evil") quota "exceeded",\nline two'


@time_machine.travel(NOW, tick=False)
def test_it_neutralises_cells_a_spreadsheet_would_run_as_formulas(analyst_client):
    variety()
    rows = csv_rows(download(analyst_client, "format=csv&period=all&event_type=user_login")[0])
    assert rows[0]["caller"] == "'-alice"
    assert rows[0]["subject"] == "'@alice"
    # Already quoted once: one more quote, so import can strip exactly one.
    assert rows[0]["error_message"] == "''=already quoted"


def test_neutralising_round_trips_every_value():
    values = [
        "=1+2",
        "+x",
        "-3",
        "-3-3",
        "-",
        "@sum",
        "\tx",
        "'=x",
        "''@y",
        "'-5",
        "plain",
        "'plain",
        "",
        None,
    ]
    for value in values:
        assert unneutralise(neutralise(value)) == value
    assert neutralise("=1+2") == "'=1+2"
    assert neutralise("'plain") == "'plain"
    assert neutralise("-1+cmd") == "'-1+cmd"
    assert neutralise("-") == "'-"


@time_machine.travel(NOW, tick=False)
def test_negative_numbers_stay_numbers_in_csv(analyst_client):
    store(
        event(
            event_type="facility_status",
            subject="utah",
            subject_type="facility",
            caller="-7",
            target="-1+cmd",
            payload={"status": "up", "temp": -5, "drift": "-2.5e3"},
        )
    )
    body, _ = download(
        analyst_client,
        "format=csv&period=all&event_type=facility_status&fields=payload.temp,payload.drift",
    )
    row = csv_rows(body)[0]
    assert (row["payload.temp"], row["payload.drift"], row["caller"]) == ("-5", "-2.5e3", "-7")
    assert row["target"] == "'-1+cmd"


@time_machine.travel(NOW, tick=False)
def test_fields_adds_payload_keys_as_columns(analyst_client):
    variety()
    body, _ = download(
        analyst_client,
        "format=csv&period=all&event_type=org_member_added&fields=payload.kind,payload.role",
    )
    rows = csv_rows(body)
    assert [r["payload.kind"] for r in rows] == ["projectmember", "usermember"]
    assert [r["payload.role"] for r in rows] == ["member", "member"]


@time_machine.travel(NOW, tick=False)
def test_it_rejects_a_field_that_is_not_a_payload_key(analyst_client):
    response = analyst_client.get("/events/export?format=csv&fields=caller")
    assert response.status_code == 400
    assert b"payload.&lt;key&gt;" in response.content


@time_machine.travel(NOW, tick=False)
def test_json_is_one_array_of_events_newest_first(analyst_client):
    stored = variety()
    body, response = download(analyst_client, "format=json&period=all")
    assert response["Content-Type"] == "application/json"
    events = json.loads(body)
    assert [e["event_uuid"] for e in events] == [e["event_uuid"] for e in reversed(stored)]
    assert set(events[0]) == {
        "event_uuid",
        "timestamp",
        "event_type",
        "caller",
        "subject",
        "subject_type",
        "target",
        "success",
        "error_message",
        "payload",
    }
    assert events[2]["target"] is None and events[0]["target"] == ""


@time_machine.travel(NOW, tick=False)
def test_an_empty_json_export_is_an_empty_array(analyst_client):
    body, _ = download(analyst_client, "format=json&period=all")
    assert json.loads(body) == []


@time_machine.travel(NOW, tick=False)
def test_ndjson_is_one_event_per_line(analyst_client):
    stored = variety()
    body, response = download(analyst_client, "format=ndjson&period=all")
    assert response["Content-Type"] == "application/x-ndjson"
    lines = body.decode().splitlines()
    assert len(lines) == len(stored)
    assert json.loads(lines[1])["error_message"] == stored[3]["error_message"]


@time_machine.travel(NOW, tick=False)
@pytest.mark.parametrize("fmt", ["csv", "json", "ndjson"])
def test_gzip_gives_a_gz_file_of_the_same_content(analyst_client, fmt):
    variety()
    plain, _ = download(analyst_client, f"format={fmt}&period=all")
    packed, response = download(analyst_client, f"format={fmt}&period=all&gzip=1")
    assert response["Content-Type"] == "application/gzip"
    assert f".{fmt}.gz" in response["Content-Disposition"]
    assert gzip.decompress(packed) == plain


@time_machine.travel(NOW, tick=False)
def test_it_exports_exactly_the_filters_on_screen(analyst_client):
    variety()
    store(event(timestamp=BASE - timedelta(days=40), caller="old"))
    # The default window is the stats pages' 30 days: the old event stays out.
    rows = csv_rows(download(analyst_client, "format=csv")[0])
    assert len(rows) == 5
    rows = csv_rows(download(analyst_client, "format=csv&success=false&payload=facility=isi")[0])
    assert [r["event_type"] for r in rows] == ["realization_allocated"]


@time_machine.travel(NOW, tick=False)
def test_the_file_name_carries_the_filters_and_the_time_range(analyst_client):
    _, response = download(
        analyst_client,
        "format=ndjson&event_type=user_login&success=false&period=custom"
        "&since=2026-04-01&until=2026-04-30",
    )
    assert response["Content-Disposition"] == (
        'attachment; filename="events_user_login_failed_20260401T0000Z_20260501T0000Z.ndjson"'
    )


@time_machine.travel(NOW, tick=False)
def test_a_viewer_gets_403_for_an_export(viewer_client):
    response = viewer_client.get("/events/export?format=csv")
    assert response.status_code == 403


def test_an_anonymous_visitor_is_sent_to_log_in(client):
    response = client.get("/events/export?format=csv")
    assert response.status_code == 302
    assert "/accounts/login/" in response["Location"]


@time_machine.travel(NOW, tick=False)
def test_it_rejects_an_unknown_format(analyst_client):
    response = analyst_client.get("/events/export?format=xlsx")
    assert response.status_code == 400


# --- GET /api/v1/events/export ------------------------------------------------

API = "/api/v1/events/export"


def api_get(client, query: str, **headers):
    return client.get(f"{API}?{query}", **headers)


def test_the_api_exports_with_the_read_scope(api_client):
    stored = variety()
    response = api_get(api_client, "format=ndjson&success=false")
    assert response.status_code == 200
    assert response["Content-Type"] == "application/x-ndjson"
    lines = b"".join(response.streaming_content).decode().splitlines()
    assert [json.loads(x)["event_uuid"] for x in lines] == [
        stored[4]["event_uuid"],
        stored[3]["event_uuid"],
    ]


def test_the_api_without_a_period_exports_all_time(api_client):
    variety()
    store(event(timestamp=BASE - timedelta(days=400), caller="ancient"))
    body = b"".join(api_get(api_client, "format=csv").streaming_content)
    assert len(csv_rows(body)) == 6


def test_the_api_gzips_when_the_client_accepts_it(api_client):
    variety()
    plain = b"".join(api_get(api_client, "format=csv").streaming_content)
    response = api_get(api_client, "format=csv", HTTP_ACCEPT_ENCODING="gzip, deflate")
    assert response["Content-Encoding"] == "gzip"
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert gzip.decompress(b"".join(response.streaming_content)) == plain
    refused = api_get(api_client, "format=csv", HTTP_ACCEPT_ENCODING="gzip;q=0")
    assert not refused.has_header("Content-Encoding")


def test_an_interrupted_ndjson_export_resumes_after_its_last_line(api_client):
    variety()
    whole = b"".join(api_get(api_client, "format=ndjson").streaming_content).decode()
    lines = whole.splitlines()
    last_received = json.loads(lines[1])["event_uuid"]
    rest = b"".join(
        api_get(api_client, f"format=ndjson&cursor={last_received}").streaming_content
    ).decode()
    assert lines[:2] + rest.splitlines() == lines


def test_the_api_refuses_bad_filters_with_the_error_shape(api_client):
    response = api_get(api_client, "format=csv&since=yesterday")
    assert response.status_code == 400
    assert response.json()["details"][0]["field"] == "since"
    assert api_get(api_client, "format=xml").status_code == 400
    missing = api_get(api_client, "cursor=7f3e1a52-0000-4000-8000-000000000000")
    assert missing.status_code == 400


def test_an_empty_cursor_is_a_400_not_a_second_whole_export(api_client):
    variety()
    response = api_get(api_client, "format=ndjson&cursor=")
    assert response.status_code == 400
    assert response.json()["details"][0]["field"] == "cursor"


def test_the_api_exports_failed_events_as_the_explorer_names_them(api_client):
    variety()
    body = b"".join(api_get(api_client, "format=csv&success=failed").streaming_content)
    assert sorted(r["event_type"] for r in csv_rows(body)) == [
        "realization_allocated",
        "user_login",
    ]


def test_the_api_needs_a_read_token(client, ingest_token):
    assert client.get(API).status_code == 401
    denied = client.get(API, HTTP_AUTHORIZATION=f"Bearer {ingest_token}")
    assert denied.status_code == 403


def test_the_openapi_schema_declares_the_export_content_types(client):
    schema = client.get("/api/v1/openapi.json").json()
    content = schema["paths"][API]["get"]["responses"]["200"]["content"]
    assert set(content) == {"text/csv", "application/json", "application/x-ndjson"}


# --- an entity page's timeline downloads --------------------------------------


def timeline_rows(client, url: str) -> tuple[int, str]:
    """(rows in the page's timeline, its CSV download link)."""
    body = client.get(url).content.decode()
    rows = body.split('id="timeline-rows">', 1)[1].split("</tbody>", 1)[0]
    link = re.search(r'href="(/events/export\?format=csv&amp;[^"]+)"', body)
    assert link, "no CSV download on the page"
    return rows.count("<tr class="), link.group(1).replace("&amp;", "&")


@pytest.fixture
def entity_history():
    """alice about, by and as a member; exp1 in two projects; older than 30 days too."""
    store(
        event(
            timestamp=BASE - timedelta(days=40),
            event_type="user_login",
            caller="alice",
            subject="alice",
            subject_type="user",
            target=None,
            payload={"method": "password"},
        ),
        event(
            timestamp=BASE,
            event_type="user_login",
            caller="alice",
            subject="alice",
            subject_type="user",
            target=None,
            payload={"method": "password"},
        ),
        event(timestamp=BASE + timedelta(minutes=1), caller="alice", target="bob"),
        event(timestamp=BASE + timedelta(minutes=2), caller="glawler", target="alice"),
        event(
            timestamp=BASE + timedelta(minutes=3),
            event_type="project_member_added",
            subject="p1",
            subject_type="project",
            caller="glawler",
            target="alice",
            payload={"kind": "usermember", "role": "member", "state": "active"},
        ),
        event(timestamp=BASE + timedelta(minutes=4), caller="glawler", target="carol"),
    )
    for minute, project in enumerate(("p1", "p2"), start=5):
        store(
            event(
                timestamp=BASE + timedelta(minutes=minute),
                event_type="experiment_created",
                caller="glawler",
                subject="exp1",
                subject_type="experiment",
                target=None,
                payload={"project": project},
            )
        )
    store(
        event(
            timestamp=BASE + timedelta(minutes=7),
            event_type="experiment_pushed",
            caller="glawler",
            subject="exp1",
            subject_type="experiment",
            target=None,
            payload={"project": "p2", "model_file": "model.py", "revision": "1"},
        ),
        event(
            timestamp=BASE + timedelta(minutes=8),
            event_type="realization_allocated",
            caller="glawler",
            subject="rlz.exp1.p1",
            subject_type="realization",
            target="isi",
            payload={
                "project": "p1",
                "experiment": "exp1",
                "facility": "isi",
                "resources": ["n001"],
                "nodes": ["a"],
                "lans": [],
            },
        ),
    )


@time_machine.travel(NOW, tick=False)
@pytest.mark.parametrize(
    ("url", "expected"),
    [
        # about alice twice (one 40 days ago), by her, and her two memberships
        ("/users/alice/", 5),
        # p1's exp1 and its realization, not p2's exp1
        ("/experiments/p1/exp1/", 2),
    ],
)
def test_an_entity_pages_downloads_hold_exactly_its_timeline(
    analyst_client, entity_history, url, expected
):
    shown, link = timeline_rows(analyst_client, url)
    body = b"".join(analyst_client.get(link).streaming_content)
    assert shown == expected
    assert len(csv_rows(body)) == shown


@time_machine.travel(NOW, tick=False)
def test_the_entity_filter_names_its_field_when_malformed(analyst_client):
    for bad in ("alice", "facility:isi", "experiment:exp1", "user:"):
        response = analyst_client.get(f"/events/export?format=csv&entity={bad}")
        assert response.status_code == 400, bad
        assert "entity" in response.content.decode()


# --- values PostgreSQL cannot take: refused before a byte streams ------------


@pytest.mark.parametrize("value", ["NaN", "Infinity", "-Infinity", "1e999"])
def test_an_export_filtered_by_a_payload_value_no_number_can_be_completes(api_client, value):
    variety()
    store(odd_event(value))
    response = api_get(api_client, f"format=ndjson&payload=note%3D{value}")
    assert response.status_code == 200
    lines = b"".join(response.streaming_content).decode().splitlines()
    assert [json.loads(line)["caller"] for line in lines] == ["odd"]


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("until=9999-12-31T23:59:59Z", "until"),
        ("period=custom&since=0001-01-01", "since"),
        (f"payload=k%3D{'x' * 2000}", "payload"),
        (f"cursor={'A' * 400}", "cursor"),
    ],
)
def test_the_api_export_refuses_values_out_of_range_before_streaming(api_client, query, field):
    response = api_get(api_client, f"format=ndjson&{query}")
    assert response.status_code == 400
    assert not response.streaming
    assert response.json()["details"][0]["field"] == field


@time_machine.travel(NOW, tick=False)
@pytest.mark.parametrize("value", ["NaN", "1e999"])
def test_the_explorer_download_of_a_payload_value_no_number_can_be_completes(analyst_client, value):
    store(odd_event(value))
    body, _ = download(analyst_client, f"period=all&format=csv&payload=note%3D{value}")
    assert [row["caller"] for row in csv_rows(body)] == ["odd"]


@time_machine.travel(NOW, tick=False)
def test_the_explorer_download_refuses_a_time_out_of_range_with_its_bad_request_page(
    analyst_client,
):
    response = analyst_client.get("/events/export?period=custom&since=0001-01-01")
    assert response.status_code == 400
    assert not response.streaming
    assert "since: is out of range" in response.content.decode()
