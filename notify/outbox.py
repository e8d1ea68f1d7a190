"""The outbox: `enqueue` writes deliveries in the caller's transaction, the
worker's `notify.send` job (`send_due`) sends them, at least once.

Writing the rows in the caller's transaction means a notification exists
exactly when what it tells of does: an alert's incident and its deliveries
commit together or not at all, and nothing is sent for a rolled-back one.
The sender sends after the commit, whenever a worker runs, so a receiver
that is down, a restart or a crash delays a notification but never loses it.
"""

import json
import logging
import random
import time
import uuid
from collections.abc import Iterable
from datetime import datetime, timedelta

from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.db import transaction
from django.utils import timezone

from notify.kinds import KINDS
from notify.models import Channel, Delivery, DeliveryAttempt
from sphere_stats.webhooks import Outcome

log = logging.getLogger(__name__)

# The wait after the first failed attempt, doubling after each further one
# up to the most; each wait is stretched by up to JITTER so deliveries that
# failed together (one receiver down) do not all come back in the same second.
FIRST_RETRY_SECONDS = 10
MAX_RETRY_SECONDS = 3600
JITTER = 0.1
# Deliveries tried per run of the job at most: a receiver that hangs costs
# up to webhooks.TIMEOUT_SECONDS each, and the worker's other jobs (alert
# rules) wait for this one. The rest go at the next run, a few seconds later.
MAX_PER_RUN = 100


def webhook_body(delivery_id: uuid.UUID, topic: str, subject: str, at: datetime, payload) -> str:
    """The JSON a webhook receives (docs/notifications.md): ASCII only, so
    its text and the bytes that are signed and sent are the same."""
    envelope = {
        "delivery": str(delivery_id),
        "topic": topic,
        "subject": subject,
        "created_at": at.isoformat(),
        "data": payload,
    }
    return json.dumps(envelope, cls=DjangoJSONEncoder, separators=(",", ":"))


def enqueue(
    channels: Iterable[Channel], *, topic: str, subject: str, payload: dict, text: str
) -> list[Delivery]:
    """Queue one delivery per active channel of `channels` and return them.

    Only writes rows, inside the caller's transaction: they commit (and
    are sent, by the worker) with it or not at all. `payload` is the
    webhook body's "data" (JSON-serialisable; datetimes, UUIDs and decimals
    become strings); `subject` and `text` are an email's. Inactive channels
    are skipped.
    """
    now = timezone.now()
    # A line break in an email subject would be a header injection, which
    # Django refuses at send time; one line is what every kind wants.
    subject = " ".join(subject.split())
    rows = []
    for channel in channels:
        if not channel.active:
            continue
        delivery_id = uuid.uuid4()
        rows.append(
            Delivery(
                delivery_id=delivery_id,
                channel=channel,
                topic=topic,
                subject=subject,
                body=webhook_body(delivery_id, topic, subject, now, payload),
                text=text,
                created_at=now,
                next_attempt_at=now,
            )
        )
    return Delivery.objects.bulk_create(rows)


def retry_delay(attempts: int) -> timedelta:
    """The wait after the `attempts`-th failed attempt: 10 s, 20 s, 40 s, ...
    up to an hour, each plus up to 10 %."""
    base = min(FIRST_RETRY_SECONDS * 2 ** (attempts - 1), MAX_RETRY_SECONDS)
    return timedelta(seconds=base * (1 + random.uniform(0, JITTER)))


def attempt(delivery: Delivery) -> tuple[Outcome, int]:
    """Send `delivery` once through its channel's kind; the outcome and how
    long it took in milliseconds. A bug in a kind is a failed attempt, not
    a stuck outbox."""
    started = time.monotonic()
    try:
        outcome = KINDS[delivery.channel.kind].send(delivery.channel, delivery)
    except Exception as e:
        log.exception("notify: sending delivery %s failed", delivery.delivery_id)
        outcome = Outcome(False, None, f"{type(e).__name__}: {e}"[:500])
    return outcome, round((time.monotonic() - started) * 1000)


def settle(delivery: Delivery, outcome: Outcome, duration_ms: int, now: datetime) -> None:
    """Record an attempt and what follows from it: delivered, the next
    attempt after a growing wait, or given up once OUTBOX_GIVE_UP_SECONDS
    have passed since it was queued."""
    DeliveryAttempt.objects.create(
        delivery=delivery,
        at=now,
        ok=outcome.ok,
        status=outcome.status,
        error=outcome.error,
        duration_ms=duration_ms,
    )
    delivery.attempts += 1
    if outcome.ok:
        delivery.delivered_at = now
        delivery.last_error = ""
    else:
        delivery.last_error = outcome.error
        deadline = delivery.created_at + timedelta(seconds=settings.OUTBOX_GIVE_UP_SECONDS)
        if now >= deadline:
            delivery.gave_up_at = now
        else:
            # The last attempt falls on the deadline itself.
            delivery.next_attempt_at = min(now + retry_delay(delivery.attempts), deadline)
    delivery.save(
        update_fields=["attempts", "delivered_at", "gave_up_at", "next_attempt_at", "last_error"]
    )


def send_one(now: datetime) -> bool:
    """Send the next due delivery no one else is sending, in a transaction
    of its own; False when none is left.

    The row stays locked while it is sent (at most webhooks.TIMEOUT_SECONDS
    or EMAIL_TIMEOUT), so another sender skips it (SKIP LOCKED) rather than
    sending it too. The commit makes its outcome permanent before the next
    one starts: a crash loses nothing and re-sends only the one in flight.
    """
    with transaction.atomic():
        delivery = (
            Delivery.objects.due(now)
            .select_related("channel")
            .select_for_update(skip_locked=True, of=("self",))
            .first()
        )
        if delivery is None:
            return False
        if not delivery.channel.active:
            delivery.gave_up_at = now
            delivery.last_error = "The channel is inactive."
            delivery.save(update_fields=["gave_up_at", "last_error"])
            return True
        outcome, duration_ms = attempt(delivery)
        settle(delivery, outcome, duration_ms, now)
    return True


def send_due(now: datetime) -> int:
    """Send the deliveries due at `now` (at most MAX_PER_RUN); how many were
    handled. A failed one is rescheduled later than `now`, so a run never
    tries the same delivery twice."""
    handled = 0
    while handled < MAX_PER_RUN and send_one(now):
        handled += 1
    return handled
