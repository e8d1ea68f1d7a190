"""Notification channels and their outbox.

A `Channel` is somewhere to tell people (a webhook URL, a list of email
addresses). Telling it something is a `Delivery`: a row written in the same
transaction as whatever caused it (notify/outbox.py `enqueue`) and sent by
the worker's `notify.send` job, which records each try as a
`DeliveryAttempt`. Every piece of state lives in these tables, so a
restarted worker carries on where the last one stopped.
"""

import secrets
import uuid
from datetime import datetime

from django.core.exceptions import ValidationError
from django.core.validators import URLValidator, validate_email
from django.db import models
from django.db.models import Q
from django.utils import timezone

from notify.kinds import KINDS

KIND_CHOICES = [(name, kind.label) for name, kind in KINDS.items()]
STATES = ("pending", "retrying", "delivered", "gave up")


def new_secret() -> str:
    return secrets.token_urlsafe(32)


def split_recipients(value: str) -> list[str]:
    return [address.strip() for address in value.split(",") if address.strip()]


def validate_recipients(value: str) -> None:
    bad = []
    for address in split_recipients(value):
        try:
            validate_email(address)
        except ValidationError:
            bad.append(address)
    if bad:
        raise ValidationError(f"Not an email address: {', '.join(bad)}")


class Channel(models.Model):
    """Somewhere to send notifications; what it needs depends on its kind
    (notify/kinds.py)."""

    name = models.CharField(max_length=100, unique=True)
    kind = models.CharField(max_length=20, choices=KIND_CHOICES, default="webhook")
    url = models.URLField(
        max_length=500,
        blank=True,
        validators=[URLValidator(schemes=["http", "https"])],
        help_text="Webhook: where to POST.",
    )
    secret = models.CharField(
        max_length=100,
        default=new_secret,
        help_text="Webhook: the receiver checks X-Sphere-Signature with this "
        "(docs/notifications.md). Replace it to rotate.",
    )
    recipients = models.TextField(
        blank=True,
        validators=[validate_recipients],
        help_text="Email: addresses separated by commas.",
    )
    # An inactive channel is queued nothing, and what was queued for it is
    # given up rather than sent.
    active = models.BooleanField(default=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        db_table = "notify_channels"
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        if self.kind in KINDS:
            errors = KINDS[self.kind].check(self)
            if errors:
                raise ValidationError(errors)

    def recipient_list(self) -> list[str]:
        return split_recipients(self.recipients)


class DeliveryQuerySet(models.QuerySet):
    def due(self, now: datetime) -> "DeliveryQuerySet":
        """Deliveries to try at `now`, oldest appointment first: neither
        delivered nor given up, their next attempt not in the future
        (notify_deliveries_due)."""
        return self.filter(
            delivered_at__isnull=True, gave_up_at__isnull=True, next_attempt_at__lte=now
        ).order_by("next_attempt_at", "id")

    def in_state(self, state: str) -> "DeliveryQuerySet":
        """The deliveries an admin sees in `state` (one of STATES)."""
        open_ = Q(delivered_at__isnull=True, gave_up_at__isnull=True)
        return self.filter(
            {
                "pending": open_ & Q(attempts=0),
                "retrying": open_ & Q(attempts__gt=0),
                "delivered": Q(delivered_at__isnull=False),
                "gave up": Q(gave_up_at__isnull=False),
            }[state]
        )


class Delivery(models.Model):
    """One notification to one channel: the outbox row, sent at least once.

    `body` is the exact JSON a webhook is sent, fixed when it is queued, so
    every retry sends (and signs) the same bytes; `delivery_id` is its
    X-Sphere-Delivery header, the same on every retry, by which a receiver
    recognises a duplicate.
    """

    delivery_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    # PROTECT: the deliveries are the channel's history (what was sent, when,
    # what the receiver answered), and a pending one cannot be sent without
    # its channel's URL and secret. Deactivate a channel to stop it; delete
    # its deliveries first to remove it altogether.
    channel = models.ForeignKey(Channel, on_delete=models.PROTECT, related_name="deliveries")
    topic = models.CharField(max_length=100)
    subject = models.TextField()
    body = models.TextField()
    text = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    next_attempt_at = models.DateTimeField(default=timezone.now)
    attempts = models.PositiveIntegerField(default=0)
    delivered_at = models.DateTimeField(null=True, blank=True)
    gave_up_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True)

    objects = DeliveryQuerySet.as_manager()

    class Meta:
        db_table = "notify_deliveries"
        ordering = ["-created_at", "-id"]
        verbose_name_plural = "deliveries"
        indexes = [
            # DeliveryQuerySet.due: the sender's next row to send. Partial, so
            # it holds only the open deliveries however long the history is.
            models.Index(
                fields=["next_attempt_at", "id"],
                name="notify_deliveries_due",
                condition=Q(delivered_at__isnull=True, gave_up_at__isnull=True),
            ),
            # The admin's list, newest first.
            models.Index(fields=["-created_at", "-id"], name="notify_deliveries_created"),
        ]

    def __str__(self) -> str:
        return f"{self.topic}: {self.subject}"

    @property
    def state(self) -> str:
        if self.delivered_at:
            return "delivered"
        if self.gave_up_at:
            return "gave up"
        return "retrying" if self.attempts else "pending"


class DeliveryAttempt(models.Model):
    """One try at sending a delivery and what came of it."""

    delivery = models.ForeignKey(Delivery, on_delete=models.CASCADE, related_name="attempt_set")
    at = models.DateTimeField()
    ok = models.BooleanField()
    # The HTTP (or SMTP reply) status; null when no answer came.
    status = models.IntegerField(null=True, blank=True)
    error = models.TextField(blank=True)
    duration_ms = models.PositiveIntegerField(default=0)

    class Meta:
        db_table = "notify_attempts"
        ordering = ["at", "id"]

    def __str__(self) -> str:
        return f"{'ok' if self.ok else 'failed'} at {self.at:%Y-%m-%d %H:%M:%S}"
