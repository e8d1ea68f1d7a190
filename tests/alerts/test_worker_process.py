"""The whole path with a real worker process: a facility report written with
SQL by someone else, `manage.py run_worker` evaluating the rules and sending
the outbox, a real webhook receiver that goes down and comes back, and a
worker killed and started again in between. What an admin relies on: the
outage is heard about within a minute without anyone looking, and its
recovery is heard about even across a receiver outage and a worker crash."""

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest
from django.db import connection

from alerts.models import AlertRule
from bench.servers import database_url
from notify.models import Channel, Delivery
from tests.factories import facility
from tests.receivers import WebhookReceiver

ROOT = Path(__file__).resolve().parent.parent.parent
pytestmark = pytest.mark.django_db(transaction=True)
WITHIN = 60.0  # seconds: "within a minute"


def insert_report(dsn: str, slug: str, status: str) -> None:
    """A report as the portal writes it: its own SQL, its own connection."""
    with psycopg.connect(dsn, autocommit=True) as portal:
        portal.execute(
            "INSERT INTO events (event_uuid, timestamp, event_type, caller, subject,"
            " subject_type, success, payload) VALUES (%(uuid)s, %(at)s, 'facility_status',"
            " %(caller)s, %(slug)s, 'facility', true, %(payload)s)",
            {
                "uuid": uuid.uuid4(),
                "at": datetime.now(UTC),
                "caller": f"{slug}-controller",
                "slug": slug,
                "payload": json.dumps({"status": status}),
            },
        )


def start_worker(dsn: str, tmp_path: Path) -> subprocess.Popen:
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path),
        "DATABASE_URL": dsn,
        "SECRET_KEY": "worker-test-" + "k" * 40,
        # Seconds, so the test takes seconds; the defaults are 15 and 5.
        "ALERT_EVALUATE_SECONDS": "1",
        "OUTBOX_SEND_SECONDS": "1",
        "STREAM_SEND_SECONDS": "1",
    }
    return subprocess.Popen(
        [sys.executable, "manage.py", "run_worker"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )


def wait_for(condition, within: float) -> float:
    """Seconds until `condition()` held; fails after `within`."""
    started = time.monotonic()
    while time.monotonic() - started < within:
        if condition():
            return time.monotonic() - started
        time.sleep(0.1)
    pytest.fail(f"not within {within:.0f} s")


def topics(receiver: WebhookReceiver) -> list[str]:
    return [json.loads(r.body)["topic"] for r in receiver.received]


def test_an_outage_is_heard_within_a_minute_and_its_recovery_across_a_crash(tmp_path):
    dsn = database_url(connection.settings_dict)
    receiver = WebhookReceiver(secret="ops-secret").start()
    facility("utah")
    channel = Channel.objects.create(
        name="ops", kind="webhook", url=receiver.url, secret="ops-secret"
    )
    rule = AlertRule.objects.create(
        name="Facility down", kind="facility_status", statuses=["down"], cooldown=0
    )
    rule.channels.add(channel)
    insert_report(dsn, "utah", "up")
    worker = start_worker(dsn, tmp_path)
    try:
        insert_report(dsn, "utah", "down")
        wait_for(lambda: topics(receiver) == ["alert.firing"], WITHIN)
        fired = json.loads(receiver.received[0].body)
        assert "utah" in fired["subject"] and fired["data"]["key"] == "utah"

        # The receiver goes down; the facility recovers; the worker dies
        # with the recovery message queued and not yet delivered.
        receiver.stop()
        insert_report(dsn, "utah", "up")
        wait_for(
            lambda: Delivery.objects.filter(topic="alert.resolved", attempts__gte=1).exists(),
            WITHIN,
        )
        os.killpg(worker.pid, signal.SIGKILL)
        worker.wait(10)

        receiver.start()
        worker = start_worker(dsn, tmp_path)
        # The first retry comes about 10 s after the failed attempt.
        wait_for(lambda: topics(receiver) == ["alert.firing", "alert.resolved"], WITHIN)
        ids = receiver.deliveries()
        assert len(set(ids)) == 2  # one message each, told apart by delivery id
        assert all(r.signed for r in receiver.received)
    finally:
        os.killpg(worker.pid, signal.SIGTERM)
        try:
            worker.wait(15)
        finally:
            receiver.stop()
    # SIGTERM ends the loop cleanly.
    assert worker.returncode == 0, worker.stderr.read().decode()[-2000:]
