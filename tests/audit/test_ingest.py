"""POST /api/v1/events: shapes, validation, idempotency, limits."""

import gzip
import json
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import time_machine
from django.db import connection
from django.test.client import FakePayload

from audit import catalog, ingest
from audit.models import (
    DailyCallerCount,
    DailyProjectCount,
    Event,
    HourlyCount,
    OrgMembership,
)
from tests.factories import ABSENT, like

SEED_ROWS = json.loads((Path(__file__).parent.parent / "fixtures" / "seed_rows.json").read_text())
pytestmark = pytest.mark.django_db


# As a client that leaves the event_uuid and the time to the server.
event = like(event_uuid=ABSENT, timestamp=ABSENT, payload={"method": "password"})


def nested(levels: int) -> dict:
    """A payload with `levels` objects nested inside it, one in the other."""
    payload: dict = {}
    for _ in range(levels):
        payload = {"k": payload}
    return payload


def event_text(payload: str, **overrides) -> str:
    """An event as JSON text with `payload` inserted verbatim, numbers spelled as sent."""
    fields = {k: v for k, v in event(**overrides).items() if k != "payload"}
    return json.dumps(fields)[:-1] + ', "payload": ' + payload + "}"


def test_the_seeds_eight_sample_rows_round_trip_exactly(post_events, api_client):
    response = post_events(SEED_ROWS)
    assert response.status_code == 201
    assert response.json()["accepted"] == 8

    for row in SEED_ROWS:
        stored = api_client.get(f"/api/v1/events/{row['event_uuid']}").json()
        expected_ts = datetime.fromisoformat(row["timestamp"])
        assert datetime.fromisoformat(stored.pop("timestamp")) == expected_ts
        assert stored == {k: v for k, v in row.items() if k != "timestamp"}
    # The empty caller of the seed's first experiment_created row is kept as ''.
    assert Event.objects.get(event_uuid=SEED_ROWS[4]["event_uuid"]).caller == ""


def test_the_seeds_example_query_finds_the_usermember_addition(post_events):
    post_events(SEED_ROWS)
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT * FROM events WHERE event_type = 'org_member_added' AND success = true "
            "AND payload->>'kind' = 'usermember';"
        )
        rows = cursor.fetchall()
    assert [str(r[0]) for r in rows] == ["2e2812be-3e7a-4a30-8c64-4ec09018f1ab"]


@pytest.mark.parametrize("name", sorted(catalog.CATALOG))
def test_it_accepts_the_catalog_example_of_every_event_type(post_events, name):
    response = post_events(catalog.CATALOG[name].example)
    assert response.status_code == 201, response.json()
    assert Event.objects.get().event_type == name


@pytest.mark.parametrize(
    "shape",
    ["object", "array", "wrapped", "ndjson"],
)
def test_it_accepts_every_body_shape(post_events, shape):
    events = [event(), event(subject="bob", caller="bob")]
    if shape == "object":
        response = post_events(events[0])
        expected = 1
    elif shape == "array":
        response = post_events(events)
        expected = 2
    elif shape == "wrapped":
        response = post_events({"events": events})
        expected = 2
    else:
        body = "\n".join(json.dumps(e) for e in events) + "\n\n"
        response = post_events(body, content_type="application/x-ndjson")
        expected = 2
    assert response.status_code == 201
    assert response.json()["accepted"] == expected
    assert Event.objects.count() == expected


def test_it_generates_and_returns_a_uuid_and_uses_the_time_of_receipt(post_events):
    with time_machine.travel(datetime(2026, 5, 1, 12, 0, tzinfo=UTC), tick=False):
        response = post_events(event())
    (returned,) = response.json()["event_uuids"]
    stored = Event.objects.get(event_uuid=uuid.UUID(returned))
    assert stored.timestamp == datetime(2026, 5, 1, 12, 0, tzinfo=UTC)


def test_resending_an_event_is_harmless(post_events):
    body = event(event_uuid=str(uuid.uuid4()), timestamp="2026-04-23T20:50:23Z")
    assert post_events(body).json()["accepted"] == 1
    again = post_events(body).json()
    assert again["accepted"] == 0 and again["duplicates"] == 1 and again["conflicts"] == []
    assert Event.objects.count() == 1
    assert HourlyCount.objects.get().n == 1


