"""The feed the trigger on `events` fills: only while a stream is active,
for every writer, and pruned once every destination has passed it."""

import uuid
from datetime import UTC, datetime

from audit.ingest import ingest
from streams.models import StreamDestination
from tests.factories import event, row, store
from tests.receivers import WebhookReceiver
from tests.streams.conftest import (
    feed_rows,
    later,
    own_connection,
    portal_insert,
    send_until,
    uuids,
)


def test_no_feed_rows_are_written_while_no_destination_is_active(transactional_db):
    StreamDestination.objects.create(name="paused", url="http://127.0.0.1:9/", active=False)
    ingested = store(event())[0]["event_uuid"]
    written = str(row().event_uuid)
    by_portal = str(uuid.uuid4())
    with own_connection() as portal:
        portal_insert(portal, by_portal, datetime.now(UTC))

    assert feed_rows(ingested, written, by_portal) == 0


def test_every_writer_adds_to_the_feed_while_a_destination_is_active(transactional_db):
    StreamDestination.objects.create(name="siem", url="http://127.0.0.1:9/")
    login = store(event())[0]
    ingested = login["event_uuid"]
    written = str(row().event_uuid)
    by_portal = str(uuid.uuid4())
    with own_connection() as portal:
        portal_insert(portal, by_portal, datetime.now(UTC))
    # A duplicate (ON CONFLICT DO NOTHING) inserts nothing, and feeds nothing.
    assert ingest([login]).duplicates == 1

    assert feed_rows(ingested, written, by_portal) == 3
    assert feed_rows(ingested) == 1


def test_the_feed_is_pruned_after_delivery_and_kept_for_a_failing_destination(receiver):
    siem = StreamDestination.objects.create(name="siem", url=receiver.url, secret=receiver.secret)
    down = WebhookReceiver(secret="s", status=503).start()
    try:
        lake = StreamDestination.objects.create(name="lake", url=down.url, secret="s")
        sent = store(event(), event())
        send_until(lambda: bool(receiver.received) and down.refused > 0, now=later)
        assert feed_rows(*(e["event_uuid"] for e in sent)) == 2  # the lake still needs them

        lake.delete()  # a deleted destination holds nothing back
        send_until(lambda: feed_rows() == 0)
        siem.refresh_from_db()
        assert siem.events_sent == 2
    finally:
        down.stop()


def test_a_resumed_destination_starts_again_at_the_end_of_the_feed(receiver, destination):
    destination.active = False
    destination.save()
    store(event())  # while paused
    send_until(lambda: feed_rows() == 0)

    destination.active = True
    destination.save()
    after = store(event())[0]["event_uuid"]
    send_until(lambda: bool(receiver.received))
    assert uuids(receiver) == [after]
