from datetime import datetime, timedelta

from django.contrib.postgres.fields import ArrayField
from django.db import connection, models

# A failed scheduled send is tried again after this long, doubling each time
# up to the most (dashboards/jobs.py).
RETRY_FIRST = timedelta(minutes=1)
RETRY_MOST = timedelta(hours=1)

# One statement claims a slot: a new row for a slot nobody has sent, or the
# row of a failed send whose retry time has come. Whoever gets the row back
# sends; a concurrent claimer (another worker, a restarted one) gets nothing,
# since the unique slot admits one row and the row's lock lets one UPDATE see
# the failed state. A row left mid-send (ok false, no error: the process died
# between claiming and recording) is never claimed again.
CLAIM_SQL = """
INSERT INTO report_runs AS r (slot, started_at, recipients, attempts, ok, error, retry_at)
VALUES (%(slot)s, %(now)s, %(recipients)s, 1, false, '', NULL)
ON CONFLICT (slot) DO UPDATE
   SET started_at = excluded.started_at, recipients = excluded.recipients,
       attempts = r.attempts + 1, error = '', retry_at = NULL
 WHERE NOT r.ok AND r.error <> '' AND r.retry_at <= %(now)s
RETURNING r.id
"""


class ReportRunQuerySet(models.QuerySet):
    def claim(self, slot: datetime, now: datetime, recipients: list[str]) -> "ReportRun | None":
        """The run of `slot` for this caller to send, or None when it is sent,
        being sent, or failed and not yet due again (CLAIM_SQL)."""
        with connection.cursor() as cursor:
            cursor.execute(CLAIM_SQL, {"slot": slot, "now": now, "recipients": recipients})
            found = cursor.fetchone()
        return self.get(pk=found[0]) if found else None


class ReportRun(models.Model):
    """One slot of the weekly report's schedule (REPORT_SCHEDULE) and what
    became of its mail. The row exists from the moment a worker claims the
    slot, before the mail leaves: a slot has one row, so one mail."""

    # The slot's moment (UTC): the end of the week the report covers.
    slot = models.DateTimeField(unique=True)
    started_at = models.DateTimeField(help_text="When the last attempt began.")
    sent_at = models.DateTimeField(null=True, blank=True)
    recipients = ArrayField(models.CharField(max_length=254), default=list)
    attempts = models.PositiveIntegerField(default=0)
    ok = models.BooleanField(default=False)
    # The last attempt's failure; empty while an attempt is under way or once sent.
    error = models.TextField(blank=True)
    # When a failed send may be tried again.
    retry_at = models.DateTimeField(null=True, blank=True)

    objects = ReportRunQuerySet.as_manager()

    class Meta:
        db_table = "report_runs"
        ordering = ["-slot"]

    def __str__(self) -> str:
        return f"report of {self.slot:%Y-%m-%d %H:%M} UTC"

    @property
    def state(self) -> str:
        if self.ok:
            return "sent"
        return "failed" if self.error else "sending"

    def record_sent(self, now: datetime) -> None:
        self.ok, self.sent_at, self.error, self.retry_at = True, now, "", None
        self.save(update_fields=["ok", "sent_at", "error", "retry_at"])

    def record_failure(self, now: datetime, error: str) -> None:
        wait = min(RETRY_FIRST * 2 ** min(self.attempts - 1, 10), RETRY_MOST)
        self.error, self.retry_at = error[:1000] or "failed", now + wait
        self.save(update_fields=["error", "retry_at"])
