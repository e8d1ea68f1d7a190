"""The background worker's jobs: what runs every few seconds whether or not
anyone is looking (alert rules, the notification outbox, audit streams, the
weekly report).

An app registers a job with `@job(name, every=...)` in a module its
AppConfig.ready() imports; `python manage.py run_worker` runs each when it is
due. A job is `f(now) -> int` (how many things it handled) and must be safe
to run again after a crash: its progress lives in the database, committed as
it goes, never in the worker's memory, so a restarted worker (or another
replica) carries on where the last one stopped.

Each run holds a PostgreSQL advisory lock named after its job, so any number
of worker processes may run (one per host, or a spare): at most one runs a
given job at a time, and a worker that dies releases its locks with its
connection. The last run of each job is kept in `worker_jobs` for the admin
and `/alerts/`.
"""

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from django.conf import settings
from django.db import connection
from django.utils import timezone

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Job:
    name: str
    # Seconds between runs, or the name of the setting that holds them (read
    # at each run, so tests and operators can change it).
    every: float | str
    run: Callable[[datetime], int]

    @property
    def interval(self) -> float:
        return float(getattr(settings, self.every) if isinstance(self.every, str) else self.every)


JOBS: dict[str, Job] = {}
# When each job last ran in this process (monotonic seconds).
_last_run: dict[str, float] = {}


def job(name: str, every: float | str) -> Callable:
    """Register `f(now) -> int` as the job `name`, run every `every` seconds."""

    def register(func: Callable[[datetime], int]) -> Callable[[datetime], int]:
        JOBS[name] = Job(name, every, func)
        return func

    return register


def run_job(item: Job, now: datetime | None = None) -> int | None:
    """Run one job now under its advisory lock; None if another process holds
    it. Its outcome, failures included, is recorded in `worker_jobs`."""
    from sphere_stats.models import WorkerJob

    now = now or timezone.now()
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_lock(hashtext(%(n)s))", {"n": f"job:{item.name}"})
        if not cursor.fetchone()[0]:
            return None
        try:
            started = time.monotonic()
            handled = item.run(now)
            WorkerJob.record(item.name, now, time.monotonic() - started, handled or 0, "")
            return handled or 0
        except Exception as e:
            log.exception("worker job %s failed", item.name)
            if connection.is_usable():
                WorkerJob.record(item.name, now, time.monotonic() - started, 0, repr(e)[:1000])
            raise
        finally:
            if connection.is_usable():
                cursor.execute(
                    "SELECT pg_advisory_unlock(hashtext(%(n)s))", {"n": f"job:{item.name}"}
                )


def run_due(now: datetime | None = None, *, force: bool = False) -> dict[str, int | None]:
    """Run every job whose interval has passed (every job with `force`); a
    job that fails is logged and recorded and does not stop the others."""
    done: dict[str, int | None] = {}
    for item in list(JOBS.values()):
        last = _last_run.get(item.name)
        if not force and last is not None and time.monotonic() - last < item.interval:
            continue
        _last_run[item.name] = time.monotonic()
        try:
            done[item.name] = run_job(item, now)
        except Exception:
            done[item.name] = None
            if not connection.is_usable():
                raise  # the database went away: the loop waits and reconnects
    return done


class WorkerCollector:
    """The worker's health for GET /metrics (registered by SphereStatsConfig):
    when each job last ran and last succeeded, and whether its last run
    failed. A Prometheus rule on `time() - sphere_worker_job_last_success_
    timestamp_seconds` pages someone when the worker stops."""

    def collect(self):
        from prometheus_client.core import GaugeMetricFamily

        from sphere_stats.models import WorkerJob

        last_run = GaugeMetricFamily(
            "sphere_worker_job_last_run_timestamp_seconds",
            "When the background job last ran (Unix time).",
            labels=["job"],
        )
        last_ok = GaugeMetricFamily(
            "sphere_worker_job_last_success_timestamp_seconds",
            "When the background job last ran without an error (Unix time).",
            labels=["job"],
        )
        failing = GaugeMetricFamily(
            "sphere_worker_job_failing",
            "1 when the background job's last run failed, else 0.",
            labels=["job"],
        )
        for row in WorkerJob.objects.all():
            last_run.add_metric([row.name], row.last_run.timestamp())
            if row.last_ok is not None:
                last_ok.add_metric([row.name], row.last_ok.timestamp())
            failing.add_metric([row.name], 1 if row.last_error else 0)
        yield from (last_run, last_ok, failing)
