"""The evaluation of the alert rules: findings against open incidents.

For each active rule, in a transaction of its own:

- a key in trouble with no open incident opens one and queues its firing
  message, unless the key's cooldown holds it back (notified=False);
- an open incident whose key is no longer in trouble is resolved and queues
  its recovery message, if its firing message was sent;
- a key still in trouble changes nothing but the incident's last state
  (one incident, one message), except that a held-back incident still open
  when its cooldown ends sends its firing message then.

A kind that does not recover (a new event type) opens each key once, ever,
resolved at once, with no recovery message.

Messages are outbox rows written in the same transaction as the incident
(notify.outbox.enqueue): both commit or neither. Two evaluations at once
(the worker's advisory lock should prevent it) cannot open the same
incident twice: the second insert meets the partial unique index
alert_incident_one_open and is skipped, with its messages, in its savepoint.
"""

import logging
from datetime import datetime

from django.db import IntegrityError, connection, transaction

from alerts.messages import FIRING, RESOLVED, send
from alerts.models import ONE_OPEN, AlertRule, Incident

log = logging.getLogger(__name__)


class EvaluationError(Exception):
    pass


def evaluate(now: datetime) -> int:
    """Evaluate every active rule at `now`; how many incidents opened,
    resolved or told late. A rule that fails is logged and the others still
    run; the failures are raised together at the end (the worker records
    them in worker_jobs)."""
    handled, failed = 0, []
    # A paused rule watches nothing: its open incidents end, untold (one
    # still in trouble when it is made active again opens afresh).
    Incident.objects.filter(rule__active=False, resolved_at__isnull=True).update(resolved_at=now)
    for rule in AlertRule.objects.filter(active=True).order_by("pk"):
        try:
            handled += evaluate_rule(rule, now)
        except Exception as e:
            if not connection.is_usable():
                raise
            log.exception("alert rule %s (%s) failed", rule.pk, rule.name)
            failed.append(f"{rule.name}: {type(e).__name__}: {e}")
    if failed:
        raise EvaluationError("; ".join(failed))
    return handled


def evaluate_rule(rule: AlertRule, now: datetime) -> int:
    kind = rule.kind_class
    found = kind.findings(rule, now)
    with transaction.atomic():
        if not kind.recovers:
            seen = set(rule.incidents.filter(once=True).values_list("key", flat=True))
            return sum(
                open_incident(rule, key, found[key], now) for key in sorted(found.keys() - seen)
            )
        # Locked: an evaluation running at the same time waits here, then
        # sees what this one resolved.
        current = {i.key: i for i in rule.incidents.open().select_for_update()}
        handled = 0
        for key in sorted(found.keys() - current.keys()):
            handled += open_incident(rule, key, found[key], now)
        for key in sorted(current.keys() - found.keys()):
            handled += resolve(current[key], kind.resolution(rule, key, now), now)
        for key in sorted(found.keys() & current.keys()):
            handled += carry_on(current[key], found[key], now)
        return handled


def open_incident(rule: AlertRule, key: str, details: dict, now: datetime) -> int:
    """Open the incident of `key` and queue its firing message unless the
    cooldown holds it back; 0 if another evaluation opened it first."""
    once = not rule.kind_class.recovers
    notified = not rule.in_cooldown(key, now)
    try:
        with transaction.atomic():
            incident = Incident.objects.create(
                rule=rule,
                key=key,
                opened_at=now,
                resolved_at=now if once else None,
                details=details,
                last_state=details,
                notified=notified,
                notified_at=now if notified else None,
                once=once,
            )
            if notified:
                send(incident, FIRING)
    except IntegrityError as e:
        if getattr(getattr(e.__cause__, "diag", None), "constraint_name", "") != ONE_OPEN:
            raise
        return 0
    return 1


def resolve(incident: Incident, seen: dict, now: datetime) -> int:
    """Resolve `incident` and queue its recovery message if its firing
    message went out; 0 if another evaluation resolved it first."""
    incident.last_state = {**incident.last_state, **seen}
    incident.resolved_at = now
    resolved = Incident.objects.filter(pk=incident.pk, resolved_at__isnull=True).update(
        resolved_at=now, last_state=incident.last_state
    )
    if not resolved:
        return 0
    if incident.notified:
        send(incident, RESOLVED)
    return 1


def carry_on(incident: Incident, seen: dict, now: datetime) -> int:
    """Keep what was seen of a key still in trouble; tell of a held-back
    incident once its key's cooldown is over. 1 if it was told now."""
    fields = []
    if seen != incident.last_state:
        incident.last_state = seen
        fields.append("last_state")
    told = not incident.notified and not incident.rule.in_cooldown(incident.key, now)
    if told:
        incident.notified, incident.notified_at = True, now
        fields += ["notified", "notified_at"]
    if fields:
        incident.save(update_fields=fields)
    if told:
        send(incident, FIRING)
    return int(told)
