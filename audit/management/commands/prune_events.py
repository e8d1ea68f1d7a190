"""Opt-in retention: delete events older than N days, archiving them first.

Audit data is kept forever unless this command is run. Each batch is one
transaction that deletes the oldest events (DELETE … RETURNING each row as
the export's NDJSON object), writes and flushes those lines to the archive,
lowers the hourly pre-aggregate by exactly what was deleted, rebuilds the
entities whose lifecycle events went, and only then commits. A crash loses
nothing: the batch in flight is either committed after its lines reached the
archive, or rolled back and still in the table.
"""

import gzip
import os
from datetime import timedelta
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import connection, transaction
from django.utils import timezone
from tqdm import tqdm

from audit import aggregates
from audit.export import _UTC  # the export's timestamp format, so archives match exports
from audit.models import Event, HourlyCount

_T = '"events"'
# The export's NDJSON object (audit/export.py), built for the deleted rows.
_LINE = "json_build_object({})::text".format(
    ", ".join(
        f"'{name}', {expr}"
        for name, expr in [
            ("event_uuid", f"{_T}.event_uuid"),
            ("timestamp", _UTC),
            *((c, f"{_T}.{c}") for c in Event.COLUMNS[2:]),
        ]
    )
)

# The oldest `limit` events before the cutoff (a backward scan of
# idx_events_ts_uuid), deleted, their hourly counts lowered by as much.
DELETE_SQL = f"""
WITH doomed AS (
    SELECT event_uuid FROM events
    WHERE timestamp < %s
    ORDER BY timestamp, event_uuid
    LIMIT %s
    FOR UPDATE
), gone AS (
    DELETE FROM events WHERE event_uuid IN (SELECT event_uuid FROM doomed)
    RETURNING {_LINE} AS line, {_T}.timestamp, {_T}.event_uuid, {_T}.event_type,
              {_T}.success, {_T}.subject, {_T}.target, {_T}.payload->>'project' AS project
), lowered AS (
    UPDATE event_counts_hourly AS c SET n = c.n - g.n
    FROM (
        SELECT date_trunc('hour', timestamp, 'UTC') AS bucket, event_type, success,
               count(*) AS n
        FROM gone GROUP BY 1, 2, 3
    ) AS g
    WHERE c.bucket = g.bucket AND c.event_type = g.event_type AND c.success = g.success
)
SELECT line, event_type, success, subject, target, project FROM gone
ORDER BY timestamp, event_uuid
"""


class Command(BaseCommand):
    help = "Archive (NDJSON gz) and delete events older than N days; nothing is pruned otherwise."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--older-than",
            type=int,
            required=True,
            metavar="DAYS",
            help="delete events whose timestamp is more than DAYS days ago",
        )
        parser.add_argument(
            "--archive",
            type=Path,
            metavar="FILE.ndjson.gz",
            help="write the deleted events here first (the export's NDJSON, gzipped)",
        )
        parser.add_argument("--dry-run", action="store_true", help="count, change nothing")
        parser.add_argument("--batch-size", type=int, default=10_000, help="events per transaction")

    def handle(
        self,
        *args,
        older_than: int,
        archive: Path | None,
        dry_run: bool,
        batch_size: int,
        **options,
    ) -> None:
        if older_than < 1:
            raise CommandError("--older-than must be at least 1 day.")
        if batch_size < 1:
            raise CommandError("--batch-size must be positive.")
        if archive is not None:
            if not archive.name.endswith(".ndjson.gz"):
                raise CommandError("--archive must name a .ndjson.gz file.")
            if archive.exists():
                raise CommandError(f"{archive} exists; archives are never overwritten.")
            if not archive.parent.is_dir():
                raise CommandError(f"{archive.parent} is not a directory.")

        cutoff = timezone.now() - timedelta(days=older_than)
        # Exact, from the hourly pre-aggregate plus at most an hour of rows.
        total = HourlyCount.objects.exact_count(None, None, None, cutoff)
        when = f"before {cutoff:%Y-%m-%d %H:%M:%S} UTC ({older_than} days ago)"
        if dry_run:
            self.stdout.write(f"Dry run: would delete {total} events {when}.")
            if archive is not None:
                self.stdout.write(f"They would be archived to {archive} first.")
            return
        if total == 0:
            self.stdout.write(f"No events {when}; nothing to do.")
            return
        if archive is None:
            self.stderr.write(
                self.style.WARNING("No --archive given: the deleted events are kept nowhere.")
            )

        deleted = self._prune(cutoff, archive, batch_size, total)
        where = f"; archived to {archive}" if archive else ""
        self.stdout.write(self.style.SUCCESS(f"Deleted {deleted} events {when}{where}."))

    def _prune(self, cutoff, archive: Path | None, batch_size: int, total: int) -> int:
        partial = archive.with_name(archive.name + ".partial") if archive else None
        out = gzip.open(partial, "wb") if partial else None  # noqa: SIM115 (closed below)
        deleted = 0
        try:
            with tqdm(total=total, unit="event", disable=total < batch_size) as bar:
                while True:
                    with transaction.atomic():
                        with connection.cursor() as cursor:
                            cursor.execute(DELETE_SQL, [cutoff, batch_size])
                            rows = cursor.fetchall()
                            cursor.execute(
                                "DELETE FROM event_counts_hourly "
                                "WHERE bucket < %s + interval '1 hour' AND n <= 0",
                                [cutoff],
                            )
                        if not rows:
                            break
                        # Deleted events: each entity they touched is re-read
                        # from what remains (the full path, never a resume).
                        aggregates.refresh_entities(
                            aggregates.entity_keys(_Deleted(*row[1:]) for row in rows)
                        )
                        if out is not None:
                            out.write("".join(row[0] + "\n" for row in rows).encode())
                            # The lines are on disk before the delete commits.
                            out.flush()
                            os.fsync(out.fileobj.fileno())
                    deleted += len(rows)
                    bar.update(len(rows))
        finally:
            if out is not None:
                out.close()
        if partial is not None:
            partial.rename(archive)
        return deleted


class _Deleted:
    """What aggregates.entity_keys reads of a deleted event."""

    __slots__ = ("event_type", "payload", "subject", "success", "target")

    def __init__(self, event_type, success, subject, target, project) -> None:
        self.event_type = event_type
        self.success = success
        self.subject = subject
        self.target = target
        self.payload = {"project": project} if project is not None else {}
