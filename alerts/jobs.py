"""The worker's job for the alert rules (sphere_stats/worker.py)."""

from datetime import datetime

from django.utils import timezone

from alerts.engine import evaluate
from notify.outbox import send_due
from sphere_stats.worker import job


@job("alerts.evaluate", every="ALERT_EVALUATE_SECONDS")
def evaluate_rules(now: datetime) -> int:
    """Evaluate every active alert rule (alerts/engine.py), then send what
    that queued at once rather than at the outbox job's next run: the delay
    from an event to its message is then the evaluation interval alone.
    (Sending twice is impossible: the outbox takes rows with SKIP LOCKED.)"""
    handled = evaluate(now)
    if handled:
        send_due(timezone.now())
    return handled
