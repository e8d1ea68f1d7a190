"""Small ingests that arrive together share one INSERT (audit/coalesce.py),
and each request still gets exactly its own answer, error or timeout.

The tests hold `events` with a SHARE lock from another connection, so the
first request's INSERT waits inside PostgreSQL while the next ones queue
behind it; releasing the lock lets the queue through as one statement.
"""

import threading
import time
from datetime import UTC, datetime, timedelta

import pytest
from django.db import DataError, OperationalError, connection, transaction
from prometheus_client import REGISTRY

from audit import coalesce
from audit.ingest import Row, validate
from audit.models import Event, HourlyCount
from tests.factories import like

pytestmark = pytest.mark.django_db(transaction=True)

login = like(event_type="user_login", subject_type="user", payload={"method": "password"})
WAIT = 30


def rows(*events) -> list[Row]:
    return validate(list(events), now=datetime.now(UTC) + timedelta(minutes=1))


def shared_statements(size: int) -> float:
    """How many shared INSERTs so far stored exactly `size` requests."""

    def upto(n: int) -> float:
        bound = f"{float(n)}"
        return REGISTRY.get_sample_value("sphere_ingest_statement_requests_bucket", {"le": bound})

    return upto(size) - upto(size - 1)


class Held:
    """`events` under a SHARE lock from another connection until released."""

    def __init__(self) -> None:
        self.locked, self.release = threading.Event(), threading.Event()
        self.thread = threading.Thread(target=self._hold)

    def _hold(self) -> None:
        try:
            with transaction.atomic(), connection.cursor() as cursor:
                cursor.execute("LOCK TABLE events IN SHARE MODE")
                self.locked.set()
                self.release.wait(timeout=WAIT)
        finally:
            connection.close()

    def __enter__(self) -> "Held":
        self.thread.start()
        assert self.locked.wait(timeout=WAIT)
        return self

    def __exit__(self, *exc) -> None:
        self.release.set()
        self.thread.join(timeout=WAIT)


class Request(threading.Thread):
    """store_shared(rows) in a thread of its own, as a web worker's thread."""

    def __init__(self, batch: list[Row]) -> None:
        super().__init__()
        self.batch, self.result, self.error = batch, None, None

    def run(self) -> None:
        try:
            self.result = coalesce.store_shared(self.batch)
        except Exception as exc:
            self.error = exc
        finally:
            connection.close()

    def answer(self):
        self.join(timeout=WAIT)
        assert not self.is_alive()
        return self.result


def until(condition, what: str) -> None:
    deadline = time.monotonic() + WAIT
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.01)


def inserts_waiting() -> int:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
            "AND query LIKE 'INSERT INTO events%%' AND datname = current_database()"
        )
        return cursor.fetchone()[0]


def queued(n: int) -> None:
    until(lambda: len(coalesce._queue) == n, f"{n} requests queued")


def enqueue(*requests: Request) -> None:
    """Start each request once the one before it is queued, so they queue
    in this order behind the leader."""
    for request in requests:
        ahead = len(coalesce._queue)
        request.start()
        queued(ahead + 1)


def start_blocked_leader(*events) -> Request:
    """A request whose INSERT waits for the lock, with others free to queue."""
    leader = Request(rows(*events))
    leader.start()
    until(lambda: inserts_waiting() == 1, "the first INSERT waits for the lock")
    return leader


def test_requests_that_arrive_together_share_one_insert_each_answered_as_if_alone():
    first, second, third = login(caller="ann", subject="ann"), login(), login(caller="bo")
    differing = {**first, "success": False}
    with Held():
        leader = start_blocked_leader(login(caller="lead", subject="lead"))
        before = shared_statements(3)
        a = Request(rows(first))
        b = Request(rows(second, first))  # first again: stored by a, a duplicate here
        c = Request(rows(differing, third))  # first's uuid, other content: a conflict
        enqueue(a, b, c)
    assert leader.answer().accepted == 1
    assert (a.answer().accepted, a.result.duplicates, a.result.conflicts) == (1, 0, [])
    assert (b.answer().accepted, b.result.duplicates, b.result.conflicts) == (1, 1, [])
    assert (c.answer().accepted, c.result.duplicates) == (1, 0)
    assert [x["message"] for x in c.result.conflicts] == [
        "an event with this uuid is stored with different content; audit records are immutable"
    ]
    assert shared_statements(3) == before + 1  # a, b and c: one INSERT
    # What is stored is what a alone would have stored, and counted once.
    assert Event.objects.get(event_uuid=first["event_uuid"]).success is True
    assert Event.objects.count() == 4
    assert sum(HourlyCount.objects.values_list("n", flat=True)) == Event.objects.count()


def test_a_row_postgresql_refuses_fails_only_its_own_request():
    good = rows(login())
    # Past validation (which refuses it): text jsonb cannot hold.
    bad = rows(login())
    bad[0].payload_json = '{"note": "\\u0000"}'
    with Held():
        leader = start_blocked_leader(login())
        ok, refused = Request(good), Request(bad)
        enqueue(ok, refused)
    assert leader.answer().accepted == 1
    assert ok.answer().accepted == 1
    refused.answer()
    assert isinstance(refused.error, DataError)
    assert Event.objects.filter(event_uuid=good[0].event_uuid).exists()
    assert not Event.objects.filter(event_uuid=bad[0].event_uuid).exists()


def test_a_lost_connection_fails_every_request_of_its_insert_and_stores_none():
    a_rows, b_rows = rows(login(), login()), rows(login())
    with Held():
        leader = start_blocked_leader(login())
        a, b = Request(a_rows), Request(b_rows)
        enqueue(a, b)
        # The leader's INSERT alone, then a's and b's shared one.
        for left in (2, 0):
            until(lambda: inserts_waiting() == 1, "an INSERT waits for the lock")
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE wait_event_type = 'Lock' AND query LIKE 'INSERT INTO events%%'"
                )
            queued(left)
    for request in (leader, a, b):
        request.answer()
        # The middleware answers these with a 503, which a client retries.
        assert isinstance(request.error, OperationalError), request.error
    assert Event.objects.count() == 0
    # The retry stores them, once.
    assert coalesce.store_shared(a_rows).accepted == 2
    assert coalesce.store_shared(b_rows).accepted == 1


def test_a_queued_request_gives_up_after_its_bound_and_leaves_the_queue(settings):
    settings.DB_WAIT_TIMEOUT_MS = 200  # the queue's bound: five of them, 1 s
    late = rows(login())
    with Held():
        leader = start_blocked_leader(login())
        waiting = Request(late)
        started = time.monotonic()
        waiting.start()
        waiting.answer()
        waited = time.monotonic() - started
        assert isinstance(waiting.error, OperationalError)  # a 503
        assert 1 <= waited < 10
        assert len(coalesce._queue) == 1  # the leader's alone
    assert leader.answer().accepted == 1
    assert not Event.objects.filter(event_uuid=late[0].event_uuid).exists()
    assert not coalesce._queue
