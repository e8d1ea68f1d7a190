from datetime import datetime

from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from audit.ingest import parse_timestamp
from audit.models import (
    DailyCallerCount,
    DailyProjectCount,
    Entity,
    EntityInterval,
    HourlyCount,
    OrgMembership,
)
from audit.triggers import rebuild_aggregates, rebuild_counts


def _moment(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        return parse_timestamp(value)
    except ValueError as exc:
        raise CommandError(f"{value!r} {exc}") from None


class Command(BaseCommand):
    help = "Recompute the pre-aggregates (hourly and daily counts, entities) from the events table."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--since", help="only hours and entities from here (RFC 3339)")
        parser.add_argument("--until", help="only hours and entities before here (RFC 3339)")
        parser.add_argument(
            "--counts-only",
            action="store_true",
            help="only the counts and memberships, not the entities (after a bulk SQL copy)",
        )
        parser.add_argument(
            "--dry-run", action="store_true", help="compute, report, then roll back"
        )

    def handle(
        self,
        *args,
        since: str | None,
        until: str | None,
        counts_only: bool,
        dry_run: bool,
        **options,
    ):
        start, end = _moment(since), _moment(until)
        with transaction.atomic():
            (rebuild_counts if counts_only else rebuild_aggregates)(start, end)
            self.stdout.write(
                f"hourly rows: {HourlyCount.objects.count()}, "
                f"daily caller rows: {DailyCallerCount.objects.count()}, "
                f"daily project rows: {DailyProjectCount.objects.count()}, "
                f"memberships: {OrgMembership.objects.count()}, "
                f"entities: {Entity.objects.count()}, "
                f"intervals: {EntityInterval.objects.count()}"
            )
            if dry_run:
                transaction.set_rollback(True)
                self.stdout.write(self.style.WARNING("dry run: nothing was changed"))
                return
        self.stdout.write(self.style.SUCCESS("pre-aggregates rebuilt"))
