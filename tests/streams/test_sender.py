"""What a receiver gets: every event, whoever wrote it, as the export's
NDJSON lines, signed, with the stream token; in order; through outages."""

import json
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from audit.export import Export
from audit.models import Event
from sphere_stats.webhooks import DELIVERY_HEADER, SIGNATURE_HEADER
from sphere_stats.worker import JOBS, run_job
from streams import sender
from streams.models import StreamDestination
from streams.sender import send_all
from tests.factories import event, row, store
from tests.streams.conftest import (
    feed_rows,
    later,
    lines,
    own_connection,
    portal_insert,
    send_until,
    uuids,
)

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def exported_line(event_uuid: str) -> bytes:
    queryset = Event.objects.filter(event_uuid=event_uuid)
    return b"".join(Export(queryset, format="ndjson").body())


def test_events_from_ingest_the_orm_and_raw_sql_arrive_as_the_exports_lines(receiver, destination):
    ingested = store(event(), event(caller="carol", subject="carol"))
    written = row(event_type="org_created", subject_type="organization", subject="acme")
    by_portal = str(uuid.uuid4())
    with own_connection() as portal:
        portal_insert(portal, by_portal, datetime.now(UTC))
    expected = {*(e["event_uuid"] for e in ingested), str(written.event_uuid), by_portal}

    send_until(lambda: set(uuids(receiver)) >= expected)

    assert sorted(uuids(receiver)) == sorted(expected)
    body = b"".join(r.body for r in receiver.received)
    for event_uuid in expected:
        assert exported_line(event_uuid) in body.splitlines(keepends=True)


def test_the_worker_job_sends_the_stream(receiver, destination):
    sent = store(event())[0]["event_uuid"]
    job = JOBS["streams.send"]
    assert job.interval == 5  # STREAM_SEND_SECONDS

    deadline = later(0)
    while sent not in uuids(receiver):
        assert run_job(job) is not None
        assert datetime.now(UTC) < deadline + timedelta(seconds=60), "not delivered in time"

    assert uuids(receiver) == [sent]


def test_the_receiver_can_check_the_signature_and_the_token(receiver, destination):
    sent = store(event())[0]["event_uuid"]
    send_until(lambda: bool(receiver.received))

    request = receiver.received[0]
    assert request.signed  # X-Sphere-Signature is the HMAC of the body with the secret
    assert request.headers[SIGNATURE_HEADER].startswith("sha256=")
    assert request.headers["X-Sphere-Stream-Token"] == destination.token
    assert request.headers["Content-Type"] == "application/x-ndjson"
    assert request.headers[DELIVERY_HEADER].startswith(f"stream-{destination.pk}-")
    assert uuids(receiver) == [sent]


def test_a_receiver_refusing_the_signature_loses_nothing_once_the_secret_matches(receiver):
    destination = StreamDestination.objects.create(
        name="lake", url=receiver.url, secret="not-the-receivers"
    )
    sent = store(event())[0]["event_uuid"]
    send_until(lambda: receiver.refused > 0)
    destination.refresh_from_db()
    assert destination.last_error == "HTTP 401" and destination.events_sent == 0

    destination.secret = receiver.secret
    destination.save()
    send_until(lambda: bool(receiver.received), now=later)

    assert uuids(receiver) == [sent]


def test_an_outage_is_caught_up_in_order_exactly_once(receiver, destination, settings):
    settings.STREAM_BATCH_SIZE = 5
    receiver.status = 503
    # One request, so all twelve become visible to the sender at once.
    sent = store(*(event(timestamp=T0 + timedelta(seconds=i)) for i in range(12)), now=T0)
    expected = [e["event_uuid"] for e in sent]

    send_until(lambda: receiver.refused > 0)
    destination.refresh_from_db()
    assert destination.last_error == "HTTP 503"
    assert destination.failing_since is not None and destination.events_sent == 0
    assert destination.next_attempt_at > destination.failing_since  # backing off

    receiver.stop()  # now nothing even listens
    send_all(later())
    destination.refresh_from_db()
    assert "Connection refused" in destination.last_error and destination.failures == 2

    receiver.status = 200
    receiver.start()
    send_until(lambda: len(uuids(receiver)) >= 12, now=lambda: later(7200))

    assert uuids(receiver) == expected  # each once, in order
    assert [len(r.body.splitlines()) for r in receiver.received] == [5, 5, 2]
    assert len(set(receiver.deliveries())) == 3
    destination.refresh_from_db()
    assert destination.events_sent == 12 and destination.last_error == ""
    assert destination.failing_since is None and destination.failures == 0


