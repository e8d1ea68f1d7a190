"""The demo facilities' controllers: without them every facility on the map
turns unknown FACILITY_STALE_AFTER after the seeded history ends.

Each round posts one `facility_status` report per facility through
audit.ingest, the path POST /api/v1/events takes, as a real controller's
report would. It keeps the demo's current story (audit.demo): wisc down,
clemson in maintenance, tacc degraded, every other facility up.
"""

import time

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser
from django.db import DatabaseError, connections
from django.utils import timezone

from audit.demo import FACILITIES, current_facility_state
from audit.ingest import IngestError, ingest
from facilities.models import Facility
from facilities.status import STATUS_EVENT
from sphere_stats.cli import positive_int


def status_reports() -> list[dict]:
    """One report per facility, as its controller would post it now."""
    now = timezone.now()
    reports = []
    for slug in Facility.objects.for_map().values_list("slug", flat=True):
        status, message = current_facility_state(slug) if slug in FACILITIES else ("up", "")
        reports.append(
            {
                "timestamp": now.isoformat(),
                "event_type": STATUS_EVENT,
                "caller": f"{slug}-controller",
                "subject": slug,
                "subject_type": "facility",
                "success": True,
                "payload": {"status": status, **({"message": message} if message else {})},
            }
        )
    return reports


class Command(BaseCommand):
    help = "Post each facility's demo status every --every seconds, as its controller would."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--every",
            type=positive_int,
            default=300,
            help="seconds between rounds (default 300; keep it under FACILITY_STALE_AFTER)",
        )
        parser.add_argument("--once", action="store_true", help="report one round, then exit")

    def handle(self, *args, every: int, once: bool, **options) -> None:
        if not once and every > settings.FACILITY_STALE_AFTER:
            self.stderr.write(
                f"demo_reporter: reports every {every} s go stale after "
                f"{settings.FACILITY_STALE_AFTER} s (FACILITY_STALE_AFTER): the map will "
                "show unknown between rounds."
            )
        while True:
            try:
                self.report(options["verbosity"])
            except (DatabaseError, IngestError) as exc:
                if once:
                    raise
                # A database restart must not end the demo's reports for good.
                self.stderr.write(f"demo_reporter: no reports this round ({exc})")
            if once:
                return
            # No connection held idle between rounds (nor one gone dead in the
            # meantime used for the next): each round opens its own.
            connections.close_all()
            time.sleep(every)

    def report(self, verbosity: int) -> None:
        reports = status_reports()
        result = ingest(reports)
        if verbosity >= 1:
            summary = ", ".join(f"{r['subject']} {r['payload']['status']}" for r in reports)
            self.stdout.write(f"Reported {result.accepted} facility statuses: {summary or 'none'}")
