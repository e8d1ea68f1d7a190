"""Audit-event streams: HTTP destinations (a SIEM, a data lake) that receive
every new event as NDJSON, at least once, in batches (docs/streams.md).

Each destination keeps its own cursor into `stream_feed`, the table the
trigger on `events` fills (migration 0002); streams/sender.py reads and
posts from there."""

import re
import secrets
from datetime import datetime, timedelta

from django.contrib.postgres.fields import ArrayField
from django.core.exceptions import ValidationError
from django.db import connection, models

from audit import catalog

# An event type as ingest accepts it (a slug): uncatalogued names are allowed,
# since the portal's own SQL may write types the catalog does not know.
EVENT_TYPE = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
# Retry delays after a failed POST: 5 s, doubling, at most 5 minutes; never given up.
FIRST_RETRY_SECONDS = 5
MAX_RETRY_SECONDS = 300
# The admin counts waiting feed rows up to here, and shows "N+" beyond.
WAITING_COUNT_CAP = 100_000

# The feed's horizon: the oldest transaction of this database still running
# (else the next transaction id). Every feed row below it is of a transaction
# that has ended, so none can appear there later. The snapshot's own xmin
# would do, but it counts every database of the server: another database's
# hour-long COPY would hold every stream back an hour. A running transaction
# is left out only when pg_stat_activity places it in another database
# (unknown ones count: when unsure, wait).
HORIZON = """(
WITH snap AS (SELECT pg_current_snapshot() AS s)
SELECT coalesce(
    (SELECT min(running) FROM snap, pg_snapshot_xip(snap.s) AS running
     WHERE NOT EXISTS (
         SELECT 1 FROM pg_stat_activity AS a
         WHERE a.backend_xid = running::xid AND a.datname IS DISTINCT FROM current_database())),
    (SELECT pg_snapshot_xmax(snap.s) FROM snap))
)"""
# Where a cursor starts: at the horizon, so every feed row of a transaction
# that commits from now on lies after it.
START_SQL = f"SELECT {HORIZON}::text::bigint"

# Feed rows after a cursor (committed or not), counted up to a cap.
WAITING_SQL = """
SELECT count(*) FROM (
    SELECT 1 FROM stream_feed
    WHERE (xid, seq) > (%(xid)s::text::xid8, %(seq)s)
    LIMIT %(cap)s
) AS waiting
"""


def new_token() -> str:
    return secrets.token_urlsafe(32)


def validate_event_types(names: list[str]) -> None:
    bad = [name for name in names if not EVENT_TYPE.match(name)]
    if bad:
        raise ValidationError(
            "Not an event type name (lower-case letters, digits, _): %(names)s",
            params={"names": ", ".join(bad)},
        )


def uncatalogued(names: list[str]) -> list[str]:
    """The names the catalog does not know: allowed, shown to the admin."""
    return [name for name in names if catalog.get(name) is None]


def retry_delay(failures: int) -> timedelta:
    """How long to wait after the `failures`-th failure in a row."""
    return timedelta(seconds=min(MAX_RETRY_SECONDS, FIRST_RETRY_SECONDS * 2 ** (failures - 1)))


class StreamDestinationQuerySet(models.QuerySet):
    def due(self, now: datetime) -> "StreamDestinationQuerySet":
        """Active destinations not waiting out a retry delay."""
        return self.filter(active=True).filter(
            models.Q(next_attempt_at__isnull=True) | models.Q(next_attempt_at__lte=now)
        )


class StreamDestination(models.Model):
    """One receiver of the audit stream and where it has got to."""

    name = models.CharField(max_length=100, unique=True)
    url = models.URLField(max_length=500, help_text="http(s) URL the batches are POSTed to")
    token = models.CharField(
        max_length=100,
        default=new_token,
        help_text="sent as X-Sphere-Stream-Token: the receiver checks it is this one",
    )
    secret = models.CharField(
        max_length=100,
        default=new_token,
        help_text="HMAC-SHA256 key of X-Sphere-Signature, shared with the receiver",
    )
    event_types = ArrayField(
        models.TextField(),
        default=list,
        blank=True,
        validators=[validate_event_types],
        help_text="comma-separated event types to send; empty sends every type",
    )
    active = models.BooleanField(
        default=True, help_text="a paused destination misses the events committed meanwhile"
    )
    # The last feed row handled (sent or filtered out): (transaction id, seq).
    cursor_xid = models.BigIntegerField(default=0, editable=False)
    cursor_seq = models.BigIntegerField(default=0, editable=False)
    # The end of a batch that failed: its retry carries exactly the same rows
    # (and X-Sphere-Delivery). Null when no batch is pending.
    retry_end_xid = models.BigIntegerField(null=True, editable=False)
    retry_end_seq = models.BigIntegerField(null=True, editable=False)
    events_sent = models.BigIntegerField(default=0, editable=False)
    last_success_at = models.DateTimeField(null=True, editable=False)
    last_error = models.TextField(blank=True, editable=False)
    failures = models.IntegerField(default=0, editable=False, help_text="failed POSTs in a row")
    failing_since = models.DateTimeField(null=True, editable=False)
    next_attempt_at = models.DateTimeField(null=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)

    objects = StreamDestinationQuerySet.as_manager()

    class Meta:
        db_table = "stream_destinations"
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def save(self, *args, **kwargs) -> None:
        # A new destination, or one switched back on, starts at the current
        # end of the feed: the events committed from now on.
        if kwargs.get("update_fields") is not None:  # the sender's progress
            super().save(*args, **kwargs)
            return
        resumed = (
            self.active
            and not self._state.adding
            and StreamDestination.objects.filter(pk=self.pk, active=False).exists()
        )
        if self.active and (self._state.adding or resumed):
            self.restart()
        super().save(*args, **kwargs)

    def clean(self) -> None:
        if self.url and not self.url.lower().startswith(("http://", "https://")):
            raise ValidationError({"url": "must be an http:// or https:// URL"})

    def restart(self) -> None:
        with connection.cursor() as cursor:
            cursor.execute(START_SQL)
            self.cursor_xid = cursor.fetchone()[0]
        self.cursor_seq = 0
        self.retry_end_xid = self.retry_end_seq = None
        self.failures = 0
        self.failing_since = self.next_attempt_at = None

    def waiting(self) -> int:
        """Feed rows after the cursor, before the type filter (at most the cap)."""
        with connection.cursor() as cursor:
            cursor.execute(
                WAITING_SQL,
                {"xid": str(self.cursor_xid), "seq": self.cursor_seq, "cap": WAITING_COUNT_CAP},
            )
            return cursor.fetchone()[0]

    def headers(self) -> dict[str, str]:
        return {"X-Sphere-Stream-Token": self.token}