def test_a_uuid_repeated_within_one_batch_is_a_duplicate(post_events):
    body = event(event_uuid=str(uuid.uuid4()), timestamp="2026-04-23T20:50:23Z")
    result = post_events([body, body]).json()
    assert (result["accepted"], result["duplicates"]) == (1, 1)
    assert len(result["event_uuids"]) == 2


def test_the_same_uuid_with_other_content_is_a_conflict_and_never_overwrites(post_events):
    key = str(uuid.uuid4())
    post_events(event(event_uuid=key, timestamp="2026-04-23T20:50:23Z"))
    result = post_events(
        event(event_uuid=key, timestamp="2026-04-23T20:50:23Z", success=False)
    ).json()
    assert result["accepted"] == 0
    assert [c["event_uuid"] for c in result["conflicts"]] == [key]
    assert "immutable" in result["conflicts"][0]["message"]
    assert Event.objects.get().success is True


def test_a_conflict_within_one_batch_is_reported(post_events):
    key = str(uuid.uuid4())
    result = post_events(
        [
            event(event_uuid=key, timestamp="2026-04-23T20:50:23Z"),
            event(event_uuid=key, timestamp="2026-04-23T20:50:24Z"),
        ]
    ).json()
    assert result["accepted"] == 1
    assert result["conflicts"][0]["index"] == 1


NUMBERS = {"huge": 1e300, "tenth": 0.1, "big": 10**40, "tiny": 5e-324, "negative": -2.5e-8}
SENT_AT = "2026-04-23T20:50:23.597554Z"


def test_an_exact_resend_of_extreme_numbers_is_a_duplicate_not_a_conflict(post_events):
    key = str(uuid.uuid4())
    body = event(event_uuid=key, timestamp=SENT_AT, payload={"method": "password", **NUMBERS})
    assert post_events(body).json()["accepted"] == 1
    again = post_events(body).json()
    assert (again["accepted"], again["duplicates"], again["conflicts"]) == (0, 1, [])
    # The same event with its payload keys in another order and its numbers
    # spelled otherwise is the same event.
    respelled = event_text(
        '{"negative": -0.000000025, "big": 1%s, "tiny": 4.9e-324, "tenth": 1.0e-1, '
        '"huge": 1E+300, "method": "password"}' % ("0" * 40),
        event_uuid=key,
        timestamp=SENT_AT,
    )
    again = post_events(respelled).json()
    assert (again["accepted"], again["duplicates"], again["conflicts"]) == (0, 1, [])
    assert Event.objects.count() == 1


@pytest.mark.parametrize(
    "changed",
    [{"huge": 1e299}, {"tenth": 0.2}, {"big": 10**40 + 1}, {"tiny": 0}, {"flag": 1}],
)
def test_a_resend_with_a_changed_number_is_a_conflict(post_events, changed):
    key = str(uuid.uuid4())
    stored = {"method": "password", "flag": True, **NUMBERS}
    post_events(event(event_uuid=key, timestamp=SENT_AT, payload=stored))
    result = post_events(
        event(event_uuid=key, timestamp=SENT_AT, payload={**stored, **changed})
    ).json()
    assert result["duplicates"] == 0
    assert [c["event_uuid"] for c in result["conflicts"]] == [key]
    # What is stored is unchanged: the original is still a duplicate of it.
    resent = post_events(event(event_uuid=key, timestamp=SENT_AT, payload=stored))
    assert resent.json()["duplicates"] == 1


def test_copies_of_a_conflicting_event_in_one_batch_are_one_conflict_not_a_duplicate(
    post_events,
):
    key = str(uuid.uuid4())
    post_events(event(event_uuid=key, timestamp=SENT_AT, success=True))
    other = event(event_uuid=key, timestamp=SENT_AT, success=False)
    result = post_events([other, other]).json()
    assert (result["accepted"], result["duplicates"]) == (0, 0)
    assert [(c["index"], c["event_uuid"]) for c in result["conflicts"]] == [(0, key)]
    assert "immutable" in result["conflicts"][0]["message"]
    assert Event.objects.get().success is True


