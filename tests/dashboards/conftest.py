"""A small fixed portal history with hand-computable answers.

Times straddle the start of daylight saving time in America/New_York
(2026-03-08 02:00 EST → 03:00 EDT, i.e. 07:00 UTC) and put events exactly on
local midnights, so bucket edges and DST are both exercised.
"""

import uuid
from datetime import UTC, datetime

import pytest
from django.http import QueryDict

from audit.ingest import ingest
from dashboards.stats import STATS, first_event_time
from sphere_stats.windows import Window
from tests import factories

NOW = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
NY = "America/New_York"


def event(
    ts: str | datetime,
    event_type: str,
    subject: str,
    subject_type: str,
    *,
    caller: str = "ops",
    target: str | None = None,
    success: bool = True,
    error: str | None = None,
    payload: dict | None = None,
) -> dict:
    """factories.event in the positional shape these tests share, with a
    uuid made from its fields, so sending an event again is a duplicate."""
    return factories.event(
        event_uuid=uuid.uuid5(uuid.NAMESPACE_URL, f"{ts}/{event_type}/{subject}/{target}"),
        timestamp=ts,
        event_type=event_type,
        caller=caller,
        subject=subject,
        subject_type=subject_type,
        target=target,
        success=success,
        error_message=error,
        payload=payload or {},
    )


def member(ts, event_type, group, subject_type, who, role="member", caller="alice"):
    payload = {"kind": "usermember"}
    if not event_type.endswith("deleted"):
        payload |= {"role": role, "state": "active"}
    return event(ts, event_type, group, subject_type, caller=caller, target=who, payload=payload)


FIRST_BATCH = [
    event("2026-03-06T10:00:00Z", "user_created", "alice", "user", caller="alice"),
    event("2026-03-06T12:00:00Z", "user_activated", "alice", "user"),
    # 23:59 EST on March 6, then local midnight of March 7 exactly.
    event("2026-03-07T04:59:00Z", "user_created", "bob", "user", caller="bob"),
    event("2026-03-07T05:00:00Z", "user_declined", "bob", "user"),
    # 01:30 EST and 03:30 EDT on the day DST starts.
    event("2026-03-08T06:30:00Z", "user_created", "carol", "user", caller="carol"),
    event("2026-03-08T07:30:00Z", "user_activated", "carol", "user"),
    event("2026-03-09T12:00:00Z", "user_frozen", "carol", "user"),
    event(
        "2026-03-06T15:00:00Z",
        "org_created",
        "isi",
        "organization",
        caller="alice",
        payload={"category": "Research", "description": "ISI"},
    ),
    member("2026-03-06T15:00:01Z", "org_member_added", "isi", "organization", "alice", "creator"),
    member("2026-03-06T18:00:00Z", "org_member_added", "isi", "organization", "bob"),
    member("2026-03-08T18:00:00Z", "org_member_added", "isi", "organization", "carol"),
    member("2026-03-08T19:00:00Z", "org_member_deleted", "isi", "organization", "bob"),
    member(
        "2026-03-08T20:00:00Z", "org_member_updated", "isi", "organization", "carol", "maintainer"
    ),
    event(
        "2026-03-06T16:00:00Z",
        "project_created",
        "botnets",
        "project",
        caller="alice",
        payload={"category": "Research", "description": "first life"},
    ),
    event("2026-03-07T16:00:00Z", "project_deleted", "botnets", "project", caller="alice"),
    # Re-creation of a deleted name.
    event(
        "2026-03-08T16:00:00Z",
        "project_created",
        "botnets",
        "project",
        caller="carol",
        payload={"category": "Education", "description": "second life"},
    ),
    member(
        "2026-03-08T16:00:01Z",
        "project_member_added",
        "botnets",
        "project",
        "carol",
        "creator",
        caller="carol",
    ),
    event(
        "2026-03-08T12:00:00Z",
        "project_created",
        "nope",
        "project",
        caller="bob",
        success=False,
        error="quota exceeded",
        payload={"category": "Research"},
    ),
    event(
        "2026-03-08T17:00:00Z",
        "experiment_created",
        "exp1",
        "experiment",
        caller="carol",
        payload={"project": "botnets"},
    ),
    # Same experiment name, another project: a different experiment.
    event(
        "2026-03-08T17:30:00Z",
        "experiment_created",
        "exp1",
        "experiment",
        caller="carol",
        payload={"project": "iot"},
    ),
    # Logins: 23:30 EST Mar 6, 00:30 EST Mar 7, 23:00 EDT Mar 8, 00:00 EDT Mar 9.
    event("2026-03-07T04:30:00Z", "user_login", "alice", "user", caller="alice"),
    event("2026-03-07T05:30:00Z", "user_login", "alice", "user", caller="alice"),
    event(
        "2026-03-09T03:00:00Z",
        "user_login",
        "alice",
        "user",
        caller="alice",
        success=False,
        error="invalid credentials",
    ),
    event(
        "2026-03-09T04:00:00Z",
        "user_login",
        "mallory",
        "user",
        caller="mallory",
        success=False,
        error="no such user",
    ),
    # Alice is deleted late on March 9 ...
    event("2026-03-09T20:00:00Z", "user_deleted", "alice", "user"),
]
# ... and an earlier event about her arrives after that (out of order).
LATE_BATCH = [event("2026-03-09T10:00:00Z", "user_frozen", "alice", "user")]


@pytest.fixture
def dataset(db) -> list[dict]:
    ingest(FIRST_BATCH, now=NOW)
    ingest(LATE_BATCH, now=NOW)
    # Re-sent events are duplicates and change nothing.
    assert ingest(FIRST_BATCH[:3], now=NOW).duplicates == 3
    return FIRST_BATCH + LATE_BATCH


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def login(ts: str | datetime, who: str = "alice", success: bool = True) -> dict:
    return event(ts, "user_login", who, "user", caller=who, success=success)


def make_window(now: datetime = NOW, **query: str) -> Window:
    data = QueryDict(mutable=True)
    data.update(query)
    # As the pages do: period=all starts at the first event (without it, the
    # window falls back to the last day).
    return Window.from_query(data, now=now, earliest=first_event_time)


def stat_rows(stat_name: str, window: Window, source: str = "auto", /, **filters) -> list:
    """The rows of a stat for `window`, its parameters' defaults overridden by `filters`."""
    stat = STATS[stat_name]
    values = {p.name: p.default for p in stat.params} | filters
    return stat.compute(window, values, source).rows


def both(stat_name: str, window: Window, /, **filters) -> list:
    """The stat from the pre-aggregates, asserted equal to the one from raw events."""
    auto = stat_rows(stat_name, window, **filters)
    assert auto == stat_rows(stat_name, window, "raw", **filters), (stat_name, window, filters)
    return auto
