"""Sending the feed to each destination: read a batch after its cursor, POST
it as NDJSON, move the cursor on success (docs/streams.md).

Only feed rows of transactions below the horizon are read (the oldest
transaction of this database still running, streams/models.py HORIZON):
every transaction below it has ended, so no feed row can later appear before a
cursor that stays among them. A transaction still open holds the stream
back until it ends; its rows are then sent, never skipped. A row-level
cursor on (timestamp, event_uuid) would lose a row committed late with an
older timestamp; this one cannot.
"""

import time
from dataclasses import dataclass
from datetime import datetime

from django.conf import settings
from django.db import connection, transaction

# The export's line: a streamed line equals an exported one.
from audit.export import JSON_LINE as LINE_SQL
from sphere_stats.webhooks import post
from streams.models import HORIZON, StreamDestination, retry_delay

NDJSON = "application/x-ndjson"
# A job run stops starting batches after this long, so that the worker's
# other jobs run too; the next run carries on from the cursors.
RUN_SECONDS = 30.0
# Past any real feed position: the upper bound when no retry is pending.
FEED_END = ("18446744073709551615", 2**63 - 1)

_T = '"events"'
# What a send writes back to its destination's row.
PROGRESS = [
    "cursor_xid", "cursor_seq", "retry_end_xid", "retry_end_seq", "events_sent",
    "last_success_at", "last_error", "failures", "failing_since", "next_attempt_at",
]  # fmt: skip
# One batch: up to `limit` feed rows after the cursor (and not past a failed
# batch's end), of ended transactions only, in feed order (the primary key
# of stream_feed); each row's event looked up by its primary key (LATERAL
# with LIMIT: a nested loop whatever the statistics say, never a scan of
# `events`, which a batch of 5,000 got as a hash join), as
# the line of the export, if the destination wants its type. A feed row
# whose event was deleted since, or is filtered out, gives no line but is
# still passed by the cursor. The body is built here, in one string.
BATCH_SQL = f"""
WITH batch AS (
    SELECT xid, seq, event_uuid FROM stream_feed
    WHERE (xid, seq) > (%(xid)s::text::xid8, %(seq)s)
      AND (xid, seq) <= (%(end_xid)s::text::xid8, %(end_seq)s)
      AND xid < {HORIZON}
    ORDER BY xid, seq
    LIMIT %(limit)s
)
SELECT count(*),
       (array_agg(batch.seq ORDER BY batch.xid, batch.seq))[1],
       (array_agg(batch.xid::text::bigint ORDER BY batch.xid DESC, batch.seq DESC))[1],
       (array_agg(batch.seq ORDER BY batch.xid DESC, batch.seq DESC))[1],
       count(found.line),
       coalesce(string_agg(found.line || E'\\n', '' ORDER BY batch.xid, batch.seq), '')
FROM batch
LEFT JOIN LATERAL (
    SELECT {LINE_SQL} AS line FROM events AS {_T}
    WHERE {_T}.event_uuid = batch.event_uuid
      AND (cardinality(%(types)s::text[]) = 0 OR {_T}.event_type = ANY(%(types)s::text[]))
    LIMIT 1  -- a fence: a plain subquery would be flattened into a join
) AS found ON true
"""

# The lowest cursor of the active destinations: the feed rows at or below it
# are sent (or filtered out) everywhere.
LOW_CURSOR_SQL = """
SELECT cursor_xid, cursor_seq FROM stream_destinations WHERE active
ORDER BY cursor_xid, cursor_seq LIMIT 1
"""
PRUNE_SQL = "DELETE FROM stream_feed WHERE (xid, seq) <= (%(xid)s::text::xid8, %(seq)s)"
# With no active destination nobody needs a row: those of ended transactions go.
PRUNE_ALL_SQL = f"DELETE FROM stream_feed WHERE xid < {HORIZON}"


@dataclass(frozen=True)
class Batch:
    rows: int  # feed rows read, sent or filtered out
    first_seq: int
    last_xid: int
    last_seq: int
    events: int  # lines in the body
    body: bytes

    def delivery(self, destination: StreamDestination) -> str:
        """The same for a resent batch: it covers the same feed rows."""
        return f"stream-{destination.pk}-{self.first_seq}-{self.last_seq}"


