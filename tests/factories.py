"""Events, facilities and their reports for the tests, built in one place.

`event()` is an event as a client sends it to POST /api/v1/events (a dict).
It goes into the database one of two ways:

- `store()`: through the real ingest path (the catalog validates it; the
  pre-aggregates, entities and memberships follow), as the API stores it;
- `row()`: an `events` row written through the model, past the catalog: a
  row the catalog would refuse, or one stored before the catalog checked it.
  The database's triggers still keep the pre-aggregates.

A test file whose events share other defaults names them once with `like()`
(`membership = like(event_type="org_member_added", ...)`) rather than
writing a builder of its own.
"""

import copy
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from audit.ingest import ingest
from audit.models import Event
from facilities.models import Facility


class _Absent:
    def __repr__(self) -> str:
        return "ABSENT"


# A field given as ABSENT is left out of the event, as a client may leave
# out event_uuid and timestamp: the server then assigns them.
ABSENT: Any = _Absent()

# A successful login of alice: the smallest event the catalog accepts.
DEFAULTS: dict[str, Any] = {
    "event_type": "user_login",
    "caller": "alice",
    "subject": "alice",
    "subject_type": "user",
    "success": True,
    "payload": {},
}


def event(**fields: Any) -> dict[str, Any]:
    """An event as the ingest API takes it: a successful user_login of alice,
    now, with a fresh event_uuid, unless `fields` say otherwise. A datetime
    timestamp is sent as RFC 3339 text and a UUID as text; a field given as
    ABSENT is left out."""
    values = {"event_uuid": uuid.uuid4(), "timestamp": datetime.now(UTC), **DEFAULTS, **fields}
    if isinstance(values["timestamp"], datetime):
        values["timestamp"] = values["timestamp"].isoformat()
    if isinstance(values["event_uuid"], uuid.UUID):
        values["event_uuid"] = str(values["event_uuid"])
    # A payload given once as a default must not be shared between events.
    values["payload"] = copy.deepcopy(values["payload"])
    return {k: v for k, v in values.items() if v is not ABSENT}


def like(**defaults: Any) -> Callable[..., dict[str, Any]]:
    """`event` with other defaults, for a test file whose events share them."""

    def build(**fields: Any) -> dict[str, Any]:
        return event(**{**defaults, **fields})

    return build


def store(*events: dict[str, Any], now: datetime | None = None) -> list[dict[str, Any]]:
    """Store `events` through the ingest path, asserting each was accepted.
    `now` is the time of receipt (events more than five minutes after it are
    refused); by default the real time."""
    result = ingest(list(events), now=now)
    assert result.accepted == len(events), result.as_dict()
    return list(events)


def row(**fields: Any) -> Event:
    """One `events` row written through the model, past the catalog's
    checks: `event(**fields)` as stored."""
    values = event(**fields)
    values["timestamp"] = datetime.fromisoformat(values["timestamp"])
    return Event.objects.create(**values)


# --- facilities and the events about them ------------------------------------------


def facility(slug: str = "isi", **fields: Any) -> Facility:
    values = {
        "name": slug.upper(),
        "latitude": 34.0,
        "longitude": -118.4,
        "kind": "compute",
        "capacity_nodes": 10,
        **fields,
    }
    return Facility.objects.create(slug=slug, **values)


def report(
    slug: str,
    at: datetime,
    status: str,
    message: str = "",
    caller: str = "",
    *,
    interval: object = None,
) -> Event:
    """One facility_status row; `interval` goes into the payload as given
    (not checked, as a report stored before the catalog checked it)."""
    payload = {"status": status, **({"message": message} if message else {})}
    if interval is not None:
        payload["interval"] = interval
    return row(
        timestamp=at,
        event_type="facility_status",
        caller=caller or f"{slug}-controller",
        subject=slug,
        subject_type="facility",
        payload=payload,
    )


def reporting(
    slug: str,
    start: datetime,
    end: datetime,
    status: str,
    message: str = "",
    *,
    every: timedelta = timedelta(minutes=10),
    caller: str = "",
) -> list[Event]:
    """Reports from `start` every `every` up to `end` (included): a facility
    that keeps reporting, so no silence breaks the run."""
    events, at = [], start
    while at < end:
        events.append(report(slug, at, status, message, caller))
        at += every
    events.append(report(slug, end, status, message, caller))
    return events


def allocation(
    kind: str,
    verb: str,
    slug: str,
    at: datetime,
    *,
    experiment: str = "exp1",
    project: str = "proj1",
    resources: list[str] | None = None,
    success: bool = True,
    error: str | None = None,
    caller: str = "alice",
) -> Event:
    """A realization or materialization row on facility `slug`
    (`kind`_`verb`: realization_allocated, materialization_freed, ...)."""
    return row(
        timestamp=at,
        event_type=f"{kind}_{verb}",
        caller=caller,
        subject=f"rlz.{experiment}.{project}",
        subject_type=kind,
        target=slug,
        success=success,
        error_message=error,
        payload={
            "project": project,
            "experiment": experiment,
            "facility": slug,
            "resources": resources if resources is not None else [f"{slug}-n001"],
            "nodes": ["a", "b"],
        },
    )
