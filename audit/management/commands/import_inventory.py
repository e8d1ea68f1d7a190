"""Record the portal's inventory as catalogued snapshot events (the audit.inventory package).

The whole file is read and every record checked first; then, in one
transaction, the inventory is compared with what the events say at its
time and only the differences are stored, through the catalog and the
ingest path like any other event. A file with any bad record stores
nothing, and every problem is listed with its line (CSV) or path (JSON) and
field. Importing the same inventory again records nothing. The formats are
in docs/inventory.md.
"""

import sys
from argparse import ArgumentTypeError
from datetime import datetime
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction
from django.utils import timezone
from tqdm import tqdm

from audit import inventory as inv
from audit.ingest import MAX_NAME_LENGTH, parse_timestamp, store
from sphere_stats.cli import positive_int

BATCH = 2000  # events per INSERT statement, all in the one transaction


def rfc3339(text: str) -> datetime:
    """argparse type: an RFC 3339 timestamp with its UTC offset."""
    try:
        return parse_timestamp(text)
    except ValueError as exc:
        raise ArgumentTypeError(f"{text!r} {exc}") from None


def caller_name(text: str) -> str:
    """argparse type: a name the events' caller column holds."""
    if len(text) > MAX_NAME_LENGTH or "\x00" in text:
        raise ArgumentTypeError(f"must be at most {MAX_NAME_LENGTH} characters, without NUL")
    return text


class Command(BaseCommand):
    help = "Record the portal's inventory (CSV or JSON) as snapshot events where it differs."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("file", help="the inventory ('-' reads stdin, with --format)")
        parser.add_argument(
            "--format", choices=inv.FORMATS, help="default: from the file's extension"
        )
        parser.add_argument(
            "--taken-at",
            type=rfc3339,
            help="when the inventory was taken (RFC 3339): required for CSV, "
            "overrides a JSON file's taken_at",
        )
        parser.add_argument(
            "--caller",
            type=caller_name,
            default="inventory",
            help="the caller of the recorded events (default: inventory)",
        )
        parser.add_argument(
            "--keep-absent",
            action="store_true",
            help="a partial inventory: delete nothing it leaves out",
        )
        parser.add_argument(
            "--dry-run", action="store_true", help="report what would be recorded; store nothing"
        )
        parser.add_argument(
            "--max-report",
            type=positive_int,
            default=100,
            help="problems to list (default 100)",
        )

    def handle(
        self,
        *args,
        file: str,
        taken_at: datetime | None,
        caller: str,
        keep_absent: bool,
        dry_run: bool,
        max_report: int,
        **options,
    ):
        fmt = options["format"] or _format_of(file)
        inventory = inv.read(_text(file), fmt)
        where = "--taken-at" if taken_at or fmt == "csv" else "taken_at"
        taken_at = taken_at or inventory.taken_at
        now = timezone.now()
        problem = inv.taken_at_problem(taken_at, now)
        if problem:
            inventory.problem(where, None, problem)
        inv.check(inventory, keep_absent)
        if inventory.problems:
            self._fail(inventory.sorted_problems(), max_report)

        with transaction.atomic():
            plan = inv.plan(inventory, taken_at, caller, keep_absent)
            rows, problems = inv.validated(plan, now)
            if problems:
                self._fail(problems, max_report)
            duplicates: set[int] = set()
            if not dry_run:
                duplicates = self._store(plan, rows, max_report, options["verbosity"])
        self._report(plan, dry_run, duplicates)

    def _store(self, plan: inv.Plan, rows: list, max_report: int, verbosity: int) -> set[int]:
        """Store the rows; returns the plan's indexes of those another run at
        the same time stored first. Raises, rolling all back, if a uuid holds
        other content."""
        duplicates: set[int] = set()
        conflicts = []
        with tqdm(
            total=len(rows),
            unit="event",
            desc="record",
            disable=verbosity < 1 or None,
            file=sys.stderr,
        ) as bar:
            for offset in range(0, len(rows), BATCH):
                batch = rows[offset : offset + BATCH]
                result = store(batch)
                duplicates.update(result.duplicate_indexes)
                conflicts.extend(
                    inv.Problem(
                        plan.sources[conflict["index"]].where,
                        None,
                        "an inventory taken at this same moment recorded it otherwise "
                        "(events are immutable): import the new one with a later --taken-at",
                    )
                    for conflict in result.conflicts
                )
                bar.update(len(batch))
        if conflicts:
            self._fail(conflicts, max_report)
        return duplicates

    def _fail(self, problems: list[inv.Problem], max_report: int) -> None:
        for problem in problems[:max_report]:
            self.stdout.write(f"  {problem}")
        if len(problems) > max_report:
            self.stdout.write(f"  … and {len(problems) - max_report} more")
        raise CommandError(f"{len(problems)} problems in the inventory; nothing was stored.")

    def _report(self, plan: inv.Plan, dry_run: bool, duplicates: set[int]) -> None:
        verb = "Would record" if dry_run else "Recorded"
        counts = plan.counts(leaving_out=duplicates)
        total = sum(counts.values())
        self.stdout.write(
            self.style.SUCCESS(
                f"{verb} {total} events at {plan.taken_at.isoformat()} "
                f"(caller {plan.caller!r}){' — dry run, nothing stored' if dry_run else ''}"
            )
        )
        for event_type, n in sorted(counts.items()):
            self.stdout.write(f"  {event_type}: {n}")
        if duplicates:
            self.stdout.write(f"  already recorded by another run: {len(duplicates)}")
        self.stdout.write(f"unchanged: {plan.unchanged}")


def _format_of(file: str) -> str:
    suffix = Path(file).suffix.lower().removeprefix(".")
    if suffix not in inv.FORMATS:
        raise CommandError(f"cannot tell the format of {file}: name it .csv or .json, or --format")
    return suffix


def _text(file: str) -> str:
    try:
        if file == "-":
            return sys.stdin.read()
        # utf-8-sig: a spreadsheet's CSV may begin with a byte order mark.
        return Path(file).read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise CommandError(f"{file} is not UTF-8 text ({exc.reason})") from None
    except OSError as exc:
        raise CommandError(f"cannot read {file}: {exc.strerror}") from None
