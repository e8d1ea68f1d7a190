"""The kinds of alert rule, one small class each in one registry (`KINDS`).

Every kind has the same shape: the rule fields it reads (`parameters`, of
which `required` must be set), `findings(rule, now)` (the keys in trouble at
`now`, each with what was seen, as JSON), `describe(rule)` (the rule in
words), and the words and link of its messages (`subject`, `link`). A kind
whose `recovers` is False tells of each key once, ever, and never of its
end (a new event type). Adding a kind means copying a sibling.

Every query reads `events` itself (or the facility status code that reads
it), never only what came through the ingest API: rows the portal writes
with its own SQL count the same.
"""

from datetime import datetime, timedelta
from urllib.parse import urlencode

from django.db import connection
from django.urls import NoReverseMatch, reverse

from audit import catalog
from audit.models import Event
from facilities.models import Facility
from facilities.status import STATE_LABELS, UNKNOWN
from facilities.summary import stale_after

# A facility whose last report is older than its hold time (shown unknown on
# the map); the rule's `statuses` choice for it.
SILENT = "silent"
FACILITY_TROUBLES = {
    "down": "is down",
    "degraded": "is degraded",
    "maintenance": "is in maintenance",
    SILENT: "has stopped reporting",
}
# What a rule's parameters are called in words (the page, describe()).
PARAMETER_LABELS = {
    "facility": "facility",
    "statuses": "statuses",
    "threshold": "threshold (more than N)",
    "window": "window (minutes)",
    "percent": "failure rate above (%)",
    "min_events": "min events (M)",
    "event_type": "event type",
    "username": "username",
}
# Rule fields a kind may read; the others must be left empty.
PARAMETERS = tuple(PARAMETER_LABELS)
EVERY_USER = "*"


def fetch(sql: str, params: dict) -> list[tuple]:
    # The primary, never a replica: an alert that waits for replication is late.
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()


def explorer_link(**params: str) -> str:
    return reverse("explorer") + "?" + urlencode({"period": "all", **params})


def iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


class Kind:
    name: str = ""
    label: str = ""
    parameters: tuple[str, ...] = ()
    required: tuple[str, ...] = ()
    recovers: bool = True

    def findings(self, rule, now: datetime) -> dict[str, dict]:
        raise NotImplementedError

    def describe(self, rule) -> str:
        raise NotImplementedError

    def subject(self, rule, key: str, state: dict, firing: bool) -> str:
        raise NotImplementedError

    def link(self, key: str) -> str:
        """The path of the page about `key`."""
        raise NotImplementedError

    def resolution(self, rule, key: str, now: datetime) -> dict:
        """What is seen of `key` when its trouble has ended (merged into the
        incident's last state for the recovery message)."""
        return {}

    def check(self, rule) -> dict[str, str]:
        """Errors of the kind's own parameters beyond required/unused."""
        return {}


KINDS: dict[str, Kind] = {}


def register(cls: type[Kind]) -> type[Kind]:
    assert cls.name not in KINDS, cls.name
    KINDS[cls.name] = cls()
    return cls


def kind_choices() -> list[tuple[str, str]]:
    return [(name, kind.label) for name, kind in KINDS.items()]


def validate(rule) -> dict[str, str]:
    """Field errors of `rule` for its kind: required parameters missing,
    parameters the kind does not read set anyway (they would mislead)."""
    kind = KINDS.get(rule.kind)
    if kind is None:
        return {"kind": f"Unknown kind {rule.kind!r}."}
    errors = {}
    for name in PARAMETERS:
        value = getattr(rule, name)
        empty = value in (None, "", [], ())
        if name in kind.required and empty:
            errors[name] = f"Required for a {kind.label.lower()} rule."
        elif name not in kind.parameters and not empty:
            errors[name] = f"Not used by a {kind.label.lower()} rule: leave it empty."
    return errors | kind.check(rule)


