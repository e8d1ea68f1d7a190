from datetime import UTC, datetime

import pytest

from alerts.models import AlertRule
from notify.models import Channel, Delivery

NOW = datetime(2026, 4, 23, 21, 0, tzinfo=UTC)


@pytest.fixture
def channel(db) -> Channel:
    # Nothing listens here: these tests read the outbox, not a receiver.
    return Channel.objects.create(name="ops hook", kind="webhook", url="http://127.0.0.1:9/hook")


@pytest.fixture
def make_rule(channel):
    """A rule of `kind` with `params`, told to the channel, checked as the
    admin checks it."""

    def make(kind: str, name: str = "", **params) -> AlertRule:
        rule = AlertRule(name=name or f"{kind} rule", kind=kind, **params)
        rule.full_clean()
        rule.save()
        rule.channels.add(channel)
        return rule

    return make


def messages(topic: str = "") -> list[str]:
    """The subjects queued in the outbox, oldest first (of `topic` if given)."""
    deliveries = Delivery.objects.order_by("created_at", "id")
    if topic:
        deliveries = deliveries.filter(topic=topic)
    return list(deliveries.values_list("subject", flat=True))
