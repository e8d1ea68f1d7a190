"""The sender: retries with the same delivery id until the receiver answers,
a growing wait between attempts, giving up, and never a delivery sent
twice by two senders or lost to a crash."""

import threading
from datetime import timedelta

import pytest
from django.db import connection, transaction
from django.test import override_settings
from django.utils import timezone

from notify import outbox
from notify.kinds import KINDS
from notify.models import Delivery
from notify.outbox import enqueue, send_due


def queue(channel, n: int = 1) -> list[Delivery]:
    return [
        enqueue([channel], topic="alert.firing", subject=f"alert {i}", payload={"i": i}, text="")[0]
        for i in range(n)
    ]


@pytest.mark.django_db
def test_a_receiver_answering_503_gets_the_same_delivery_once_it_recovers(hook, receiver):
    (delivery,) = queue(hook)
    receiver.status = 503
    now = timezone.now()
    assert send_due(now) == 1
    delivery.refresh_from_db()
    assert delivery.state == "retrying" and delivery.last_error == "HTTP 503"
    # Not due again before its next attempt.
    assert send_due(now + timedelta(seconds=1)) == 0

    receiver.status = 200
    assert send_due(delivery.next_attempt_at) == 1
    assert receiver.refused == 1
    assert receiver.deliveries() == [str(delivery.delivery_id)]
    delivery.refresh_from_db()
    assert delivery.state == "delivered"
    assert [(a.ok, a.status) for a in delivery.attempt_set.all()] == [(False, 503), (True, 200)]


@pytest.mark.django_db
def test_a_receiver_that_was_down_gets_everything_once_it_is_back(hook, receiver):
    deliveries = queue(hook, 3)
    receiver.stop()
    send_due(timezone.now())
    first_tries = Delivery.objects.in_state("retrying")
    assert first_tries.count() == 3
    assert all(d.attempt_set.get().status is None for d in first_tries)
    assert "Connection refused" in first_tries[0].last_error

    receiver.start()  # the same port
    later = max(d.next_attempt_at for d in Delivery.objects.all())
    assert send_due(later) == 3
    assert sorted(receiver.deliveries()) == sorted(str(d.delivery_id) for d in deliveries)
    assert Delivery.objects.in_state("delivered").count() == 3


@pytest.mark.django_db
@override_settings(OUTBOX_GIVE_UP_SECONDS=600)
def test_the_wait_doubles_after_each_failure_until_it_gives_up(hook, receiver):
    (delivery,) = queue(hook)
    receiver.stop()
    now, waits = timezone.now(), []
    while send_due(now):
        delivery.refresh_from_db()
        if delivery.gave_up_at:
            break
        waits.append((delivery.next_attempt_at - now).total_seconds())
        now = delivery.next_attempt_at
    # 10, 20, 40, 80, 160 s (each up to 10 % longer), then whatever is left
    # up to 600 s after it was queued, where the last attempt falls.
    for wait, base in zip(waits, [10, 20, 40, 80, 160], strict=False):
        assert base <= wait <= base * 1.1
    assert len(waits) == 6
    assert delivery.next_attempt_at == delivery.created_at + timedelta(seconds=600)
    assert delivery.state == "gave up" and delivery.gave_up_at == now
    assert delivery.attempts == 7 == delivery.attempt_set.count()
    assert send_due(now + timedelta(days=1)) == 0


def test_the_wait_is_capped_at_an_hour():
    assert outbox.retry_delay(1) >= timedelta(seconds=10)
    assert outbox.retry_delay(2) >= timedelta(seconds=20)
    for attempts in (10, 30, 1000):
        assert timedelta(hours=1) <= outbox.retry_delay(attempts) <= timedelta(hours=1.1)


class Crash(BaseException):
    """The worker dying mid-send (a KeyboardInterrupt, an OOM kill)."""


@pytest.mark.django_db(transaction=True)
def test_a_crash_mid_batch_keeps_what_was_sent_and_resends_only_the_one_in_flight(
    hook, receiver, monkeypatch
):
    deliveries = queue(hook, 3)
    webhook, calls = KINDS["webhook"], []

    class CrashesOnTheSecond:
        label = webhook.label
        check = webhook.check

        def send(self, channel, delivery):
            calls.append(delivery.delivery_id)
            if len(calls) == 2:
                webhook.send(channel, delivery)  # sent, but the worker dies before recording it
                raise Crash
            return webhook.send(channel, delivery)

    monkeypatch.setitem(KINDS, "webhook", CrashesOnTheSecond())
    with pytest.raises(Crash):
        send_due(timezone.now())
    assert Delivery.objects.in_state("delivered").count() == 1
    assert Delivery.objects.in_state("pending").count() == 2

    monkeypatch.setitem(KINDS, "webhook", webhook)
    assert send_due(timezone.now()) == 2
    sent = receiver.deliveries()
    assert sorted(set(sent)) == sorted(str(d.delivery_id) for d in deliveries)
    # At least once: only the delivery in flight at the crash came twice.
    assert len(sent) == 4 and sent.count(str(calls[1])) == 2


@pytest.mark.django_db(transaction=True)
def test_a_delivery_another_sender_holds_is_skipped_not_sent_twice(hook, receiver):
    held, other = queue(hook, 2)
    locked, release = threading.Event(), threading.Event()

    def another_sender():
        try:
            with transaction.atomic():
                Delivery.objects.select_for_update().get(pk=held.pk)
                locked.set()
                release.wait(timeout=30)
        finally:
            connection.close()

    thread = threading.Thread(target=another_sender)
    thread.start()
    try:
        assert locked.wait(timeout=30)
        assert send_due(timezone.now()) == 1
        assert receiver.deliveries() == [str(other.delivery_id)]
    finally:
        release.set()
        thread.join()
    assert send_due(timezone.now()) == 1
    assert receiver.deliveries() == [str(other.delivery_id), str(held.delivery_id)]


@pytest.mark.django_db(transaction=True)
def test_two_senders_at_once_send_each_delivery_exactly_once(hook, receiver):
    deliveries = queue(hook, 20)
    now, start, handled = timezone.now(), threading.Barrier(2), []

    def sender():
        try:
            start.wait(timeout=30)
            handled.append(send_due(now))
        finally:
            connection.close()

    threads = [threading.Thread(target=sender) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(handled) == 20
    assert sorted(receiver.deliveries()) == sorted(str(d.delivery_id) for d in deliveries)
    assert all(d.attempt_set.count() == 1 for d in Delivery.objects.all())
