"""Channels and the outbox in the admin."""

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from notify.models import Channel, Delivery
from notify.outbox import enqueue, send_due

pytestmark = pytest.mark.django_db


@pytest.fixture
def superuser_client() -> Client:
    client = Client()
    client.force_login(User.objects.create_superuser("root", password="pw"))
    return client


def test_the_channel_pages_show_the_secret_to_configure_a_receiver(superuser_client, hook):
    response = superuser_client.get(reverse("admin:notify_channel_changelist"))
    assert response.status_code == 200
    assert hook.url in response.text
    response = superuser_client.get(reverse("admin:notify_channel_change", args=[hook.pk]))
    assert response.status_code == 200
    assert hook.secret in response.text


def test_the_test_action_queues_a_test_notification_that_the_worker_sends(
    superuser_client, hook, receiver
):
    response = superuser_client.post(
        reverse("admin:notify_channel_changelist"),
        {"action": "send_test", "_selected_action": [hook.pk]},
        follow=True,
    )
    assert "Queued 1 test notification" in response.text
    (delivery,) = Delivery.objects.all()
    assert delivery.topic == "test"
    send_due(timezone.now())
    assert receiver.deliveries() == [str(delivery.delivery_id)]


def test_a_delivery_page_shows_its_attempts_and_body(superuser_client, hook, receiver):
    (delivery,) = enqueue([hook], topic="alert.firing", subject="Disk full", payload={}, text="")
    receiver.status = 503
    send_due(timezone.now())
    response = superuser_client.get(reverse("admin:notify_delivery_change", args=[delivery.pk]))
    assert response.status_code == 200
    assert str(delivery.delivery_id) in response.text
    assert "HTTP 503" in response.text
    assert "alert.firing" in response.text


def test_the_outbox_lists_deliveries_by_state(superuser_client, hook, receiver):
    _, second = (
        enqueue([hook], topic="alert.firing", subject=s, payload={}, text="")[0]
        for s in ("Went through", "Not yet sent")
    )
    Delivery.objects.filter(pk=second.pk).update(next_attempt_at=timezone.now().replace(year=2100))
    send_due(timezone.now())
    url = reverse("admin:notify_delivery_changelist")
    delivered = superuser_client.get(url, {"state": "delivered"})
    assert delivered.status_code == 200
    assert "Went through" in delivered.text and "Not yet sent" not in delivered.text
    pending = superuser_client.get(url, {"state": "pending"})
    assert "Not yet sent" in pending.text and "Went through" not in pending.text


def test_retry_now_brings_back_a_given_up_delivery(superuser_client, hook, receiver):
    (delivery,) = enqueue([hook], topic="alert.firing", subject="Disk full", payload={}, text="")
    Delivery.objects.filter(pk=delivery.pk).update(
        gave_up_at=timezone.now(), next_attempt_at=timezone.now().replace(year=2100)
    )
    superuser_client.post(
        reverse("admin:notify_delivery_changelist"),
        {"action": "retry_now", "_selected_action": [delivery.pk]},
    )
    assert send_due(timezone.now()) == 1
    delivery.refresh_from_db()
    assert delivery.state == "delivered"
    assert receiver.deliveries() == [str(delivery.delivery_id)]


def test_an_inactive_channel_gets_no_test_notification(superuser_client, hook):
    Channel.objects.filter(pk=hook.pk).update(active=False)
    response = superuser_client.post(
        reverse("admin:notify_channel_changelist"),
        {"action": "send_test", "_selected_action": [hook.pk]},
        follow=True,
    )
    assert "Queued 0 test notification(s) (1 inactive channel(s) skipped)" in response.text
    assert not Delivery.objects.exists()
