"""The outbox's backlog for GET /metrics (sphere_stats/metrics.py); NotifyConfig.ready
registers it."""

from collections.abc import Iterator

from prometheus_client.core import GaugeMetricFamily

from notify.models import Delivery


class OutboxCollector:
    """Notifications not yet delivered, by state: `pending` (never tried),
    `retrying` (failed, to be tried again) and `gave_up` (failed for
    OUTBOX_GIVE_UP_SECONDS). A growing `retrying` is a receiver that is down."""

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            "sphere_notifications_undelivered",
            "Notifications in the outbox not delivered, by state (pending, retrying, gave_up).",
            labels=["state"],
        )
        for state in ("pending", "retrying", "gave up"):
            family.add_metric([state.replace(" ", "_")], Delivery.objects.in_state(state).count())
        yield family
