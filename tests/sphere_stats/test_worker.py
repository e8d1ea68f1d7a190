"""The background worker (sphere_stats/worker.py, manage.py run_worker): jobs
run when due, one process at a time, and a failing job or a database outage
stops nothing."""

from datetime import UTC, datetime
from io import StringIO

import psycopg
import pytest
from django.core.management import call_command
from django.db import connection

from sphere_stats import worker
from sphere_stats.management.commands import run_worker
from sphere_stats.models import WorkerJob

NOW = datetime(2026, 12, 5, 12, 0, tzinfo=UTC)


@pytest.fixture
def jobs(monkeypatch):
    """An empty registry for the test's own jobs."""
    monkeypatch.setattr(worker, "JOBS", {})
    monkeypatch.setattr(worker, "_last_run", {})
    return worker.JOBS


@pytest.mark.django_db
def test_a_job_runs_when_its_interval_has_passed_and_its_outcome_is_recorded(jobs, settings):
    runs = []
    settings.ALERT_EVALUATE_SECONDS = 3600
    worker.job("test.every_hour", every="ALERT_EVALUATE_SECONDS")(lambda now: runs.append(now) or 7)
    assert worker.run_due(NOW) == {"test.every_hour": 7}
    assert worker.run_due(NOW) == {}  # not due again within the hour
    assert runs == [NOW]
    assert worker.run_due(NOW, force=True) == {"test.every_hour": 7}
    row = WorkerJob.objects.get(name="test.every_hour")
    assert (row.last_run, row.last_ok, row.handled, row.last_error) == (NOW, NOW, 7, "")


@pytest.mark.django_db
def test_a_failing_job_is_recorded_and_the_others_still_run(jobs):
    def broken(now):
        raise ValueError("receiver config is wrong")

    worker.job("test.broken", every=1)(broken)
    worker.job("test.fine", every=1)(lambda now: 1)
    assert worker.run_due(NOW) == {"test.broken": None, "test.fine": 1}
    row = WorkerJob.objects.get(name="test.broken")
    assert "receiver config is wrong" in row.last_error
    assert row.last_ok is None


@pytest.mark.django_db(transaction=True)
def test_a_job_another_process_is_running_is_skipped_not_run_twice(jobs):
    runs = []
    item = worker.Job("test.locked", 1, lambda now: runs.append(now) or 1)
    with _other_connection() as other:
        other.execute("SELECT pg_advisory_lock(hashtext('job:test.locked'))")
        assert worker.run_job(item, NOW) is None
        other.execute("SELECT pg_advisory_unlock(hashtext('job:test.locked'))")
    assert worker.run_job(item, NOW) == 1
    assert runs == [NOW]


@pytest.mark.django_db
def test_run_worker_once_runs_every_job_and_says_what_each_did(jobs):
    worker.job("test.a", every=3600)(lambda now: 2)
    worker.job("test.b", every=3600)(lambda now: 0)
    out = StringIO()
    call_command("run_worker", "--once", stdout=out)
    assert out.getvalue().splitlines() == ["test.a: 2", "test.b: 0"]


@pytest.mark.django_db(transaction=True)
def test_the_loop_waits_out_a_lost_database_connection_and_carries_on(jobs, monkeypatch):
    calls = []

    def job(now):
        calls.append(now)
        if len(calls) == 1:
            # The server drops this connection (as a restart does): the
            # job's next query fails for real.
            pid = connection.cursor().connection.info.backend_pid
            with _other_connection() as other:
                other.execute("SELECT pg_terminate_backend(%s)", [pid])
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        return 1

    worker.job("test.outage", every=0)(job)
    naps = []

    def sleep(seconds):
        naps.append(seconds)
        if len(calls) >= 3:
            raise KeyboardInterrupt

    monkeypatch.setattr(run_worker.time, "sleep", sleep)
    monkeypatch.setattr(run_worker.signal, "signal", lambda *a: None)
    with pytest.raises(KeyboardInterrupt):
        call_command("run_worker", stdout=StringIO())
    assert len(calls) == 3  # it reconnected and went on
    assert naps[0] == run_worker.RETRY_SECONDS  # waited before reconnecting
    assert WorkerJob.objects.get(name="test.outage").last_error == ""


def test_every_app_job_is_registered():
    assert {"notify.send", "alerts.evaluate", "streams.send", "dashboards.report"} <= set(
        worker.JOBS
    )


def _other_connection() -> psycopg.Connection:
    params = connection.get_connection_params()
    params.pop("cursor_factory", None)
    return psycopg.connect(**params, autocommit=True)
