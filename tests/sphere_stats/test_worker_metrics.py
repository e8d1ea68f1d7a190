"""GET /metrics says whether the background worker is alive and what waits in
the outbox, so Prometheus can page someone when either goes wrong."""

from datetime import UTC, datetime

import pytest
from django.test import Client
from django.utils import timezone

from notify.models import Channel
from notify.outbox import enqueue, send_due
from sphere_stats import worker
from sphere_stats.models import ApiToken
from tests.sphere_stats.test_metrics import samples

NOW = datetime(2026, 12, 5, 12, 0, tzinfo=UTC)
pytestmark = pytest.mark.django_db


def scrape() -> dict:
    token = ApiToken.issue("prometheus", ["metrics"])[1]
    response = Client(HTTP_AUTHORIZATION=f"Bearer {token}").get("/metrics")
    assert response.status_code == 200
    return samples(response.content.decode())


def test_each_jobs_last_run_last_success_and_failure_are_exposed(monkeypatch):
    monkeypatch.setattr(worker, "JOBS", {})
    monkeypatch.setattr(worker, "_last_run", {})

    def broken(now):
        raise RuntimeError("receiver misconfigured")

    worker.job("test.fine", every=1)(lambda now: 1)
    worker.job("test.broken", every=1)(broken)
    worker.run_due(NOW)
    found = scrape()
    fine, bad = frozenset({("job", "test.fine")}), frozenset({("job", "test.broken")})
    assert found["sphere_worker_job_last_run_timestamp_seconds"][fine] == NOW.timestamp()
    assert found["sphere_worker_job_last_success_timestamp_seconds"][fine] == NOW.timestamp()
    assert bad not in found["sphere_worker_job_last_success_timestamp_seconds"]
    assert found["sphere_worker_job_failing"] == {fine: 0, bad: 1}


def test_undelivered_notifications_are_counted_by_state():
    down = Channel.objects.create(name="down", kind="webhook", url="http://127.0.0.1:9/")
    for n in range(3):
        enqueue([down], topic="test", subject=f"test {n}", payload={}, text="")
    send_due(timezone.now())  # nothing listens on port 9: all three fail once
    enqueue([down], topic="test", subject="one more", payload={}, text="")
    found = scrape()["sphere_notifications_undelivered"]
    assert found == {
        frozenset({("state", "pending")}): 1,
        frozenset({("state", "retrying")}): 3,
        frozenset({("state", "gave_up")}): 0,
    }
