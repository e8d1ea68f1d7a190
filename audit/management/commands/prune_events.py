"""Opt-in retention: delete events older than N days, archiving them first.

Audit data is kept forever unless this command is run. Each batch is one
transaction that deletes the oldest events (DELETE … RETURNING each row as
the export's NDJSON object), writes and flushes those lines to the archive,
while the triggers on `events` take the rows out of every pre-aggregate, and
only then commits. A crash loses
nothing: the batch in flight is either committed after its lines reached the
archive, or rolled back and still in the table.

The archive is written as FILE.partial, one gzip member per batch (a
concatenation of members is one valid .gz), and renamed when done. A rerun
after a crash appends to that file, after cutting off the one member a crash
can leave behind that is not committed: a torn one, or a whole one whose
batch then rolled back. So every pruned event is in the archive exactly once.
"""

import gzip
import json
import os
import zlib
from datetime import timedelta
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import connection, transaction
from django.utils import timezone
from tqdm import tqdm

from audit.export import JSON_LINE  # the export's line, so archives match exports
from audit.models import Event, HourlyCount

_T = '"events"'

# The oldest `limit` events before the cutoff (a backward scan of
# idx_events_timestamp), deleted; the triggers on `events` take them out of
# every pre-aggregate in the same statement.
DELETE_SQL = f"""
WITH doomed AS (
    SELECT event_uuid FROM events
    WHERE timestamp < %s
    ORDER BY timestamp, event_uuid
    LIMIT %s
    FOR UPDATE
), gone AS (
    DELETE FROM events WHERE event_uuid IN (SELECT event_uuid FROM doomed)
    RETURNING {JSON_LINE} AS line, {_T}.timestamp, {_T}.event_uuid
)
SELECT line FROM gone ORDER BY timestamp, event_uuid
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
        partial = partial_of(archive) if archive else None
        resuming = partial is not None and partial.exists()
        if dry_run:
            self.stdout.write(f"Dry run: would delete {total} events {when}.")
            if archive is not None:
                self.stdout.write(f"They would be archived to {archive} first.")
            if resuming:
                self.stdout.write(f"{partial} from an interrupted run would be resumed.")
            return
        # A partial archive is finished even with nothing left to prune: the
        # interrupted run may have stopped after its last batch, before the rename.
        if resuming:
            kept = resume_partial(partial)
            self.stdout.write(
                f"Resuming {partial}: it keeps the {kept} events an interrupted run deleted."
            )
        elif total == 0:
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
        partial = partial_of(archive) if archive else None
        # Append: what an interrupted run archived (and committed) stays.
        out = partial.open("ab") if partial else None
        deleted = 0
        try:
            with tqdm(total=total, unit="event", disable=total < batch_size) as bar:
                while True:
                    with transaction.atomic():
                        with connection.cursor() as cursor:
                            cursor.execute(DELETE_SQL, [cutoff, batch_size])
                            rows = cursor.fetchall()
                        if not rows:
                            break
                        if out is not None:
                            write_member(out, rows)
                    deleted += len(rows)
                    bar.update(len(rows))
        finally:
            if out is not None:
                out.close()
        if partial is not None:
            partial.rename(archive)
        return deleted


def partial_of(archive: Path) -> Path:
    """Where the archive is written until the run completes."""
    return archive.with_name(archive.name + ".partial")


def write_member(out, rows: list[tuple]) -> None:
    """Append one batch's lines to the archive as a whole gzip member, on disk
    before the batch's delete commits."""
    out.write(gzip.compress("".join(row[0] + "\n" for row in rows).encode(), mtime=0))
    out.flush()
    os.fsync(out.fileno())


def resume_partial(partial: Path) -> int:
    """Cut an interrupted run's partial archive back to its committed batches;
    the number of events it keeps.

    Batches run one after another, each member fsynced before its batch
    commits, so only the last member can be uncommitted: torn (the crash hit
    while writing it) or whole with its events still in the table (the crash
    hit before the commit). Either is cut off; those events are pruned and
    archived again by this run.
    """
    members, last_uuids = _complete_members(partial)
    if members and _still_in_table(last_uuids):
        members.pop()
    with partial.open("r+b") as f:
        f.truncate(members[-1][0] if members else 0)
        # Before the rename or the next member: the cut must outlive a crash too.
        os.fsync(f.fileno())
    return sum(count for _, count in members)


def _still_in_table(uuids: list[str]) -> bool:
    # All of them: a batch's delete is one transaction, so a rolled-back
    # batch left every one of its events. (Any would drop a committed batch
    # of which some events were imported back since.)
    return Event.objects.filter(event_uuid__in=uuids).count() == len(uuids)


def _complete_members(path: Path) -> tuple[list[tuple[int, int]], list[str]]:
    """(end offset, event count) of each complete gzip member of `path`, in
    order, and the event uuids of the last one; bytes after it (a member torn
    by a crash) are left out. Only one member's uuids are held: an archive
    may hold millions of events."""
    members: list[tuple[int, int]] = []
    last_uuids: list[str] = []
    with path.open("rb") as f:
        start, data = 0, b""
        while True:
            inflate = zlib.decompressobj(wbits=31)  # 31: gzip framing
            used, line_start, uuids = 0, b"", []
            while not inflate.eof:
                if not data:
                    data = f.read(1 << 20)
                    if not data:
                        return members, last_uuids
                try:
                    text = line_start + inflate.decompress(data)
                    *lines, line_start = text.split(b"\n")
                    uuids.extend(json.loads(line)["event_uuid"] for line in lines)
                except (zlib.error, ValueError, KeyError, TypeError):
                    # Not what a crash leaves (a torn end): refuse rather than
                    # cut off what may be committed batches.
                    raise CommandError(
                        f"{path} is damaged after byte {start}, where its last whole "
                        f"batch ends. Check it; `truncate -s {start} {path}` keeps the "
                        "batches before, then run the command again."
                    ) from None
                used += len(data) - len(inflate.unused_data)
                data = inflate.unused_data
            start += used
            members.append((start, len(uuids)))
            last_uuids = uuids
