import uuid

from django.db import models


class EventQuerySet(models.QuerySet):
    def in_window(self, start=None, end=None) -> "EventQuerySet":
        """Events with start <= timestamp < end; either bound may be None."""
        qs = self
        if start is not None:
            qs = qs.filter(timestamp__gte=start)
        if end is not None:
            qs = qs.filter(timestamp__lt=end)
        return qs

    def of_types(self, *names: str) -> "EventQuerySet":
        return self.filter(event_type__in=names)

    def about(self, subject_type: str, subject: str) -> "EventQuerySet":
        """Events whose subject is this entity (uses idx_events_subject_ts)."""
        return self.filter(subject_type=subject_type, subject=subject)

    def newest_first(self) -> "EventQuerySet":
        # Matches idx_events_ts_uuid, so keyset pages are index scans.
        return self.order_by("-timestamp", "-event_uuid")

    def before(self, timestamp, event_uuid) -> "EventQuerySet":
        """Keyset page: rows strictly older than (timestamp, event_uuid)."""
        return self.filter(
            models.Q(timestamp__lt=timestamp)
            | models.Q(timestamp=timestamp, event_uuid__lt=event_uuid)
        )

    def after(self, timestamp, event_uuid) -> "EventQuerySet":
        """Keyset page: rows strictly newer than (timestamp, event_uuid)."""
        return self.filter(
            models.Q(timestamp__gt=timestamp)
            | models.Q(timestamp=timestamp, event_uuid__gt=event_uuid)
        )


class Event(models.Model):
    """One audit event. The table is the SPHERE request's DDL, column for column.

    Rows are immutable: nothing in this project updates an event.
    """

    event_uuid = models.UUIDField(primary_key=True, default=uuid.uuid4)
    timestamp = models.DateTimeField()
    event_type = models.TextField()
    caller = models.TextField()
    subject = models.TextField()
    subject_type = models.TextField()
    target = models.TextField(null=True, blank=True)
    success = models.BooleanField()
    error_message = models.TextField(null=True, blank=True)
    payload = models.JSONField(default=dict, blank=True)

    objects = EventQuerySet.as_manager()

    COLUMNS = (
        "event_uuid",
        "timestamp",
        "event_type",
        "caller",
        "subject",
        "subject_type",
        "target",
        "success",
        "error_message",
        "payload",
    )

    class Meta:
        db_table = "events"
        ordering = ["-timestamp", "-event_uuid"]
        indexes = [
            # The five indexes of the SPHERE request's DDL, under its names.
            models.Index(fields=["-timestamp"], name="idx_events_timestamp"),
            models.Index(fields=["event_type"], name="idx_events_event_type"),
            models.Index(fields=["caller"], name="idx_events_caller"),
            models.Index(fields=["subject_type", "subject"], name="idx_events_subject"),
            models.Index(fields=["target"], name="idx_events_target"),
            # Keyset pagination, newest first: the read API, the explorer and
            # exports (ORDER BY timestamp DESC, event_uuid DESC).
            models.Index(fields=["-timestamp", "-event_uuid"], name="idx_events_ts_uuid"),
            # One type over a time range, newest first: logins per bucket from
            # the raw table, the explorer filtered by type.
            models.Index(fields=["event_type", "-timestamp"], name="idx_events_type_ts"),
            # An entity's timeline (its subject events, newest first) and the
            # reconstruction of its current state and members.
            models.Index(
                fields=["subject_type", "subject", "-timestamp"], name="idx_events_subject_ts"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.timestamp:%Y-%m-%d %H:%M:%S} {self.event_type} {self.subject}"

    def as_dict(self) -> dict:
        return {
            "event_uuid": str(self.event_uuid),
            "timestamp": self.timestamp.isoformat(),
            "event_type": self.event_type,
            "caller": self.caller,
            "subject": self.subject,
            "subject_type": self.subject_type,
            "target": self.target,
            "success": self.success,
            "error_message": self.error_message,
            "payload": self.payload,
        }


class HourlyCount(models.Model):
    """Pre-aggregate: events per UTC hour, type and outcome.

    Maintained in the same transaction as every insert into `events` (and
    every prune), so it is exact and as fresh as the table. Hourly buckets
    regroup into days, weeks and months in any time zone whose offset is a
    whole number of hours; other zones are answered from the raw table.
    """

    pk = models.CompositePrimaryKey("bucket", "event_type", "success")
    bucket = models.DateTimeField()
    event_type = models.TextField()
    success = models.BooleanField()
    n = models.BigIntegerField()

    class Meta:
        db_table = "event_counts_hourly"
        indexes = [
            # Per-type series (logins over 90 days) without scanning other types.
            models.Index(fields=["event_type", "bucket"], name="idx_counts_hourly_type"),
        ]

    def __str__(self) -> str:
        return f"{self.bucket:%Y-%m-%d %H}h {self.event_type} {self.success}: {self.n}"