def read_batch(destination: StreamDestination, limit: int) -> Batch | None:
    """The next batch after the destination's cursor; None when caught up."""
    pending = destination.retry_end_xid is not None
    params = {
        "xid": str(destination.cursor_xid),
        "seq": destination.cursor_seq,
        "end_xid": str(destination.retry_end_xid) if pending else FEED_END[0],
        "end_seq": destination.retry_end_seq if pending else FEED_END[1],
        "limit": limit,
        "types": list(destination.event_types),
    }
    with connection.cursor() as cursor:
        cursor.execute(BATCH_SQL, params)
        rows, first_seq, last_xid, last_seq, events, body = cursor.fetchone()
    if not rows:
        return None
    return Batch(rows, first_seq, last_xid, last_seq, events, body.encode())


def _passed(destination: StreamDestination, batch: Batch, now: datetime) -> None:
    destination.cursor_xid, destination.cursor_seq = batch.last_xid, batch.last_seq
    destination.retry_end_xid = destination.retry_end_seq = None
    destination.events_sent += batch.events
    if batch.events:
        destination.last_success_at = now
        destination.last_error = ""
        destination.failures = 0
        destination.failing_since = destination.next_attempt_at = None
    destination.save(update_fields=PROGRESS)


def _failed(destination: StreamDestination, batch: Batch, error: str, now: datetime) -> None:
    destination.retry_end_xid, destination.retry_end_seq = batch.last_xid, batch.last_seq
    destination.failures += 1
    destination.failing_since = destination.failing_since or now
    destination.next_attempt_at = now + retry_delay(destination.failures)
    destination.last_error = error
    destination.save(update_fields=PROGRESS)


def send_batch(pk: int, now: datetime, limit: int) -> Batch | None:
    """Send one batch to destination `pk`, under its row lock (SKIP LOCKED:
    another worker sending to it already means nothing to do here). Returns
    the batch (None: nothing to send, or not ours to send now). The cursor
    moves in the transaction that records the success."""
    with transaction.atomic():
        destination = (
            StreamDestination.objects.select_for_update(skip_locked=True)
            .due(now)
            .filter(pk=pk)
            .first()
        )
        if destination is None:
            return None
        batch = read_batch(destination, limit)
        if batch is None:
            return None
        if not batch.events:  # all filtered out: no POST, only the cursor moves
            _passed(destination, batch, now)
            return batch
        outcome = post(
            destination.url,
            batch.body,
            secret=destination.secret,
            delivery=batch.delivery(destination),
            content_type=NDJSON,
            headers=destination.headers(),
        )
        if outcome.ok:
            _passed(destination, batch, now)
        else:
            _failed(destination, batch, outcome.error or f"HTTP {outcome.status}", now)
        return batch if outcome.ok else None


def send_destination(pk: int, now: datetime, deadline: float) -> int:
    """Batches to one destination until it is caught up, fails, or the run's
    time is up. Returns the events sent."""
    limit = settings.STREAM_BATCH_SIZE
    sent = 0
    while time.monotonic() < deadline:
        batch = send_batch(pk, now, limit)
        if batch is None:
            break
        sent += batch.events
        if batch.rows < limit:
            break
    return sent


def prune_feed() -> int:
    """Delete the feed rows every active destination has passed."""
    with connection.cursor() as cursor:
        cursor.execute(LOW_CURSOR_SQL)
        low = cursor.fetchone()
        if low is None:
            cursor.execute(PRUNE_ALL_SQL)
        else:
            cursor.execute(PRUNE_SQL, {"xid": str(low[0]), "seq": low[1]})
        return cursor.rowcount


def send_all(now: datetime, seconds: float = RUN_SECONDS) -> int:
    """One run: every due destination, then the prune. Returns events sent."""
    deadline = time.monotonic() + seconds
    sent = 0
    for pk in StreamDestination.objects.due(now).values_list("pk", flat=True):
        sent += send_destination(pk, now, deadline)
    prune_feed()
    return sent
