"""Event builders for the facility tests (rows straight into `events`)."""

import uuid
from datetime import datetime, timedelta

from audit.models import Event
from facilities.models import Facility


def facility(slug: str = "isi", **fields) -> Facility:
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
    """One status report; `interval` goes into the payload as given (not
    checked, as a report stored before the catalog checked it)."""
    payload = {"status": status, **({"message": message} if message else {})}
    if interval is not None:
        payload["interval"] = interval
    return Event.objects.create(
        event_uuid=uuid.uuid4(),
        timestamp=at,
        event_type="facility_status",
        caller=caller or f"{slug}-controller",
        subject=slug,
        subject_type="facility",
        success=True,
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
    return Event.objects.create(
        event_uuid=uuid.uuid4(),
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
