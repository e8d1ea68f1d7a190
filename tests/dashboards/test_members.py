"""The "Current members" table of an org page and a project page, rebuilt
from membership events and checked against answers computed by hand."""

import re

import pytest
import time_machine

from audit.ingest import ingest
from tests.dashboards.conftest import NOW, event


def membership(ts, event_type, group, subject_type, who, role="member", kind="usermember"):
    payload = {"kind": kind}
    if not event_type.endswith("deleted"):
        payload |= {"role": role, "state": "active"}
    return event(ts, event_type, group, subject_type, caller="alice", target=who, payload=payload)


def org(ts, event_type, who, role="member", kind="usermember"):
    return membership(ts, f"org_member_{event_type}", "lab", "organization", who, role, kind)


def project(ts, event_type, who, role="member"):
    return membership(ts, f"project_member_{event_type}", "wsn", "project", who, role)


def created(ts, event_type, name, subject_type):
    return event(ts, event_type, name, subject_type, caller="alice", payload={"category": "Lab"})


HISTORY = [
    created("2026-03-01T10:00:00Z", "org_created", "lab", "organization"),
    org("2026-03-01T10:00:01Z", "added", "alice", "creator"),
    org("2026-03-02T09:00:00Z", "added", "bob"),
    # A role change keeps the member's date.
    org("2026-03-03T09:00:00Z", "updated", "bob", "maintainer"),
    # Removed, then added again: a member since the second add.
    org("2026-03-02T12:00:00Z", "added", "carol"),
    org("2026-03-04T12:00:00Z", "deleted", "carol"),
    org("2026-03-05T15:00:00Z", "added", "carol"),
    # Removed for good.
    org("2026-03-02T13:00:00Z", "added", "dave"),
    org("2026-03-03T13:00:00Z", "deleted", "dave"),
    org("2026-03-02T14:00:00Z", "added", "wsn", kind="projectmember"),
    # The project's first life: its member then is not a member of the second.
    created("2026-02-20T10:00:00Z", "project_created", "wsn", "project"),
    project("2026-02-20T12:00:00Z", "added", "frank"),
    event("2026-02-25T10:00:00Z", "project_deleted", "wsn", "project", caller="alice"),
    created("2026-03-01T11:00:00Z", "project_created", "wsn", "project"),
    project("2026-03-01T11:00:01Z", "added", "alice", "creator"),
    project("2026-03-02T11:00:00Z", "added", "bob"),
    # Removed, re-added as maintainer, then made a member: since the re-add.
    project("2026-03-02T10:00:00Z", "added", "erin"),
    project("2026-03-03T10:00:00Z", "deleted", "erin"),
    project("2026-03-06T08:00:00Z", "added", "erin", "maintainer"),
    project("2026-03-07T08:00:00Z", "updated", "erin"),
]


@pytest.fixture(autouse=True)
def _history(db):
    ingest(HISTORY, now=NOW)
    with time_machine.travel(NOW, tick=False):
        yield


def members_table(client, url: str) -> tuple[str, list[list[str]]]:
    body = client.get(url).content.decode()
    section = body.split('<section class="card" id="members">', 1)[1].split("</section>", 1)[0]
    count = re.search(r'<span class="muted small">(\d+)</span>', section).group(1)
    rows = [
        [re.sub(r"<[^>]+>", "", cell).strip() for cell in re.findall(r"<td>(.*?)</td>", row)]
        for row in re.findall(r"<tr>(.*?)</tr>", section, re.S)
    ]
    return count, [row for row in rows if row]


def test_an_org_lists_its_members_since_their_latest_add(viewer_client):
    count, rows = members_table(viewer_client, "/orgs/lab/")
    assert count == "4"
    assert rows == [
        ["alice", "user", "creator", "active", "2026-03-01 10:00:01 UTC"],
        ["bob", "user", "maintainer", "active", "2026-03-02 09:00:00 UTC"],
        ["carol", "user", "member", "active", "2026-03-05 15:00:00 UTC"],
        ["wsn", "project", "member", "active", "2026-03-02 14:00:00 UTC"],
    ]


def test_a_project_lists_members_of_its_current_life_only(viewer_client):
    count, rows = members_table(viewer_client, "/projects/wsn/?tz=America/New_York")
    assert count == "3"
    # Shown in the page's zone: EST, five hours behind UTC, before March 8.
    assert rows == [
        ["alice", "user", "creator", "active", "2026-03-01 06:00:01 EST"],
        ["bob", "user", "member", "active", "2026-03-02 06:00:00 EST"],
        ["erin", "user", "member", "active", "2026-03-06 03:00:00 EST"],
    ]