@register
class FacilityStatus(Kind):
    """A facility whose status on the map is one of `statuses`: down,
    degraded, maintenance, or silent (unknown because its last report is
    older than its hold time). The status is the map's own
    (FacilityQuerySet.current_statuses), so the two cannot disagree."""

    name = "facility_status"
    label = "Facility status"
    parameters = ("facility", "statuses")
    required = ("statuses",)

    def statuses_of(self, rule, now: datetime) -> dict[str, tuple[str, dict]]:
        facilities = Facility.objects.all()
        if rule.facility:
            facilities = facilities.filter(slug=rule.facility)
        result = {}
        for slug, current in facilities.current_statuses(now, stale_after()).items():
            state = SILENT if current.stale else current.status
            report = current.last_report
            result[slug] = (
                state,
                {
                    "status": state,
                    "since": iso(current.since),
                    "message": report.message if report else "",
                    "last_report": iso(report.timestamp) if report else None,
                },
            )
        return result

    def findings(self, rule, now: datetime) -> dict[str, dict]:
        wanted = set(rule.statuses or ())
        return {
            slug: details
            for slug, (state, details) in self.statuses_of(rule, now).items()
            if state in wanted
        }

    def resolution(self, rule, key: str, now: datetime) -> dict:
        found = self.statuses_of(rule, now).get(key)
        return found[1] if found else {"status": UNKNOWN}

    def describe(self, rule) -> str:
        where = f"facility {rule.facility}" if rule.facility else "any facility"
        return f"{where} {' or '.join(rule.statuses or ())}"

    def subject(self, rule, key: str, state: dict, firing: bool) -> str:
        status = state.get("status", "")
        if firing:
            return f"Facility {key} {FACILITY_TROUBLES.get(status, 'is ' + status)}"
        if status == "up":
            return f"Facility {key} is up again"
        label = STATE_LABELS.get(status, status).lower()
        return f"Facility {key} recovered: now {label}"

    def link(self, key: str) -> str:
        return reverse("facilities:detail", args=[key])

    def check(self, rule) -> dict[str, str]:
        bad = set(rule.statuses or ()) - set(FACILITY_TROUBLES)
        if bad:
            return {"statuses": f"Not a status to alert on: {', '.join(sorted(bad))}."}
        if rule.facility and not Facility.objects.filter(slug=rule.facility).exists():
            return {"facility": f"No facility {rule.facility!r}."}
        return {}


# Failed logins in (now - window, now]; through idx_events_failures_ts
# (timestamp, partial on NOT success), which holds a few percent of events.
# `who` is the grouping key: the username, or '*' for all users together.
FAILED_LOGINS_SQL = """
SELECT {who} AS key, count(*) AS n
FROM events
WHERE NOT success AND event_type = 'user_login'
  AND timestamp > %(since)s AND timestamp <= %(now)s {only}
GROUP BY 1
HAVING count(*) > %(threshold)s
"""


@register
class FailedLogins(Kind):
    """More than `threshold` failed user_login events in the last `window`
    minutes: of the user named `username`, of each user separately
    (`username` blank) or of all users together (`username` "*")."""

    name = "failed_logins"
    label = "Failed logins"
    parameters = ("threshold", "window", "username")
    required = ("threshold", "window")

    def findings(self, rule, now: datetime) -> dict[str, dict]:
        params = {
            "since": now - timedelta(minutes=rule.window),
            "now": now,
            "threshold": rule.threshold,
            "username": rule.username,
        }
        together = rule.username == EVERY_USER
        sql = FAILED_LOGINS_SQL.format(
            who="'*'" if together else "subject",
            only="AND subject = %(username)s" if rule.username and not together else "",
        )
        return {
            key: {"failed": n, "window": rule.window, "threshold": rule.threshold}
            for key, n in fetch(sql, params)
        }

    def whom(self, key: str) -> str:
        return "all users" if key == EVERY_USER else key

    def describe(self, rule) -> str:
        who = {"": "any one user", EVERY_USER: "all users together"}.get(
            rule.username, rule.username
        )
        return f"more than {rule.threshold} failed logins of {who} in {rule.window} min"

    def subject(self, rule, key: str, state: dict, firing: bool) -> str:
        if firing:
            return f"Failed logins: {state.get('failed')} for {self.whom(key)} in {rule.window} min"
        return (
            f"Failed logins for {self.whom(key)} back to at most {rule.threshold}"
            f" in {rule.window} min"
        )

    def link(self, key: str) -> str:
        if key != EVERY_USER:
            try:
                return reverse("user", args=[key])
            except NoReverseMatch:
                pass  # a name no URL holds (a slash): the explorer instead
        return explorer_link(event_type="user_login", success="false")


