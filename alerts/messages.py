"""The messages of an incident: its firing and its recovery, queued to the
rule's channels through notify's outbox in the caller's transaction."""

from datetime import datetime

from alerts.models import Incident
from notify.outbox import enqueue

FIRING = "firing"
RESOLVED = "resolved"
TOPICS = {FIRING: "alert.firing", RESOLVED: "alert.resolved"}


def payload(incident: Incident, status: str) -> dict:
    """The webhook's "data": everything a receiver needs to act on it."""
    rule = incident.rule
    return {
        "incident": incident.pk,
        "rule": rule.name,
        "rule_id": rule.pk,
        "kind": rule.kind,
        "key": incident.key,
        "status": status,
        "subject": subject(incident, status),
        "details": incident.details,
        "last_state": incident.last_state,
        "opened_at": incident.opened_at,
        "resolved_at": incident.resolved_at,
        "link": incident.link(),
    }


def subject(incident: Incident, status: str) -> str:
    # The last state: what is seen now (at the end, for a recovery).
    rule = incident.rule
    return rule.kind_class.subject(rule, incident.key, incident.last_state, firing=status == FIRING)


def _when(at: datetime | None) -> str:
    return f"{at:%Y-%m-%d %H:%M:%S} UTC" if at else "-"


def text(incident: Incident, status: str) -> str:
    """An email's body: what happened, which rule said so, what was seen,
    and the path of the page to look at."""
    rule = incident.rule
    lines = [
        f"{subject(incident, status)}.",
        "",
        f"Rule: {rule.name} ({rule.kind_label}: {rule.describe()})",
        f"Opened: {_when(incident.opened_at)}",
    ]
    if status == RESOLVED:
        lines.append(f"Resolved: {_when(incident.resolved_at)}")
    lines.extend(["", "What was seen:"])
    lines.extend(f"  {name}: {value}" for name, value in incident.last_state.items())
    lines.extend(["", f"See: {incident.link()}", f"Incident {incident.pk}, rule {rule.pk}."])
    return "\n".join(lines) + "\n"


def send(incident: Incident, status: str) -> int:
    """Queue the `status` message of `incident` to its rule's channels (in
    the caller's transaction); how many deliveries were queued."""
    deliveries = enqueue(
        incident.rule.channels.all(),
        topic=TOPICS[status],
        subject=subject(incident, status),
        payload=payload(incident, status),
        text=text(incident, status),
    )
    return len(deliveries)
