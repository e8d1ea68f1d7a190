"""The worker job of the streams (sphere_stats/worker.py)."""

from datetime import datetime

from sphere_stats.worker import job
from streams.sender import send_all


@job("streams.send", every="STREAM_SEND_SECONDS")
def send_streams(now: datetime) -> int:
    """Send every destination what it has not received yet; prune the feed."""
    return send_all(now)
