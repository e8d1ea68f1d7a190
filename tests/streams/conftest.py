"""Streams against a real receiver on loopback and the real feed trigger.

The sender reads only transactions that have ended, so these tests commit
for real (transactional_db): rows written inside a test's own transaction
would never reach it. Another open writing transaction in the test
database holds the stream back for as long as it stays open, so deliveries
are awaited by polling, with a deadline."""

import json
import time
from collections.abc import Callable
from datetime import datetime, timedelta

import psycopg
import pytest
from django.db import connection
from django.utils import timezone

from streams.models import StreamDestination
from streams.sender import send_all
from tests.receivers import WebhookReceiver

DEADLINE_SECONDS = 60.0


@pytest.fixture
def receiver(transactional_db):
    peer = WebhookReceiver(secret="shared-secret").start()
    yield peer
    peer.stop()


@pytest.fixture
def destination(receiver) -> StreamDestination:
    return StreamDestination.objects.create(name="siem", url=receiver.url, secret=receiver.secret)


def lines(receiver: WebhookReceiver) -> list[dict]:
    """Every event line the receiver accepted, in the order it got them."""
    return [json.loads(line) for r in receiver.received for line in r.body.splitlines()]


def uuids(receiver: WebhookReceiver) -> list[str]:
    return [line["event_uuid"] for line in lines(receiver)]


def later(seconds: float = 3600) -> datetime:
    """A run's time past any retry delay."""
    return timezone.now() + timedelta(seconds=seconds)


def send_until(done: Callable[[], bool], now: Callable[[], datetime] = timezone.now) -> None:
    """Run the sender until `done()`, or fail at the deadline."""
    deadline = time.monotonic() + DEADLINE_SECONDS
    while True:
        send_all(now())
        if done():
            return
        assert time.monotonic() < deadline, "the stream did not deliver in time"
        time.sleep(0.05)


def own_connection(autocommit: bool = True) -> psycopg.Connection:
    """A psycopg connection to the test database apart from Django's: the
    portal writing `events` with its own SQL."""
    s = connection.settings_dict
    params = {"dbname": s["NAME"], "user": s["USER"], "host": s["HOST"], "port": s["PORT"]}
    return psycopg.connect(**{k: v for k, v in params.items() if v}, autocommit=autocommit)


INSERT_SQL = """
INSERT INTO events (event_uuid, timestamp, event_type, caller, subject, subject_type,
                    success, payload)
VALUES (%(uuid)s, %(ts)s, %(type)s, %(user)s, %(user)s, 'user', true, '{}')
"""


def portal_insert(
    conn: psycopg.Connection, uuid: str, ts: datetime, type="user_login", user="bob"
) -> None:
    """One row as the portal writes it. Two open transactions must write
    rows of different days and users: the triggers' counts of one day and
    user are one row, which the first writer holds until it commits."""
    conn.execute(INSERT_SQL, {"uuid": uuid, "ts": ts, "type": type, "user": user})


def feed_rows(*event_uuids: str) -> int:
    with connection.cursor() as cursor:
        if event_uuids:
            cursor.execute(
                "SELECT count(*) FROM stream_feed WHERE event_uuid = ANY(%(u)s::uuid[])",
                {"u": list(event_uuids)},
            )
        else:
            cursor.execute("SELECT count(*) FROM stream_feed")
        return cursor.fetchone()[0]