def test_each_copy_in_a_batch_is_compared_with_the_stored_event(post_events):
    stored, new = str(uuid.uuid4()), str(uuid.uuid4())
    post_events(event(event_uuid=stored, timestamp=SENT_AT, success=True))
    result = post_events(
        [
            event(event_uuid=stored, timestamp=SENT_AT, success=False),  # a conflict
            event(event_uuid=stored, timestamp=SENT_AT, success=True),  # a duplicate
            event(event_uuid=new, timestamp=SENT_AT, success=True),  # stored now
            event(event_uuid=new, timestamp=SENT_AT, success=False),  # conflicts with 2
            event(event_uuid=new, timestamp=SENT_AT, success=False),  # the same conflict
        ]
    ).json()
    assert (result["accepted"], result["duplicates"]) == (1, 1)
    assert [(c["index"], c["event_uuid"]) for c in result["conflicts"]] == [(0, stored), (3, new)]
    assert "this batch" in result["conflicts"][1]["message"]
    assert HourlyCount.objects.get().n == 2


def test_an_unknown_event_type_is_stored_as_uncatalogued(post_events, viewer_client):
    response = post_events(
        event(
            event_type="quota_exceeded",
            subject_type="project",
            subject="p1",
            payload={"anything": [1, 2]},
        )
    )
    assert response.status_code == 201
    page = viewer_client.get("/catalog/").content.decode()
    assert "quota_exceeded" in page.split('id="uncatalogued"')[1]


@pytest.mark.parametrize(
    ("overrides", "field", "message"),
    [
        ({"timestamp": "2026-04-23 20:50:23"}, "timestamp", "no UTC offset"),
        ({"timestamp": "yesterday"}, "timestamp", "RFC 3339"),
        ({"timestamp": "2026-02-30T10:00:00Z"}, "timestamp", "not a valid date"),
        ({"event_type": "User Login"}, "event_type", "lowercase slug"),
        ({"event_type": None}, "event_type", "required"),
        ({"subject": ""}, "subject", "must not be empty"),
        ({"subject": " \t\u00a0\u2003"}, "subject", "must not be empty"),
        ({"subject_type": "User"}, "subject_type", "slug"),
        ({"caller": 5}, "caller", "must be a string"),
        ({"success": "true"}, "success", "true or false"),
        ({"payload": [1, 2]}, "payload", "JSON object"),
        ({"payload": "x"}, "payload", "JSON object"),
        ({"payload": {"method": 3}}, "payload.method", "type string"),
        ({"subject": "a\x00b"}, "subject", "NUL"),
        ({"payload": {"k": "a\x00b"}}, "payload", "NUL"),
        ({"payload": {"k\x00": "v"}}, "payload", "NUL"),
        ({"subject": "x" * 300}, "subject", "longer than 255"),
        ({"payload": {"blob": "x" * 70000}}, "payload", "larger than 64 KB"),
        # 40,000 characters, 80,000 bytes: the limit is in bytes.
        ({"payload": {"blob": "é" * 40000}}, "payload", "larger than 64 KB"),
        ({"payload": nested(17)}, "payload", "nested deeper than 16 levels"),
        ({"event_uuid": "not-a-uuid"}, "event_uuid", "UUID"),
        ({"colour": "red"}, "colour", "not a field"),
        (
            {"event_type": "org_created", "subject_type": "organization", "payload": {}},
            "payload.category",
            "required",
        ),
        (
            {
                "event_type": "facility_status",
                "subject_type": "facility",
                "payload": {"status": "on fire"},
            },
            "payload.status",
            "one of up",
        ),
        (
            {"event_type": "org_created", "subject_type": "project", "payload": {"category": "x"}},
            "subject_type",
            "must be 'organization'",
        ),
    ],
)
def test_it_rejects_a_bad_field_naming_it_and_writes_nothing(
    post_events, overrides, field, message
):
    response = post_events([event(), event(**overrides)])
    assert response.status_code == 400
    body = response.json()
    assert body["error"].startswith("1 of 2 events are invalid")
    assert any(
        d["index"] == 1 and d["field"] == field and message in d["message"] for d in body["details"]
    ), body
    assert Event.objects.count() == 0
    assert HourlyCount.objects.count() == 0


