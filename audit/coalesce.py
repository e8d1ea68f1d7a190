"""Small ingest requests that arrive together share one INSERT.

Portal services post their events one at a time, and most of what a one-row
INSERT costs PostgreSQL is per statement: the insert trigger's upserts and
probes cost nearly as much for one row as for four. Stored alone, a login
costs 0.85 ms of database and driver time; in statements of four, 0.33 ms
each (docs/benchmarks.md). So the threads of one web worker queue their
small batches, and the one at the head of the queue stores everything queued
behind it in one statement, as LevelDB's writers share a write. No one waits
for a timer: a lone request is stored at once, and under load a statement
grows with the queue (at most a worker's thread count).

What each request sees is unchanged:
- It answers only after its rows are committed, with what store() alone
  would have answered (audit.ingest.store_many: a uuid sent by two requests
  of one statement is accepted for the first and a duplicate, or a
  conflict, for the second).
- A lost or timed-out database fails every request of the statement alike,
  each with its own 503, and none of their rows is stored (one statement).
  A client's retry is harmless, as always.
- Any other error of a shared statement (a value PostgreSQL refuses) stores
  the requests one by one instead, so one request's bad row fails only that
  request.

Only requests outside a transaction share (an import or a test inside
atomic() stores in its own transaction), and only batches of at most
INGEST_SHARE_MAX_ROWS rows: a big batch is one statement by itself already.
"""

import threading
import time
from collections import deque

from django.conf import settings
from django.db import InterfaceError, OperationalError, connection

from audit.ingest import IngestResult, Row, store, store_many
from sphere_stats.db import DatabaseTimeout
from sphere_stats.metrics import STATEMENT_REQUESTS

# Rows of one shared statement, at most: above it the statement's own cost
# is a small part of its rows', and a long statement delays its first
# request's answer.
MAX_STATEMENT_ROWS = 1000


class _Request:
    __slots__ = ("done", "error", "result", "rows", "taken")

    def __init__(self, rows: list[Row]) -> None:
        self.rows = rows
        self.taken = False  # in a statement that is running
        self.done = False
        self.result: IngestResult | None = None
        self.error: BaseException | None = None

    def outcome(self) -> IngestResult:
        if self.error is not None:
            # This thread's own exception, of the same class: the one raised
            # in the thread that ran the statement carries that thread's
            # traceback. DATABASE_DOWN errors still answer 503.
            raise _copy(self.error) from self.error
        assert self.result is not None
        return self.result


def _copy(error: BaseException) -> BaseException:
    try:
        return type(error)(*error.args)
    except Exception:  # a class whose constructor wants other arguments
        return RuntimeError(f"the shared INSERT failed: {error!r}")


_changed = threading.Condition()
_queue: deque[_Request] = deque()


def _wait_limit() -> float | None:
    """How long a request waits for the statements ahead of it and its own:
    the statement's own bounded waits (sphere_stats.db), for each of the
    deadlock retries and the duplicate check, and the one ahead of it."""
    bound = settings.DB_WAIT_TIMEOUT_MS
    return 5 * bound / 1000 if bound else None


def shares(rows: list[Row]) -> bool:
    limit = settings.INGEST_SHARE_MAX_ROWS
    return 0 < len(rows) <= limit and not connection.in_atomic_block


def store_shared(rows: list[Row]) -> IngestResult:
    """store(rows), in one statement with the batches other threads of this
    process are storing at the same moment."""
    if not shares(rows):
        return store(rows)
    me = _Request(rows)
    limit = _wait_limit()
    deadline = None if limit is None else time.monotonic() + limit
    with _changed:
        _queue.append(me)
        while not me.done and _queue[0] is not me:
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                if not me.taken:
                    _queue.remove(me)
                    _changed.notify_all()
                # Taken: its statement may yet commit; a retry is harmless.
                raise DatabaseTimeout("The database did not store the events in time.")
            _changed.wait(remaining)
        if me.done:
            return me.outcome()
        group = _take()
    try:
        _run(group)
    finally:
        with _changed:
            for request in group:
                if request.result is None and request.error is None:
                    # This thread was stopped mid-statement (the worker is
                    # going down): the others must not wait for it.
                    request.error = InterfaceError("The worker stopped while storing.")
                request.done = True
                _queue.remove(request)
            _changed.notify_all()
    return me.outcome()


def _take() -> list[_Request]:
    """The head of the queue and the requests behind it, up to
    MAX_STATEMENT_ROWS rows (the head always)."""
    group, rows = [], 0
    for request in _queue:
        if group and rows + len(request.rows) > MAX_STATEMENT_ROWS:
            break
        request.taken = True
        group.append(request)
        rows += len(request.rows)
    return group


def _run(group: list[_Request]) -> None:
    """Store the group's batches; each request gets its result or error."""
    STATEMENT_REQUESTS.observe(len(group))
    try:
        results = store_many([request.rows for request in group])
    except (OperationalError, InterfaceError) as exc:
        # The database is gone or too slow: each request would fail alike.
        for request in group:
            request.error = exc
    except Exception as exc:
        if len(group) == 1:
            group[0].error = exc
            return
        for request in group:  # whose row was it? Each alone finds out.
            try:
                request.result = store(request.rows)
            except Exception as own:
                request.error = own
    else:
        for request, result in zip(group, results, strict=True):
            request.result = result
