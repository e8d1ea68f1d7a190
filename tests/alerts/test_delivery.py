"""End to end: a facility report written with SQL, the rule evaluated, the
outbox sent by notify's sender, and real receivers on loopback getting the
firing message, then the recovery."""

import json
import uuid
from datetime import datetime, timedelta

import pytest
import time_machine
from django.db import connection

from alerts.engine import evaluate
from alerts.models import AlertRule
from notify.models import Channel
from notify.outbox import send_due
from tests.alerts.conftest import NOW
from tests.factories import facility
from tests.receivers import SmtpReceiver, WebhookReceiver

pytestmark = pytest.mark.django_db


def insert_report(slug: str, at, status: str) -> None:
    """A facility_status row as a controller might write it, with SQL."""
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO events (event_uuid, timestamp, event_type, caller, subject,"
            " subject_type, success, payload)"
            " VALUES (%(uuid)s, %(at)s, 'facility_status', %(caller)s, %(slug)s, 'facility',"
            " true, %(payload)s::jsonb)",
            {
                "uuid": uuid.uuid4(),
                "at": at,
                "caller": f"{slug}-controller",
                "slug": slug,
                "payload": json.dumps({"status": status, "message": "switch failure"}),
            },
        )


@pytest.fixture
def receivers(settings):
    webhook = WebhookReceiver(secret="s3cret").start()
    smtp = SmtpReceiver().start()
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", smtp.port
    yield webhook, smtp
    webhook.stop()
    smtp.stop()


def test_a_facility_going_down_and_up_reaches_a_webhook_and_a_mailbox(receivers):
    webhook, smtp = receivers
    facility("utah", name="Utah")
    rule = AlertRule.objects.create(name="Sites down", kind="facility_status", statuses=["down"])
    rule.channels.add(
        Channel.objects.create(name="hook", kind="webhook", url=webhook.url, secret="s3cret"),
        Channel.objects.create(name="ops", kind="email", recipients="ops@example.org"),
    )
    with time_machine.travel(NOW, tick=False):
        insert_report("utah", NOW - timedelta(seconds=30), "down")
        assert evaluate(NOW) == 1
        assert send_due(NOW) == 2
    with time_machine.travel(NOW + timedelta(minutes=5), tick=False):
        insert_report("utah", NOW + timedelta(minutes=4), "up")
        assert evaluate(NOW + timedelta(minutes=5)) == 1
        assert send_due(NOW + timedelta(minutes=5)) == 2

    bodies = [json.loads(r.body) for r in webhook.received]
    assert all(r.signed for r in webhook.received)
    assert [(b["topic"], b["subject"]) for b in bodies] == [
        ("alert.firing", "Facility utah is down"),
        ("alert.resolved", "Facility utah is up again"),
    ]
    firing, resolved = (b["data"] for b in bodies)
    assert (firing["key"], firing["status"], firing["kind"]) == (
        "utah",
        "firing",
        "facility_status",
    )
    assert firing["details"]["message"] == "switch failure"
    assert firing["link"] == "/facilities/utah/"
    assert resolved["incident"] == firing["incident"]
    assert datetime.fromisoformat(resolved["resolved_at"]) == NOW + timedelta(minutes=5)

    assert [m["Subject"] for m in smtp.messages] == [
        "Facility utah is down",
        "Facility utah is up again",
    ]
    body = smtp.messages[0].get_payload()
    assert "Rule: Sites down" in body and "See: /facilities/utah/" in body