def status_report(**payload) -> dict:
    return event(
        event_type="facility_status",
        caller="isi-controller",
        subject="isi",
        subject_type="facility",
        payload={"status": "up", **payload},
    )


@pytest.mark.parametrize(
    ("interval", "message"),
    [
        (0, "at least 1"),
        (-600, "at least 1"),
        (7 * 24 * 3600 + 1, "at most 604800"),
        ("6h", "type integer"),
        (600.5, "type integer"),
        (True, "type integer"),
        (None, "type integer"),
    ],
)
def test_a_status_reports_bad_interval_is_a_400_naming_payload_interval(
    post_events, interval, message
):
    response = post_events([status_report(interval=interval)])
    assert response.status_code == 400
    (detail,) = response.json()["details"]
    assert detail["field"] == "payload.interval"
    assert message in detail["message"]
    assert Event.objects.count() == 0


@pytest.mark.parametrize("interval", [1, 6 * 3600, 7 * 24 * 3600])
def test_a_status_report_with_an_interval_of_up_to_a_week_is_stored(post_events, interval):
    assert post_events([status_report(interval=interval)]).status_code == 201
    assert Event.objects.get().payload == {"status": "up", "interval": interval}


def test_it_rejects_timestamps_more_than_five_minutes_ahead(post_events):
    now = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
    with time_machine.travel(now, tick=False):
        late = post_events(event(timestamp=(now + timedelta(minutes=6)).isoformat()))
        assert Event.objects.count() == 0
        ok = post_events(event(timestamp=(now + timedelta(minutes=4)).isoformat()))
    assert late.status_code == 400
    assert late.json()["details"][0]["field"] == "timestamp"
    assert ok.status_code == 201
    assert Event.objects.count() == 1


@pytest.mark.parametrize(
    "timestamp",
    ["0001-01-01T00:00:00+01:00", "1969-12-31T23:59:59.999999Z", "1970-01-01T00:30:00+01:00"],
)
def test_it_rejects_timestamps_before_1970_and_writes_nothing(post_events, timestamp):
    response = post_events([event(), event(timestamp=timestamp)])
    assert response.status_code == 400
    assert response.json()["details"] == [
        {"index": 1, "field": "timestamp", "message": "is before 1970-01-01T00:00:00Z"}
    ]
    assert Event.objects.count() == 0
    assert HourlyCount.objects.count() == 0


def test_it_accepts_backfilled_timestamps_from_1970_on_and_reads_them_back(post_events, api_client):
    sent = {
        str(uuid.uuid4()): "1970-01-01T00:00:00Z",
        str(uuid.uuid4()): "1970-01-01T01:00:00+01:00",
        str(uuid.uuid4()): "1999-12-31T23:59:59.5-05:00",
    }
    response = post_events([event(event_uuid=k, timestamp=ts) for k, ts in sent.items()])
    assert response.status_code == 201
    assert response.json()["accepted"] == 3
    for key, timestamp in sent.items():
        stored = api_client.get(f"/api/v1/events/{key}").json()
        assert datetime.fromisoformat(stored["timestamp"]) == datetime.fromisoformat(timestamp)
    listed = api_client.get("/api/v1/events?until=1970-01-02T00:00:00Z")
    assert listed.status_code == 200
    assert len(listed.json()["events"]) == 2


def test_it_lists_every_bad_event_of_a_batch(post_events):
    response = post_events([event(success=None), event(), event(subject=""), 7])
    assert response.status_code == 400
    assert sorted({d["index"] for d in response.json()["details"]}) == [0, 2, 3]


@pytest.mark.parametrize(
    ("body", "content_type", "status", "message"),
    [
        (b"\xff\xfe{}", "application/json", 400, "not valid UTF-8"),
        (b"{not json", "application/json", 400, "not valid JSON"),
        (b"", "application/json", 400, "empty"),
        (b"[]", "application/json", 400, "empty"),
        (b'{"events": 5}', "application/json", 400, "must be an array"),
        (b'{"success": NaN}', "application/json", 400, "NaN"),
        (b'{"n": ' + b"9" * 5000 + b"}", "application/json", 400, "not valid JSON"),
        (b"[" * 100_000 + b"]" * 100_000, "application/json", 400, "not valid JSON"),
        (b"<xml/>", "text/xml", 415, "application/json"),
    ],
)
def test_it_answers_unreadable_bodies_with_a_json_error(
    post_events, body, content_type, status, message
):
    response = post_events(body, content_type=content_type)
    assert response.status_code == status
    assert message in response.json()["error"]
    assert Event.objects.count() == 0


