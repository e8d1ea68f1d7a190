"""The demo facilities' controllers: without them every facility on the map
turns unknown once the last seeded report's hold time is over.

Each round posts one `facility_status` report per facility through
audit.ingest, the path POST /api/v1/events takes, as a real controller's
report would. It keeps the demo's current story (demo.sites): wisc down,
clemson in maintenance, tacc degraded, every other facility up. Each report
names when the next will come (payload.interval: a round with half a round's
slack), so the map stays known between rounds however long they are.
"""

import math
import time

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import DatabaseError, connections
from django.utils import timezone

from audit.catalog import FACILITY_MAX_INTERVAL
from audit.ingest import IngestError, ingest
from demo.sites import FACILITIES, current_facility_state
from facilities.models import Facility
from facilities.status import STATUS_EVENT
from sphere_stats.cli import positive_int

# A report holds this much longer than a round: a slow round (a busy
# database) does not turn the map grey before the next.
SLACK = 1.5


def report_interval(every: int) -> int:
    """payload.interval for rounds `every` seconds apart: a round with slack."""
    return math.ceil(every * SLACK)


def status_reports(interval: int) -> list[dict]:
    """One report per facility, as its controller would post it now, each
    saying the next comes within `interval` seconds."""
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
                "payload": {
                    "status": status,
                    **({"message": message} if message else {}),
                    "interval": interval,
                },
            }
        )
    return reports


class Command(BaseCommand):
    help = "Post each facility's demo status every --every seconds, as its controller would."

    def add_arguments(self, parser: CommandParser) -> None:
        # Two thirds of the staleness limit (600 s at the default 15 minutes):
        # the demo's incidents are reported as often as a real controller
        # reports one, and an hour of the demo adds 36 reports, not the 72
        # of a round every 5 minutes.
        every = max(1, settings.FACILITY_STALE_AFTER * 2 // 3)
        parser.add_argument(
            "--every",
            type=positive_int,
            default=every,
            help=f"seconds between rounds (default {every}, two thirds of "
            "FACILITY_STALE_AFTER); each report holds one and a half rounds",
        )
        parser.add_argument("--once", action="store_true", help="report one round, then exit")

    def handle(self, *args, every: int, once: bool, **options) -> None:
        longest = math.floor(FACILITY_MAX_INTERVAL / SLACK)
        if every > longest:
            raise CommandError(
                f"--every {every} is more than {longest} s: a report's interval "
                f"(one and a half rounds) may be at most {FACILITY_MAX_INTERVAL} s."
            )
        interval = report_interval(every)
        while True:
            try:
                self.report(interval, options["verbosity"])
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

    def report(self, interval: int, verbosity: int) -> None:
        reports = status_reports(interval)
        result = ingest(reports)
        if verbosity >= 1:
            summary = ", ".join(f"{r['subject']} {r['payload']['status']}" for r in reports)
            self.stdout.write(f"Reported {result.accepted} facility statuses: {summary or 'none'}")
