from contextlib import nullcontext
from itertools import islice

from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import connection, transaction
from tqdm import tqdm

from audit.aggregates import DERIVED_TABLES, PREAGGREGATE_TABLES
from audit.ingest import FIELDS, ingest, row_columns, validate
from audit.models import Event
from audit.triggers import analyze
from demo.history import generate
from sphere_stats.cli import positive_int
from sphere_stats.db import bulk_cursor

COPY_SQL = f"COPY events ({', '.join(FIELDS)}) FROM STDIN"
# A bulk load is one transaction, whose rows autovacuum's ANALYZE never sees:
# the tables are analyzed here whenever they have doubled, from this size,
# so the triggers' kept plans follow their growth (audit/triggers.py).
FIRST_ANALYZE = 20_000


class Command(BaseCommand):
    help = "Write a realistic, consistent portal history through the ingest validation."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--events", type=positive_int, default=50_000, help="how many events")
        parser.add_argument("--days", type=positive_int, default=365, help="history length in days")
        parser.add_argument(
            "--seed", type=int, default=1, help="random seed (same seed, same history)"
        )
        parser.add_argument("--batch", type=positive_int, default=5_000, help="events per insert")
        parser.add_argument(
            "--bulk",
            action="store_true",
            help="into an empty table only: validate, COPY (the triggers count each chunk), "
            "then rebuild the table's indexes (several times faster than ingest for "
            "benchmark-sized histories)",
        )

    def handle(
        self, *args, events: int, days: int, seed: int, batch: int, bulk: bool, **options
    ) -> None:
        if bulk and Event.objects.exists():
            raise CommandError("--bulk writes into an empty events table only; this one has rows.")
        # The history's facilities, placed on the map.
        call_command("seed_facilities", verbosity=0, stdout=self.stdout)
        stream = generate(events, days, seed)
        accepted = duplicates = conflicts = 0
        next_analyze = FIRST_ANALYZE
        with (
            tqdm(
                total=events, unit="ev", disable=options["verbosity"] < 1, file=self.stderr._out
            ) as bar,
            transaction.atomic() if bulk else nullcontext(),
        ):
            while chunk := list(islice(stream, batch)):
                if bulk:
                    accepted += _copy(chunk)
                    if accepted >= next_analyze:
                        _analyze()
                        next_analyze *= 2
                else:
                    result = ingest(chunk)
                    accepted += result.accepted
                    duplicates += result.duplicates
                    conflicts += len(result.conflicts)
                bar.update(len(chunk))
            if bulk:
                # The triggers on `events` counted each COPY as it went. Rows
                # copied into live indexes leave their pages part empty;
                # rebuilt from the whole table they are a third smaller (at
                # 10M events 5.9 -> 3.8 GB, for 94 s more than the 21-minute load).
                # The table is new and locked by this transaction anyway.
                with connection.cursor() as cursor:
                    cursor.execute("REINDEX TABLE events")
        if bulk and not connection.in_atomic_block:
            _compact_preaggregates()
        self.stdout.write(
            self.style.SUCCESS(
                f"Seeded {accepted} events over {days} days "
                f"({duplicates} already present, {conflicts} conflicting uuids skipped)."
            )
        )


def _compact_preaggregates() -> None:
    """Rewrite the pre-aggregates without the row versions the one load
    transaction left behind. Each COPY updated the rows of the months and
    days it touched, and no version could be vacuumed before the commit: at
    10M events the monthly caller counts took 647 MB for 31 MB of rows, and
    every scan of them read it all. Ingest's own transactions leave
    autovacuum the old versions as it goes."""
    with connection.cursor() as cursor:
        for table in PREAGGREGATE_TABLES:
            cursor.execute(f"VACUUM (FULL, ANALYZE) {table}")


def _analyze() -> None:
    with connection.cursor() as cursor:
        for table in ("events", *DERIVED_TABLES):
            analyze(cursor, table)


def _copy(chunk: list[dict]) -> int:
    rows = validate(chunk)
    with bulk_cursor() as cursor, cursor.copy(COPY_SQL) as copy:
        # The same columns, in FIELDS order, that the ingest statement takes.
        for row in zip(*row_columns(rows), strict=True):
            copy.write_row(row)
    return len(rows)
