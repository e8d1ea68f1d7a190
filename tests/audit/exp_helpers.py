"""The explorer and export tests' events: memberships of orgtest by
default (tests/factories.py builds them), stored through the real ingest path."""

from datetime import UTC, datetime, timedelta
from typing import Any

from tests import factories

BASE = datetime(2026, 4, 23, 20, 0, tzinfo=UTC)
# Late enough that no event of these tests is refused as from the future.
RECEIVED = BASE + timedelta(days=3650)

event = factories.like(
    timestamp=BASE,
    event_type="org_member_added",
    caller="glawler",
    subject="orgtest",
    subject_type="organization",
    target="testuser",
    error_message=None,
    payload={"kind": "usermember", "role": "member", "state": "active"},
)


def store(*events: dict[str, Any]) -> list[dict[str, Any]]:
    return factories.store(*events, now=RECEIVED)


def odd_event(note: str) -> dict[str, Any]:
    """A login whose payload holds `note` as text: a value (NaN, 1e999) that
    reads as a number JSON cannot hold."""
    return event(
        event_type="user_login",
        caller="odd",
        subject="odd",
        subject_type="user",
        target=None,
        payload={"note": note},
    )


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