# Per event type in (now - window, now]: events and failures. The time range
# is minutes, read through idx_events_timestamp (or idx_events_type_ts for
# one type).
FAILURE_RATE_SQL = """
SELECT event_type, count(*) AS events, count(*) FILTER (WHERE NOT success) AS failed
FROM events
WHERE timestamp > %(since)s AND timestamp <= %(now)s {only}
GROUP BY event_type
HAVING count(*) >= %(min_events)s
   AND count(*) FILTER (WHERE NOT success) * 100.0 > %(percent)s * count(*)
"""


@register
class FailureRate(Kind):
    """More than `percent` % of the events of `event_type` (of each type
    separately when blank) failed in the last `window` minutes, counting only
    when at least `min_events` events came."""

    name = "failure_rate"
    label = "Failure rate"
    parameters = ("percent", "window", "min_events", "event_type")
    required = ("percent", "window", "min_events")

    def findings(self, rule, now: datetime) -> dict[str, dict]:
        params = {
            "since": now - timedelta(minutes=rule.window),
            "now": now,
            "min_events": rule.min_events,
            "percent": rule.percent,
            "event_type": rule.event_type,
        }
        sql = FAILURE_RATE_SQL.format(
            only="AND event_type = %(event_type)s" if rule.event_type else ""
        )
        return {
            event_type: {
                "events": events,
                "failed": failed,
                "percent": round(100 * failed / events, 1),
                "window": rule.window,
            }
            for event_type, events, failed in fetch(sql, params)
        }

    def describe(self, rule) -> str:
        what = rule.event_type or "any event type"
        return (
            f"{what}: more than {rule.percent:g}% failed in {rule.window} min"
            f" (of at least {rule.min_events} events)"
        )

    def subject(self, rule, key: str, state: dict, firing: bool) -> str:
        if firing:
            return (
                f"Failure rate of {key}: {state.get('percent')}%"
                f" ({state.get('failed')} of {state.get('events')}) in {rule.window} min"
            )
        return f"Failure rate of {key} back to at most {rule.percent:g}% in {rule.window} min"

    def link(self, key: str) -> str:
        return explorer_link(event_type=key, success="false")

    def check(self, rule) -> dict[str, str]:
        if rule.percent is not None and not 0 <= rule.percent < 100:
            return {"percent": "A percentage from 0 to below 100."}
        return {}


# Every distinct event type stored: a loose index scan of idx_events_event_type
# (one probe per type, a few dozen), however many events there are.
EVENT_TYPES_SQL = """
WITH RECURSIVE seen(event_type) AS (
    (SELECT event_type FROM events ORDER BY event_type LIMIT 1)
    UNION ALL
    SELECT (SELECT e.event_type FROM events e WHERE e.event_type > seen.event_type
            ORDER BY e.event_type LIMIT 1)
    FROM seen WHERE seen.event_type IS NOT NULL
)
SELECT event_type FROM seen WHERE event_type IS NOT NULL
"""


@register
class NewEventType(Kind):
    """An event type that is not in the catalog (audit/catalog.py) is stored:
    told once per type, ever; there is nothing to recover from."""

    name = "new_event_type"
    label = "New event type"
    recovers = False

    def findings(self, rule, now: datetime) -> dict[str, dict]:
        found = {}
        for (event_type,) in fetch(EVENT_TYPES_SQL, {}):
            if catalog.get(event_type) is not None:
                continue
            # idx_events_type_ts: uncatalogued types are never the frequent ones.
            first = (
                Event.objects.filter(event_type=event_type)
                .order_by("timestamp")
                .values("timestamp", "caller", "subject_type")
                .first()
            )
            if first is not None:
                first["first_seen"] = iso(first.pop("timestamp"))
                found[event_type] = first
        return found

    def describe(self, rule) -> str:
        return "an event type not in the catalog arrives (once per type)"

    def subject(self, rule, key: str, state: dict, firing: bool) -> str:
        return f"New event type: {key} (not in the catalog)"

    def link(self, key: str) -> str:
        return explorer_link(event_type=key)
