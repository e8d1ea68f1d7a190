"""Events for the explorer and export tests, stored through the real ingest path."""

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from audit.ingest import ingest

BASE = datetime(2026, 4, 23, 20, 0, tzinfo=UTC)


def event(**overrides: Any) -> dict[str, Any]:
    """A valid org_member_added event; any column can be overridden."""
    values: dict[str, Any] = {
        "event_uuid": str(uuid.uuid4()),
        "timestamp": BASE.isoformat(),
        "event_type": "org_member_added",
        "caller": "glawler",
        "subject": "orgtest",
        "subject_type": "organization",
        "target": "testuser",
        "success": True,
        "error_message": None,
        "payload": {"kind": "usermember", "role": "member", "state": "active"},
    }
    values.update(overrides)
    if isinstance(values["timestamp"], datetime):
        values["timestamp"] = values["timestamp"].isoformat()
    return values


def store(*events: dict[str, Any]) -> list[dict[str, Any]]:
    result = ingest(list(events), now=BASE + timedelta(days=3650))
    assert result.accepted == len(events), result.as_dict()
    return list(events)


def variety() -> list[dict[str, Any]]:
    """A small history with every kind of column value an export must carry."""
    return store(
        event(timestamp=BASE, caller="glawler", target="testuser"),
        event(
            timestamp=BASE + timedelta(minutes=1),
            event_type="org_member_added",
            target="testproject",
            payload={"kind": "projectmember", "role": "member", "state": "active"},
        ),
        event(
            timestamp=BASE + timedelta(minutes=2),
            event_type="experiment_created",
            caller="",
            subject="testexp",
            subject_type="experiment",
            target=None,
            payload={"project": "glawler"},
        ),
        event(
            timestamp=BASE + timedelta(minutes=3),
            event_type="realization_allocated",
            subject="rlz.testexp.glawler",
            subject_type="realization",
            target="isi",
            success=False,
            error_message='=HYPERLINK("http://evil") quota "exceeded",\nline two',
            payload={
                "project": "glawler",
                "experiment": "testexp",
                "facility": "isi",
                "resources": ["n001", "n002"],
                "nodes": ["a", "b"],
                "lans": ["lan0"],
            },
        ),
        event(
            timestamp=BASE + timedelta(minutes=4, microseconds=123456),
            event_type="user_login",
            caller="-alice",
            subject="@alice",
            subject_type="user",
            target="",
            success=False,
            error_message="'=already quoted",
            payload={"note": '+1 ünïcode \\ backslash "quote"'},
        ),
    )
