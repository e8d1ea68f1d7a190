"""`manage.py run_worker`: the background jobs (sphere_stats/worker.py), in a
loop until SIGTERM or Ctrl-C; `--once` runs every job once and exits (cron,
tests)."""

import logging
import signal
import time

from django.core.management.base import BaseCommand
from django.db import InterfaceError, OperationalError, close_old_connections, connection

from sphere_stats.worker import JOBS, run_due

log = logging.getLogger(__name__)
TICK_SECONDS = 1.0
# After the database did not answer, wait this long, doubling to the most.
RETRY_SECONDS, RETRY_MAX_SECONDS = 1.0, 30.0


class Command(BaseCommand):
    help = "Run the background jobs: alert rules, the outbox, audit streams, the weekly report."

    def add_arguments(self, parser):
        parser.add_argument("--once", action="store_true", help="run every job once and exit")

    def handle(self, *args, once: bool, **options):
        if once:
            for name, handled in run_due(force=True).items():
                self.stdout.write(f"{name}: {'failed' if handled is None else handled}")
            return
        stopping = []
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stopping.append(True))
        self.stdout.write(f"worker: {', '.join(sorted(JOBS))}")
        wait = RETRY_SECONDS
        while not stopping:
            try:
                close_old_connections()
                run_due()
                wait = RETRY_SECONDS
                time.sleep(TICK_SECONDS)
            except (OperationalError, InterfaceError) as e:
                # A database outage: nothing is lost (progress is committed
                # as it goes), so wait, reconnect and carry on.
                log.warning("worker: database unavailable (%s); retrying in %.0f s", e, wait)
                connection.close()
                time.sleep(wait)
                wait = min(wait * 2, RETRY_MAX_SECONDS)