def test_a_chunked_body_without_a_length_is_refused_with_411_not_read_as_empty(api_client):
    # What a WSGI server hands Django for `Transfer-Encoding: chunked`: the
    # body in wsgi.input and no CONTENT_LENGTH, so request.body would be b"".
    response = api_client.generic(
        "POST",
        "/api/v1/events",
        CONTENT_TYPE="application/json",
        HTTP_TRANSFER_ENCODING="chunked",
        **{"wsgi.input": FakePayload(json.dumps(event()).encode())},
    )
    assert response.status_code == 411
    assert response["Content-Type"] == "application/json"
    body = response.json()
    assert "Content-Length" in body["error"]
    assert [d["field"] for d in body["details"]] == ["body"]
    assert Event.objects.count() == 0


@pytest.mark.parametrize(
    ("payload", "field", "message"),
    [
        ('{"n": 1e-400}', "payload.n", "number 1e-400 is too small"),
        ('{"n": -2.5E-350}', "payload.n", "number -2.5E-350 is too small"),
        ('{"a": [1, {"n": 0.1e-330}]}', "payload.a.1.n", "number 0.1e-330 is too small"),
        ('{"n": 1e400}', "payload.n", "number 1e400 is out of range"),
        ('{"a": {"b": [-1e999]}}', "payload.a.b.0", "number -1e999 is out of range"),
    ],
)
def test_it_rejects_numbers_a_float_cannot_hold_naming_their_payload_key(
    post_events, payload, field, message
):
    bad = event_text(payload)
    for body, content_type in [
        (f"[{json.dumps(event())}, {bad}]", "application/json"),
        (f"{json.dumps(event())}\n{bad}\n", "application/x-ndjson"),
    ]:
        response = post_events(body, content_type=content_type)
        assert response.status_code == 400, body
        details = response.json()["details"]
        assert [(d["index"], d["field"]) for d in details] == [(1, field)]
        assert details[0]["message"].startswith(message)
    assert Event.objects.count() == 0


def test_zero_and_the_smallest_floats_are_numbers_like_any_other(post_events):
    response = post_events(
        event_text('{"zero": 0.0, "zeros": -0.000e-500, "small": 5e-324, "e": 0E0}')
    )
    assert response.status_code == 201, response.json()
    assert Event.objects.get().payload["small"] == 5e-324


def test_a_payload_nested_to_the_limit_is_stored(post_events):
    response = post_events(event(payload={"method": "password", "deep": nested(15)}))
    assert response.status_code == 201, response.json()
    assert Event.objects.get().payload["deep"] == nested(15)


def test_it_rejects_payloads_nested_too_deeply(post_events):
    payload: dict = {}
    inner = payload
    for _ in range(40):
        inner["k"] = {}
        inner = inner["k"]
    response = post_events(event(payload=payload))
    assert response.status_code == 400
    assert "nested deeper" in response.json()["details"][0]["message"]


def test_it_rejects_lone_surrogates(post_events):
    response = post_events(
        '{"event_type": "user_login", "caller": "a", "subject": "\\ud800", '
        '"subject_type": "user", "success": true}'
    )
    assert response.status_code == 400
    assert response.json()["details"][0]["field"] == "subject"


def test_it_rejects_lone_surrogates_inside_the_payload(post_events):
    response = post_events(
        '{"event_type": "user_login", "caller": "a", "subject": "a", '
        '"subject_type": "user", "success": true, "payload": {"note": ["ok", "\\udc00"]}}'
    )
    assert response.status_code == 400
    assert response.json()["details"][0] == {
        "index": 0,
        "field": "payload",
        "message": "contains invalid Unicode (a lone surrogate)",
    }
    assert Event.objects.count() == 0


def test_the_text_backslash_u0000_in_a_payload_is_kept_not_taken_for_a_nul(post_events):
    # The fast NUL check looks for JSON's escape; this is the same six
    # characters typed by a user, which is fine to store.
    response = post_events(event(payload={"method": "password", "note": "\\u0000"}))
    assert response.status_code == 201
    assert Event.objects.get().payload["note"] == "\\u0000"