def test_a_batch_resent_after_a_crash_is_the_same_batch(receiver, destination, monkeypatch):
    expected = [e["event_uuid"] for e in store(event(), event(caller="carol"))]
    real_post = sender.post

    def post_then_crash(*args, **kwargs):
        real_post(*args, **kwargs)
        raise RuntimeError("the worker died before recording the success")

    monkeypatch.setattr(sender, "post", post_then_crash)
    with pytest.raises(RuntimeError):
        send_until(lambda: bool(receiver.received))
    monkeypatch.setattr(sender, "post", real_post)
    send_until(lambda: len(receiver.received) >= 2)

    first, second = receiver.received
    assert first.body == second.body  # at least once: the same events again...
    assert receiver.deliveries()[0] == receiver.deliveries()[1]  # ...under the same id
    assert sorted(set(uuids(receiver))) == sorted(expected)
    send_all(later())
    assert len(receiver.received) == 2  # and then never again


def test_a_transaction_still_open_is_delivered_when_it_commits_not_skipped(receiver, destination):
    late, early = str(uuid.uuid4()), str(uuid.uuid4())
    with own_connection(autocommit=False) as slow, own_connection() as fast:
        # Users seen before: a first mention refolds entities under one lock,
        # which would make the second writer wait for the first.
        for user in ("bob", "carol"):
            portal_insert(fast, str(uuid.uuid4()), T0 - timedelta(days=9), user=user)
        # The slow transaction writes the older event first and stays open
        # while a newer one commits and the sender runs.
        portal_insert(slow, late, T0)
        portal_insert(fast, early, T0 + timedelta(days=2), user="carol")
        for _ in range(3):
            send_all(later())
        assert not {late, early} & set(uuids(receiver))  # held back, not skipped past
        slow.commit()

    send_until(lambda: {late, early} <= set(uuids(receiver)))
    assert [u for u in uuids(receiver) if u in (late, early)] == [late, early]


def test_lines_of_one_insert_arrive_in_timestamp_order(receiver, destination):
    ids = [str(uuid.uuid4()) for _ in range(3)]
    with own_connection() as portal:
        portal.execute(
            "INSERT INTO events (event_uuid, timestamp, event_type, caller, subject,"
            " subject_type, success, payload)"
            " SELECT u, t, 'user_login', 'bob', 'bob', 'user', true, '{}'"
            " FROM unnest(%(uuids)s::uuid[], %(times)s::timestamptz[]) AS v(u, t)",
            {"uuids": ids, "times": [T0 + timedelta(seconds=2), T0, T0 + timedelta(days=1)]},
        )

    send_until(lambda: len(uuids(receiver)) >= 3)
    assert uuids(receiver) == [ids[1], ids[0], ids[2]]


def test_a_destination_gets_only_its_event_types_and_passes_the_rest(receiver):
    logins = StreamDestination.objects.create(
        name="logins", url=receiver.url, secret=receiver.secret, event_types=["user_login"]
    )
    login = store(event())[0]["event_uuid"]
    row(event_type="org_created", subject_type="organization", subject="acme")
    row(event_type="portal_only_type", subject_type="user", subject="bob")
    send_until(lambda: bool(receiver.received) and feed_rows() == 0)

    assert uuids(receiver) == [login]
    logins.refresh_from_db()
    assert logins.events_sent == 1 and logins.waiting() == 0


def test_a_batch_of_only_filtered_out_events_is_not_posted(receiver):
    StreamDestination.objects.create(
        name="orgs", url=receiver.url, secret=receiver.secret, event_types=["org_created"]
    )
    store(event(), event())
    send_until(lambda: feed_rows() == 0)
    assert receiver.received == [] and receiver.refused == 0


def test_a_new_destination_starts_with_the_events_committed_after_it(receiver, destination):
    before = store(event())[0]["event_uuid"]
    send_until(lambda: bool(receiver.received))
    other = type(receiver)(secret="second").start()
    try:
        StreamDestination.objects.create(name="new", url=other.url, secret=other.secret)
        after = store(event())[0]["event_uuid"]
        send_until(lambda: bool(other.received))
        assert uuids(other) == [after]
        assert uuids(receiver) == [before, after]
    finally:
        other.stop()


def test_a_second_worker_skips_a_destination_being_sent_to(receiver, destination):
    sent = store(event())[0]["event_uuid"]
    with own_connection(autocommit=False) as other_worker:
        other_worker.execute(
            "SELECT 1 FROM stream_destinations WHERE id = %(id)s FOR UPDATE",
            {"id": destination.pk},
        )
        assert send_all(later()) == 0
        assert receiver.received == []
        other_worker.rollback()
    send_until(lambda: bool(receiver.received))
    assert uuids(receiver) == [sent]


def test_lines_carry_every_column_of_the_event(receiver, destination):
    sent = row(
        event_type="project_member_added",
        subject_type="project",
        subject="p1",
        target="bob",
        success=False,
        error_message="denied",
        payload={"kind": "usermember", "role": "member"},
    )
    send_until(lambda: bool(receiver.received))
    (line,) = lines(receiver)
    assert line == json.loads(exported_line(str(sent.event_uuid)))
    assert line["payload"] == {"kind": "usermember", "role": "member"}
    assert line["timestamp"].endswith("Z")
