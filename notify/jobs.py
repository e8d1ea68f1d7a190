"""The worker's job for the outbox (sphere_stats/worker.py)."""

from datetime import datetime

from notify.outbox import send_due
from sphere_stats.worker import job


@job("notify.send", every="OUTBOX_SEND_SECONDS")
def send_notifications(now: datetime) -> int:
    """Send the deliveries that are due (notify/outbox.py)."""
    return send_due(now)