def test_python_callers_cannot_store_nan_in_a_payload():
    # seed_demo and import_events call ingest() with Python objects, which
    # the JSON parser's NaN check never saw.
    with pytest.raises(ingest.IngestError) as caught:
        ingest.ingest([event(payload={"method": "password", "load": float("nan")})])
    assert caught.value.details[0]["field"] == "payload"
    assert "NaN" in caught.value.details[0]["message"]
    assert Event.objects.count() == 0


def test_python_callers_cannot_put_a_non_json_value_in_a_payload():
    with pytest.raises(ingest.IngestError) as caught:
        ingest.ingest([event(payload={"method": "password", "at": datetime.now(UTC)})])
    assert caught.value.details == [
        {"index": 0, "field": "payload", "message": "contains a value that JSON cannot hold"}
    ]
    assert Event.objects.count() == 0


def test_an_ndjson_line_that_is_not_json_is_reported_with_its_line(post_events):
    body = json.dumps(event()) + "\n{oops\n"
    response = post_events(body, content_type="application/x-ndjson")
    assert response.status_code == 400
    assert response.json()["details"][0]["message"].startswith("line 2:")


def test_it_refuses_more_than_the_event_limit(post_events, settings):
    settings.INGEST_MAX_EVENTS = 3
    response = post_events([event()] * 4)
    assert response.status_code == 413
    assert "Too many events" in response.json()["error"]
    assert Event.objects.count() == 0
    assert HourlyCount.objects.count() == 0


def test_it_refuses_a_body_over_the_size_limit(api_client, settings):
    settings.INGEST_MAX_BODY_BYTES = 1000
    response = api_client.post(
        "/api/v1/events", data=json.dumps([event()] * 20), content_type="application/json"
    )
    assert response.status_code == 413
    assert Event.objects.count() == 0


def test_the_hourly_pre_aggregate_counts_each_stored_event_once(post_events):
    post_events(
        [
            event(timestamp="2026-04-23T20:10:00Z"),
            event(timestamp="2026-04-23T20:50:00Z"),
            event(timestamp="2026-04-23T21:00:00Z", success=False),
        ]
    )
    counts = {(c.bucket.hour, c.success): c.n for c in HourlyCount.objects.all()}
    assert counts == {(20, True): 2, (21, False): 1}


def test_gzip_is_not_mistaken_for_json(api_client):
    response = api_client.post(
        "/api/v1/events", data=gzip.compress(b"[]"), content_type="application/json"
    )
    assert response.status_code == 400


def _daily_callers() -> dict:
    return {
        (c.day.date().isoformat(), c.caller): (c.events, c.logins, c.failures)
        for c in DailyCallerCount.objects.all()
    }


def test_a_resent_event_is_counted_once_by_the_daily_pre_aggregates(post_events):
    batch = [
        event(event_uuid=str(uuid.uuid4()), timestamp="2026-04-23T10:00:00Z"),
        event(event_uuid=str(uuid.uuid4()), timestamp="2026-04-23T23:59:59Z", success=False),
        event(
            event_uuid=str(uuid.uuid4()),
            timestamp="2026-04-23T12:00:00Z",
            event_type="experiment_created",
            subject="exp1",
            subject_type="experiment",
            payload={"project": "botnets"},
        ),
        member_added := event(
            event_uuid=str(uuid.uuid4()),
            timestamp="2026-04-23T13:00:00Z",
            event_type="org_member_added",
            subject="isi",
            subject_type="organization",
            target="bob",
            payload={"kind": "usermember", "role": "member", "state": "active"},
        ),
    ]
    assert post_events(batch).json()["accepted"] == 4
    # The whole batch again, and one event of it alone: all duplicates.
    assert post_events(batch).json()["duplicates"] == 4
    assert post_events(member_added).json()["duplicates"] == 1

    # Two logins (one failed) and two other events, on one UTC day.
    assert _daily_callers() == {("2026-04-23", "alice"): (4, 2, 1)}
    assert list(
        DailyProjectCount.objects.values_list("project", "events", "experiments", "realizations")
    ) == [("botnets", 1, 1, 0)]
    membership = OrgMembership.objects.get()
    assert (membership.org, membership.member, membership.removed) == ("isi", "bob", False)


