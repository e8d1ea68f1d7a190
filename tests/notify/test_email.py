"""Email channels, sent to a real SMTP server (aiosmtpd) on loopback."""

import pytest
from django.test import override_settings
from django.utils import timezone

from notify.models import Channel, Delivery
from notify.outbox import enqueue, send_due
from sphere_stats.webhooks import DELIVERY_HEADER

pytestmark = pytest.mark.django_db


@pytest.fixture
def mail_settings(smtp):
    # pytest-django swaps in the in-memory backend; these tests talk SMTP.
    with override_settings(
        EMAIL_BACKEND="django.core.mail.backends.smtp.EmailBackend",
        EMAIL_HOST="127.0.0.1",
        EMAIL_PORT=smtp.port,
        EMAIL_USE_TLS=False,
        EMAIL_TIMEOUT=5,
        DEFAULT_FROM_EMAIL="alerts@localhost",
    ):
        yield


@pytest.fixture
def team() -> Channel:
    return Channel.objects.create(
        name="ops-mail", kind="email", recipients="ops@localhost, lead@localhost"
    )


def resolved(channel) -> Delivery:
    (delivery,) = enqueue(
        [channel],
        topic="alert.resolved",
        subject="Resolved: logins failing at isi",
        payload={"rule": "failed-logins"},
        text="Failed logins are back under 10 in 5 minutes.",
    )
    return delivery


def test_an_email_channel_mails_the_subject_and_text_to_its_recipients(mail_settings, smtp, team):
    delivery = resolved(team)
    assert send_due(timezone.now()) == 1

    (message,) = smtp.messages
    assert message["Subject"] == "Resolved: logins failing at isi"
    assert message["From"] == "alerts@localhost"
    assert message["To"] == "ops@localhost, lead@localhost"
    assert message[DELIVERY_HEADER] == str(delivery.delivery_id)
    assert message.get_payload(decode=True).decode().strip() == (
        "Failed logins are back under 10 in 5 minutes."
    )
    delivery.refresh_from_db()
    assert delivery.state == "delivered"


def test_mail_waits_while_the_smtp_server_is_down_and_goes_when_it_is_back(
    mail_settings, smtp, team
):
    delivery = resolved(team)
    smtp.stop()
    send_due(timezone.now())
    delivery.refresh_from_db()
    assert delivery.state == "retrying"
    assert delivery.last_error.startswith("ConnectionRefusedError")

    smtp.start()  # the same port
    assert send_due(delivery.next_attempt_at) == 1
    assert [m[DELIVERY_HEADER] for m in smtp.messages] == [str(delivery.delivery_id)]
