"""enqueue() and a first send: what a webhook receiver gets, and what is
never queued (a rolled-back transaction, an inactive channel)."""

import json
import uuid
from datetime import UTC, datetime

import pytest
from django.db import transaction
from django.utils import timezone

from notify.models import Channel, Delivery
from notify.outbox import enqueue, send_due
from sphere_stats.webhooks import DELIVERY_HEADER
from sphere_stats.worker import JOBS, run_job

pytestmark = pytest.mark.django_db


def firing(channels, **payload) -> list[Delivery]:
    return enqueue(
        channels,
        topic="alert.firing",
        subject="Logins failing at isi",
        payload=payload or {"rule": "failed-logins", "value": 42},
        text="12 failed logins in 5 minutes.",
    )


def test_a_webhook_receiver_gets_the_signed_body_with_the_delivery_id(hook, receiver):
    (delivery,) = firing([hook], rule="failed-logins", since=datetime(2026, 5, 1, tzinfo=UTC))
    assert send_due(timezone.now()) == 1

    (received,) = receiver.received
    assert received.signed
    assert received.headers[DELIVERY_HEADER] == str(delivery.delivery_id)
    body = json.loads(received.body)
    assert body == {
        "delivery": str(delivery.delivery_id),
        "topic": "alert.firing",
        "subject": "Logins failing at isi",
        "created_at": delivery.created_at.isoformat(),
        "data": {"rule": "failed-logins", "since": "2026-05-01T00:00:00Z"},
    }
    # The bytes sent are the bytes stored when it was queued.
    assert received.body == delivery.body.encode()
    delivery.refresh_from_db()
    assert delivery.state == "delivered"
    (attempt,) = delivery.attempt_set.all()
    assert (attempt.ok, attempt.status, attempt.error) == (True, 200, "")


def test_a_receiver_with_another_secret_refuses_and_it_is_not_delivered(hook, receiver):
    hook.secret = "not-the-receivers"
    hook.save()
    (delivery,) = firing([hook])
    send_due(timezone.now())
    assert receiver.received == [] and receiver.refused == 1
    delivery.refresh_from_db()
    assert delivery.state == "retrying"
    assert delivery.last_error == "HTTP 401"


def test_deliveries_queued_in_a_rolled_back_transaction_leave_nothing(hook, receiver):
    with pytest.raises(RuntimeError), transaction.atomic():
        firing([hook])
        raise RuntimeError("the incident was not saved")
    assert not Delivery.objects.exists()
    assert send_due(timezone.now()) == 0
    assert receiver.received == []


def test_an_inactive_channel_is_queued_nothing(hook, receiver):
    quiet = Channel.objects.create(name="quiet", url=receiver.url, active=False)
    deliveries = firing(Channel.objects.all())
    assert [d.channel for d in deliveries] == [hook]
    send_due(timezone.now())
    assert len(receiver.received) == 1
    assert not quiet.deliveries.exists()


def test_what_was_queued_for_a_channel_since_deactivated_is_given_up_unsent(hook, receiver):
    (delivery,) = firing([hook])
    Channel.objects.filter(pk=hook.pk).update(active=False)
    send_due(timezone.now())
    assert receiver.received == []
    delivery.refresh_from_db()
    assert delivery.state == "gave up"
    assert delivery.last_error == "The channel is inactive."


def test_each_channel_gets_its_own_delivery_id(hook, receiver):
    other = Channel.objects.create(name="second", url=receiver.url, secret=receiver.secret)
    deliveries = firing([hook, other])
    send_due(timezone.now())
    ids = {str(d.delivery_id) for d in deliveries}
    assert len(ids) == 2
    assert set(receiver.deliveries()) == ids
    assert all(uuid.UUID(i) for i in ids)


def test_a_subject_with_line_breaks_is_queued_on_one_line(hook):
    (delivery,) = enqueue([hook], topic="test", subject="two\nlines\r\n", payload={}, text="")
    assert delivery.subject == "two lines"


def test_the_worker_runs_the_outbox_as_the_notify_send_job(hook, receiver):
    firing([hook])
    assert run_job(JOBS["notify.send"], timezone.now()) == 1
    assert len(receiver.received) == 1