def test_a_late_event_lands_in_its_own_utc_day(post_events):
    post_events(event(timestamp="2026-04-23T20:00:00Z"))
    # Sent afterwards, but from ten days before (and from the last second
    # of a UTC day: the day is UTC's, not the sender's offset's).
    post_events(event(timestamp="2026-04-14T01:30:00+02:00", success=False))
    post_events(event(timestamp="2026-04-13T23:59:59Z", caller="bob"))
    assert _daily_callers() == {
        ("2026-04-23", "alice"): (1, 1, 0),
        ("2026-04-13", "alice"): (1, 1, 1),
        ("2026-04-13", "bob"): (1, 1, 0),
    }


def test_a_late_membership_event_never_replaces_a_newer_one(post_events):
    def membership(ts: str, event_type: str) -> dict:
        payload = {"kind": "usermember"}
        if event_type != "org_member_deleted":
            payload |= {"role": "member", "state": "active"}
        return event(
            timestamp=ts,
            event_type=event_type,
            subject="isi",
            subject_type="organization",
            target="bob",
            payload=payload,
        )

    post_events(membership("2026-04-20T10:00:00Z", "org_member_deleted"))
    # Older than the removal: the removal stays the latest.
    post_events(membership("2026-04-19T10:00:00Z", "org_member_added"))
    assert OrgMembership.objects.get().removed is True
    # A failed event is no membership change at all.
    post_events(membership("2026-04-21T10:00:00Z", "org_member_added") | {"success": False})
    assert OrgMembership.objects.get().removed is True
    post_events(membership("2026-04-22T10:00:00Z", "org_member_added"))
    assert OrgMembership.objects.get().removed is False


def test_every_kind_of_ingest_answer_is_exactly_the_documented_schema(post_events):
    # The view returns its JSON as built, not through ninja's response model,
    # so this holds it to IngestOut: what the OpenAPI schema promises.
    from audit.api import IngestOut

    stored = event(event_uuid=str(uuid.uuid4()), timestamp="2026-04-23T20:50:23Z")
    answers = [
        post_events(stored),  # accepted
        post_events([stored, event()]),  # a duplicate and a new one
        post_events({**stored, "caller": "mallory"}),  # a conflict
    ]
    for response in answers:
        assert response.status_code == 201
        assert response["Content-Type"] == "application/json; charset=utf-8"
        body = response.json()
        assert IngestOut.model_validate(body).model_dump(mode="json") == body
    assert [a.json()["accepted"] for a in answers] == [1, 1, 0]
    assert answers[1].json()["duplicates"] == 1
    assert answers[2].json()["conflicts"][0]["event_uuid"] == stored["event_uuid"]


def test_ingest_keeps_working_once_its_statement_is_prepared_on_the_connection(post_events):
    # psycopg prepares a statement on its fifth run (DB_PREPARED_STATEMENTS):
    # the posts after that use the prepared INSERT and must store the same.
    sent = [
        event(event_uuid=str(uuid.uuid4()), timestamp="2026-04-23T20:50:23Z", caller=f"u{n}")
        for n in range(8)
    ]
    for one in sent:
        assert post_events(one).json()["accepted"] == 1
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_prepared_statements WHERE statement LIKE %s",
            ["%INSERT INTO events%"],
        )
        assert cursor.fetchone()[0] == 1
    assert Event.objects.filter(event_uuid__in=[e["event_uuid"] for e in sent]).count() == 8
    resent = post_events(sent[0]).json()
    assert (resent["accepted"], resent["duplicates"]) == (0, 1)


def test_the_ingest_statement_stays_within_psycopgs_parse_cache():
    # psycopg re-parses a statement longer than this on every execute: the
    # CTE that pushed the readable source past 4 KB cost a tenth of a POST.
    from psycopg._queries import MAX_CACHED_STATEMENT_LENGTH

    from audit.ingest import INSERT_SQL

    assert len(INSERT_SQL.encode()) <= MAX_CACHED_STATEMENT_LENGTH
    assert "--" not in INSERT_SQL and "\n" not in INSERT_SQL
