"""Alert rules and their incidents.

An `AlertRule` says what trouble to watch for (its kind, alerts/kinds.py,
and that kind's parameters) and whom to tell (notify channels). An
`Incident` is one stretch of trouble of one key of a rule (a facility, a
user, an event type): opened when the key turns up in the rule's findings,
resolved when it is gone. The engine (alerts/engine.py) keeps them and
queues the messages.
"""

from datetime import datetime, timedelta

from django.contrib.postgres.fields import ArrayField
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q

from alerts.kinds import FACILITY_TROUBLES, KINDS, Kind, validate

STATUS_CHOICES = [(name, name) for name in FACILITY_TROUBLES]
# The partial unique index that keeps one open incident per (rule, key),
# and one incident ever for a kind that does not recover: what stops two
# evaluations running at once from opening (and telling of) the same one twice.
ONE_OPEN = "alert_incident_one_open"


class AlertRule(models.Model):
    name = models.CharField(max_length=200, unique=True)
    # A key of alerts.kinds.KINDS, checked in clean() and offered by the
    # admin's form; no `choices` here, so a new kind needs no migration.
    kind = models.CharField(max_length=40)
    active = models.BooleanField(default=True)
    channels = models.ManyToManyField(
        "notify.Channel",
        blank=True,
        related_name="alert_rules",
        help_text="Where its messages go; none: incidents are kept, nobody is told.",
    )
    cooldown = models.PositiveIntegerField(
        default=30,
        help_text="Minutes: a key that fires again this soon after its last firing "
        "message opens an incident that tells nobody (docs/alerts.md).",
    )
    # The kinds' parameters; which ones a kind reads is alerts/kinds.py's
    # `parameters`, checked in clean().
    facility = models.SlugField(
        max_length=64, blank=True, help_text="Facility status: one facility's slug (blank: all)."
    )
    statuses = ArrayField(
        models.CharField(max_length=20, choices=STATUS_CHOICES),
        blank=True,
        default=list,
        help_text="Facility status: which statuses fire (silent: stopped reporting).",
    )
    threshold = models.PositiveIntegerField(
        null=True, blank=True, help_text="Failed logins: fires above this many (N)."
    )
    window = models.PositiveIntegerField(
        null=True,
        blank=True,
        validators=[MinValueValidator(1), MaxValueValidator(24 * 60)],
        help_text="Failed logins, failure rate: minutes counted back from now (T).",
    )
    percent = models.FloatField(
        null=True, blank=True, help_text="Failure rate: fires above this percentage (X)."
    )
    min_events = models.PositiveIntegerField(
        null=True, blank=True, help_text="Failure rate: only with at least this many events (M)."
    )
    event_type = models.CharField(
        max_length=200, blank=True, help_text="Failure rate: one event type (blank: each type)."
    )
    username = models.CharField(
        max_length=200,
        blank=True,
        help_text='Failed logins: one user; blank: each user separately; "*": all users together.',
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        db_table = "alert_rules"
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        errors = validate(self)
        if errors:
            raise ValidationError(errors)

    @property
    def kind_class(self) -> Kind:
        return KINDS[self.kind]

    @property
    def kind_label(self) -> str:
        kind = KINDS.get(self.kind)
        return kind.label if kind else self.kind

    def describe(self) -> str:
        kind = KINDS.get(self.kind)
        return kind.describe(self) if kind else f"unknown kind {self.kind!r}"

    def in_cooldown(self, key: str, now: datetime) -> bool:
        """Whether a firing message for `key` was queued less than `cooldown`
        minutes before `now` (alert_incident_rule_key)."""
        if not self.cooldown:
            return False
        since = now - timedelta(minutes=self.cooldown)
        return self.incidents.filter(key=key, notified_at__gt=since).exists()


class IncidentQuerySet(models.QuerySet):
    def open(self) -> "IncidentQuerySet":
        """Incidents still in trouble, newest first (a rule's are found
        through alert_incident_one_open, whose condition this implies)."""
        return self.filter(resolved_at__isnull=True).order_by("-opened_at", "-id")

    def resolved(self) -> "IncidentQuerySet":
        """Incidents that have ended, the latest end first (alert_incident_resolved)."""
        return self.filter(resolved_at__isnull=False).order_by("-resolved_at", "-id")


class Incident(models.Model):
    """One stretch of trouble of one key of a rule. `details` is what was seen
    when it opened, `last_state` what was seen last (updated while it is
    open, and at its end). `notified` is False while the cooldown kept its
    firing message back; its recovery is then not told either."""

    rule = models.ForeignKey(AlertRule, on_delete=models.CASCADE, related_name="incidents")
    key = models.CharField(max_length=200)
    opened_at = models.DateTimeField()
    resolved_at = models.DateTimeField(null=True, blank=True)
    details = models.JSONField(default=dict)
    last_state = models.JSONField(default=dict)
    notified = models.BooleanField(default=False)
    # When the firing message was queued: the start of the key's cooldown.
    notified_at = models.DateTimeField(null=True, blank=True)
    # Of a kind that tells of each key once, ever (resolved as it opens).
    once = models.BooleanField(default=False)

    objects = IncidentQuerySet.as_manager()

    class Meta:
        db_table = "alert_incidents"
        ordering = ["-opened_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["rule", "key"],
                condition=Q(resolved_at__isnull=True) | Q(once=True),
                name=ONE_OPEN,
            ),
        ]
        indexes = [
            # AlertRule.in_cooldown: a key's incidents by when they were told.
            models.Index(fields=["rule", "key", "notified_at"], name="alert_incident_rule_key"),
            # IncidentQuerySet.resolved: the page's recent ends.
            models.Index(fields=["-resolved_at"], name="alert_incident_resolved"),
        ]

    def __str__(self) -> str:
        return f"{self.rule} {self.key} at {self.opened_at:%Y-%m-%d %H:%M}"

    @property
    def is_open(self) -> bool:
        return self.resolved_at is None

    def headline(self) -> str:
        """The trouble in one line: as seen last while open, as it began once
        it has ended (its last state is then the recovery)."""
        kind = KINDS.get(self.rule.kind)
        if kind is None:
            return self.key
        state = self.last_state if self.is_open else self.details
        return kind.subject(self.rule, self.key, state, firing=True)

    def link(self) -> str:
        kind = KINDS.get(self.rule.kind)
        return kind.link(self.key) if kind else ""
