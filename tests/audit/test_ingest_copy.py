"""Batches of COPY_MIN_ROWS new events or more go in by binary COPY
(audit/ingest_copy.py): what they store, and what happens when one of their
uuids is stored already."""

import json
import uuid
from datetime import UTC, datetime, timedelta, timezone

import pytest
from django.db import connection, transaction

from audit import ingest
from audit.ingest_copy import COPY_MIN_ROWS
from audit.models import Event, HourlyCount
from tests.audit.adopt_helpers import drift
from tests.factories import like

pytestmark = pytest.mark.django_db

event = like(payload={"method": "password"})
START = datetime(2026, 4, 23, 20, 50, 23, 597554, tzinfo=UTC)
# Every kind of value a column or a payload can hold, one per event in turn.
PAYLOADS = [
    {"method": "password", "huge": 1e300, "big": 10**40, "tiny": 5e-324, "negative": -2.5e-8},
    {"note": "caf\u00e9 \u65e5\u672c \U0001f600", "quote": "a\"b'c\\d", "text": "\\u0000"},
    {"nested": {"list": [1, "two", None, True, {"deep": []}]}, "empty": {}},
    {"project": "botnets", "kind": "projectmember", "role": "member"},
]


def batch(count: int, *, start: datetime = START) -> list[dict]:
    """`count` logins of varied content: failures with an error message,
    callers other than the subject, a target on some, microsecond times
    with offsets."""
    zones = [UTC, timezone(timedelta(hours=5, minutes=30)), timezone(timedelta(hours=-4))]
    out = []
    for i in range(count):
        stamp = (start + timedelta(minutes=7 * i, microseconds=i)).astimezone(zones[i % 3])
        out.append(
            event(
                event_uuid=str(uuid.uuid4()),
                timestamp=stamp.isoformat().replace("+00:00", "Z"),
                caller=f"user{i % 11}",
                subject=f"user{i % 13}",
                success=i % 5 != 0,
                error_message=None if i % 5 else f"bad password \u2013 try {i}",
                target=None if i % 2 else f"target{i}",
                payload=PAYLOADS[i % len(PAYLOADS)],
            )
        )
    return out


def test_a_large_batch_stores_every_field_as_a_small_one_does(post_events):
    large = batch(COPY_MIN_ROWS + 20)
    assert post_events(large).json()["accepted"] == len(large)
    # The same content under other uuids, in smaller batches: INSERT_SQL.
    twins = {e["event_uuid"]: str(uuid.uuid4()) for e in large}
    for i in range(0, len(large), 70):
        small = [{**e, "event_uuid": twins[e["event_uuid"]]} for e in large[i : i + 70]]
        assert post_events(small).json()["accepted"] == len(small)
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT a.event_uuid FROM events AS a JOIN events AS b"
            " ON b.event_uuid = (%(twins)s::jsonb ->> a.event_uuid::text)::uuid"
            " WHERE (a.timestamp, a.event_type, a.caller, a.subject, a.subject_type, a.target,"
            " a.success, a.error_message, a.payload, a.payload::text)"
            " IS NOT DISTINCT FROM (b.timestamp, b.event_type, b.caller, b.subject,"
            " b.subject_type, b.target, b.success, b.error_message, b.payload, b.payload::text)",
            {"twins": json.dumps(twins)},
        )
        assert len(cursor.fetchall()) == len(large)
    stored = Event.objects.get(event_uuid=large[1]["event_uuid"])
    assert stored.payload == PAYLOADS[1]
    assert stored.timestamp == START + timedelta(minutes=7, microseconds=1)
    assert stored.error_message is None and stored.target is None
    failed = Event.objects.get(event_uuid=large[5]["event_uuid"])
    assert (failed.success, failed.error_message) == (False, "bad password \u2013 try 5")


def test_a_large_batch_holding_a_stored_event_stores_the_rest_once(post_events):
    large = batch(COPY_MIN_ROWS + 50)
    assert post_events(large[70]).json()["accepted"] == 1
    result = post_events([*large, large[3]]).json()
    assert (result["accepted"], result["duplicates"], result["conflicts"]) == (
        len(large) - 1,
        2,
        [],
    )
    assert Event.objects.count() == len(large)
    assert drift() == {}
    assert sum(HourlyCount.objects.values_list("n", flat=True)) == len(large)
    again = post_events(large).json()
    assert (again["accepted"], again["duplicates"]) == (0, len(large))
    assert Event.objects.count() == len(large) and drift() == {}


@pytest.mark.django_db(transaction=True)
def test_outside_a_transaction_a_resent_large_batch_is_sorted_by_insert(post_events):
    # As gunicorn runs it: the COPY is a transaction of its own, which the
    # stored uuid ends; INSERT_SQL then stores the rest.
    large = batch(COPY_MIN_ROWS + 5)
    assert post_events(large[40:60]).json()["accepted"] == 20
    result = post_events(large).json()
    assert (result["accepted"], result["duplicates"]) == (len(large) - 20, 20)
    assert Event.objects.count() == len(large) and drift() == {}


def test_a_large_batch_with_a_changed_stored_event_reports_it_and_stores_the_rest(post_events):
    large = batch(COPY_MIN_ROWS)
    post_events(large[-1])
    changed = {**large[-1], "success": not large[-1]["success"]}
    result = post_events([*large[:-1], changed]).json()
    assert result["accepted"] == len(large) - 1
    assert [c["index"] for c in result["conflicts"]] == [len(large) - 1]
    assert Event.objects.get(event_uuid=changed["event_uuid"]).success == large[-1]["success"]
    assert Event.objects.count() == len(large) and drift() == {}


def test_inside_a_transaction_a_stored_uuid_leaves_the_transaction_usable():
    large = batch(COPY_MIN_ROWS + 10)
    with transaction.atomic():
        assert ingest.ingest(large[:1]).accepted == 1
        result = ingest.ingest(large)
        assert (result.accepted, result.duplicates) == (len(large) - 1, 1)
        # The failed COPY was taken back to its savepoint, not the whole block.
        assert Event.objects.count() == len(large)
    assert drift() == {}
