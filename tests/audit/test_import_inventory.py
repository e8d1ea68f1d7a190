"""The import_inventory command: the portal's inventory as catalogued snapshot events."""

import json
from collections import Counter
from datetime import UTC, datetime
from io import StringIO
from pathlib import Path

import pytest
import time_machine
from django.core.management import call_command
from django.core.management.base import CommandError

from audit import catalog
from audit import inventory as inv
from audit.ingest import ingest, store
from audit.models import Entity, Event, OrgMembership

pytestmark = pytest.mark.django_db

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
JSON_INVENTORY = FIXTURES / "inventory.json"
CSV_INVENTORY = FIXTURES / "inventory.csv"
TAKEN_AT = "2026-04-23T00:00:00Z"
NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)

# What the portal says in tests/fixtures/inventory.{json,csv}.
PORTAL_COUNTS = {
    ("user", "active"): 4,
    ("user", "frozen"): 1,
    ("user", "pending"): 1,
    ("organization", "active"): 2,
    ("organization", "pending"): 1,
    ("project", "active"): 3,
    ("project", "frozen"): 1,
    ("experiment", "exists"): 3,
}
PORTAL_ORG_MEMBERS = {
    ("orgtest", "usermember", "glawler"): "creator",
    ("orgtest", "usermember", "testuser"): "member",
    ("orgtest", "projectmember", "testproject"): "member",
    ("isi", "usermember", "alice"): "creator",
    ("isi", "usermember", "bob"): "maintainer",
    ("isi", "projectmember", "botnets"): "member",
    ("classroom", "usermember", "carol"): "creator",
}
PORTAL_PROJECT_MEMBERS = {
    ("glawler", "usermember", "glawler"): "creator",
    ("testproject", "usermember", "glawler"): "creator",
    ("testproject", "usermember", "testuser"): "member",
    ("botnets", "usermember", "alice"): "creator",
    ("botnets", "usermember", "bob"): "member",
    ("oldstudy", "usermember", "dave"): "maintainer",
}


@pytest.fixture(autouse=True)
def _frozen_time():
    # taken_at may not be in the future: the inventories are of spring 2026.
    with time_machine.travel(NOW, tick=False):
        yield


def run(path: Path | str, *args: str) -> str:
    out = StringIO()
    call_command("import_inventory", str(path), *args, stdout=out, verbosity=0)
    return out.getvalue()


def failing(path: Path | str, *args: str) -> str:
    """Run an import that must fail; its report of the problems."""
    out = StringIO()
    with pytest.raises(CommandError, match="nothing was stored"):
        call_command("import_inventory", str(path), *args, stdout=out, verbosity=0)
    return out.getvalue()


def write_json(tmp_path: Path, document: dict, name: str = "inventory.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(document))
    return path


def portal_inventory() -> dict:
    return json.loads(JSON_INVENTORY.read_text())


def counts() -> dict[tuple[str, str], int]:
    """Entities existing now, by kind and state (the overview's cards)."""
    return dict(Counter(Entity.objects.current().values_list("kind", "state")))


def org_members() -> dict[tuple[str, str, str], str]:
    """The organizations' members from their pre-aggregate, with the role
    their latest membership event gives."""
    rows = OrgMembership.objects.filter(removed=False)
    roles = dict(
        Event.objects.filter(event_uuid__in=[m.last_uuid for m in rows]).values_list(
            "event_uuid", "payload__role"
        )
    )
    return {(m.org, m.kind, m.member): roles[m.last_uuid] for m in rows}


def project_members() -> dict[tuple[str, str, str], str]:
    """The projects' members replayed from the raw events."""
    members: dict[tuple[str, str, str], str] = {}
    for event in Event.objects.filter(
        event_type__in=catalog.membership_types("project"), success=True
    ).order_by("timestamp", "event_uuid"):
        key = (event.subject, event.payload["kind"], event.target)
        if event.event_type in catalog.MEMBER_REMOVALS:
            members.pop(key, None)
        else:
            members[key] = event.payload["role"]
    return members


def all_events() -> list[tuple]:
    return sorted(
        (*row[:-1], json.dumps(row[-1], sort_keys=True))
        for row in Event.objects.values_list(*Event.COLUMNS)
    )


def recorded(after: datetime | None = None) -> set[tuple[str, str, str | None]]:
    events = Event.objects.all() if after is None else Event.objects.filter(timestamp__gt=after)
    return set(events.values_list("event_type", "subject", "target"))


def seed_rows() -> list[dict]:
    return json.loads((FIXTURES / "seed_rows.json").read_text())


def test_the_json_inventory_makes_the_counts_and_members_equal_the_portals(api_client):
    report = run(JSON_INVENTORY)

    assert counts() == PORTAL_COUNTS
    answer = api_client.get("/api/v1/stats/current_counts").json()
    assert {(k, s): n for k, s, n, _, _ in answer["rows"] if n} == PORTAL_COUNTS
    assert org_members() == PORTAL_ORG_MEMBERS
    assert project_members() == PORTAL_PROJECT_MEMBERS
    botnets = Entity.objects.get(kind="project", name="botnets")
    assert (botnets.category, botnets.description) == (
        "Research",
        'Botnet studies, "Mirai" and its kin',
    )
    assert botnets.predates_log
    assert "Recorded 29 events at 2026-04-23T00:00:00+00:00" in report
    assert "  org_member_catalogued: 7\n" in report
    assert "unchanged: 0" in report


def test_the_csv_inventory_records_the_very_same_events_as_the_json_one():
    run(CSV_INVENTORY, "--taken-at", TAKEN_AT)
    from_csv = all_events()
    Event.objects.all().delete()
    assert counts() == {}

    run(JSON_INVENTORY)

    assert all_events() == from_csv
    assert counts() == PORTAL_COUNTS
    assert org_members() == PORTAL_ORG_MEMBERS


def test_importing_the_same_inventory_again_records_nothing():
    run(JSON_INVENTORY)
    before = list(Entity.objects.order_by("kind", "scope", "name").values_list())

    report = run(JSON_INVENTORY)

    assert "Recorded 0 events" in report
    assert "unchanged: 29" in report
    assert Event.objects.count() == 29
    assert list(Entity.objects.order_by("kind", "scope", "name").values_list()) == before


def test_two_runs_at_once_store_each_event_once():
    inventory = inv.read(JSON_INVENTORY.read_text(), "json")
    taken_at = inventory.taken_at
    # Both runs compare before either stores: they plan the same events.
    first, second = (inv.plan(inventory, taken_at, "inventory") for _ in range(2))

    store(inv.validated(first, NOW)[0])
    result = store(inv.validated(second, NOW)[0])

    assert (result.accepted, result.duplicates, result.conflicts) == (0, 29, [])
    assert Event.objects.count() == 29


def test_a_later_inventory_records_exactly_what_changed(tmp_path):
    run(JSON_INVENTORY)
    later = portal_inventory()
    later["taken_at"] = "2026-05-01T00:00:00Z"
    users = {u["name"]: u for u in later["users"]}
    users["alice"]["state"] = "frozen"
    orgs = {o["name"]: o for o in later["organizations"]}
    later["organizations"].remove(orgs["classroom"])
    orgs["orgtest"]["members"][1]["role"] = "maintainer"  # testuser
    orgs["isi"]["members"] = [m for m in orgs["isi"]["members"] if m.get("user") != "bob"]
    later["projects"].append(
        {"name": "iot", "category": "Research", "members": [{"user": "alice", "role": "creator"}]}
    )

    report = run(write_json(tmp_path, later))

    assert recorded(after=datetime(2026, 4, 30, tzinfo=UTC)) == {
        ("user_catalogued", "alice", None),
        ("org_deleted", "classroom", None),
        ("org_member_catalogued", "orgtest", "testuser"),
        ("org_member_deleted", "isi", "bob"),
        ("project_catalogued", "iot", None),
        ("project_member_catalogued", "iot", "alice"),
    }
    assert "unchanged: 24" in report
    without_classroom = {k: n for k, n in PORTAL_COUNTS.items() if k != ("organization", "pending")}
    assert counts() == without_classroom | {
        ("user", "active"): 3,
        ("user", "frozen"): 2,
        ("project", "active"): 4,
    }
    members = org_members()
    assert members[("orgtest", "usermember", "testuser")] == "maintainer"
    assert ("isi", "usermember", "bob") not in members
    deletion = Event.objects.get(event_type="org_member_deleted")
    assert deletion.payload == {"kind": "usermember", "source": "inventory"}
    assert Event.objects.get(event_type="org_deleted").payload == {"source": "inventory"}
    assert Entity.objects.get(kind="project", name="iot").category == "Research"


def test_on_top_of_the_portals_events_only_the_differences_are_recorded(tmp_path):
    store_rows = ingest(seed_rows(), now=NOW)
    assert store_rows.accepted == 8
    # After the seed: orgtest, testuser and testproject exist since their
    # first mention, with testuser and testproject members of orgtest.
    inventory = {
        "taken_at": "2026-04-23T22:00:00Z",
        "users": [{"name": "testuser"}, {"name": "glawler"}],
        "organizations": [
            {
                "name": "orgtest",
                "category": "Testing",
                "members": [
                    {"user": "testuser", "role": "member"},
                    {"project": "testproject", "role": "member"},
                ],
            }
        ],
        "projects": [{"name": "testproject"}, {"name": "glawler"}],
        "experiments": [],
    }

    report = run(write_json(tmp_path, inventory))

    assert recorded(after=datetime(2026, 4, 23, 21, 30, tzinfo=UTC)) == {
        ("user_catalogued", "glawler", None),
        ("org_catalogued", "orgtest", None),
    }
    assert "unchanged: 5" in report
    assert Entity.objects.get(kind="organization", name="orgtest").category == "Testing"
    assert org_members() == {
        ("orgtest", "usermember", "testuser"): "member",
        ("orgtest", "projectmember", "testproject"): "member",
    }
    assert counts() == {
        ("user", "active"): 2,
        ("organization", "active"): 1,
        ("project", "active"): 2,
    }


def test_events_after_taken_at_continue_from_the_inventory():
    run(JSON_INVENTORY)
    later = {"timestamp": "2026-04-23T12:00:00Z", "caller": "ops", "success": True}
    alice = {**later, "subject": "alice", "subject_type": "user"}
    botnets = {**later, "subject": "botnets", "subject_type": "project"}
    result = ingest(
        [
            *seed_rows(),
            {**alice, "event_type": "user_frozen"},
            {
                **later,
                "event_type": "org_member_added",
                "subject": "isi",
                "subject_type": "organization",
                "target": "erin",
                "payload": {"kind": "usermember", "role": "member", "state": "active"},
            },
            {**botnets, "event_type": "project_deleted"},
            {
                **botnets,
                "timestamp": "2026-04-23T13:00:00Z",
                "event_type": "project_created",
                "payload": {"category": "Teaching"},
            },
        ],
        now=NOW,
    )
    assert result.accepted == 12

    assert Entity.objects.get(kind="user", name="alice").state == "frozen"
    assert org_members() == PORTAL_ORG_MEMBERS | {("isi", "usermember", "erin"): "member"}
    assert counts()[("user", "active")] == 4  # alice frozen, erin seen in the membership
    assert Entity.objects.get(kind="project", name="botnets").category == "Teaching"
    # The same inventory, imported again, compares with the events at its
    # own time: it neither undoes the later events nor records anything.
    report = run(JSON_INVENTORY)
    assert "Recorded 0 events" in report
    assert "unchanged: 29" in report
    assert Entity.objects.get(kind="user", name="alice").state == "frozen"
    assert Entity.objects.get(kind="project", name="botnets").category == "Teaching"


def test_bad_csv_rows_are_reported_with_their_line_and_field_and_nothing_is_stored(tmp_path):
    path = tmp_path / "inventory.csv"
    path.write_text(
        "kind,name,parent,state,role,category,description\n"
        "user,alice,,active,,,\n"
        "user,bob,,retired,,,\n"
        "organization,isi,,active,,Research,\n"
        "org_user,alice,isi,,owner,,\n"
        "org_user,mallory,isi,,member,,\n"
        "org_user,alice,nowhere,,member,,\n"
        "project_user,alice,,,member,,\n"
        "user,alice,,frozen,,,\n"
        "team,x,,,,,\n"
        "user, carol,,active,member,,\n"
        'experiment,demo,,,,,"a description"\n'
    )

    report = failing(path, "--taken-at", TAKEN_AT)

    for line in [
        "line 3: state: must be one of pending, active, frozen",
        "line 5: role: must be one of creator, maintainer, member",
        "line 6: name: user 'mallory' is not in the inventory's users",
        "line 7: parent: organization 'nowhere' is not listed: add its row",
        "line 8: parent: is required",
        "line 9: name: repeats the user of line 2",
        "line 10: kind: must be one of user, organization, project, experiment, org_user,",
        "line 11: name: has leading or trailing spaces",
        "line 11: role: is not a field of a user",
        "line 12: parent: is required",
        "line 12: description: is not a field of an experiment",
    ]:
        assert line in report
    assert Event.objects.count() == 0


def test_bad_json_records_are_reported_with_their_path_and_field(tmp_path):
    document = portal_inventory()
    document["organizations"][0]["members"][1] = {"user": "testuser"}
    document["projects"][2]["state"] = "archived"
    document["experiments"].append({"name": "orphan", "project": "nowhere"})
    document["users"].append({"name": "eve", "email": "eve@example.org"})

    report = failing(write_json(tmp_path, document))

    assert "organizations[0].members[1]: role: is required" in report
    assert "projects[2]: state: must be one of pending, active, frozen" in report
    assert "experiments[3]: project: project 'nowhere' is not in the inventory's projects" in (
        report
    )
    assert "users[6]: email: is not a field of a user" in report
    assert Event.objects.count() == 0


def test_taken_at_is_required_for_csv_and_may_not_be_in_the_future(tmp_path):
    assert "--taken-at: is required" in failing(CSV_INVENTORY)
    assert "--taken-at: 2026-06-01T12:00:01+00:00 is in the future" in failing(
        JSON_INVENTORY, "--taken-at", "2026-06-01T12:00:01Z"
    )
    document = portal_inventory()
    document["taken_at"] = "2026-04-23 00:00:00"
    assert "taken_at: has no UTC offset" in failing(write_json(tmp_path, document))
    assert Event.objects.count() == 0


def test_an_inventory_retaken_at_the_same_moment_with_other_facts_is_refused(tmp_path):
    run(JSON_INVENTORY)
    document = portal_inventory()
    document["users"][2]["state"] = "frozen"  # alice

    report = failing(write_json(tmp_path, document))

    assert "users[2]: an inventory taken at this same moment recorded it otherwise" in report
    assert Entity.objects.get(kind="user", name="alice").state == "active"


def test_a_dry_run_reports_what_it_would_record_and_stores_nothing():
    report = run(JSON_INVENTORY, "--dry-run")

    assert "Would record 29 events" in report
    assert "  user_catalogued: 6\n" in report
    assert Event.objects.count() == 0
    assert counts() == {}


def test_keep_absent_deletes_nothing_a_partial_inventory_leaves_out(tmp_path):
    run(JSON_INVENTORY)
    partial = {"taken_at": "2026-05-01T00:00:00Z", "users": [{"name": "dave", "state": "frozen"}]}
    path = write_json(tmp_path, partial)
    assert "  user_deleted: 5\n" in run(path, "--dry-run")

    report = run(path, "--keep-absent")

    assert "Recorded 1 events" in report
    assert recorded(after=datetime(2026, 4, 30, tzinfo=UTC)) == {("user_catalogued", "dave", None)}
    assert counts() == PORTAL_COUNTS | {("user", "active"): 3, ("user", "frozen"): 2}


def test_sections_missing_from_the_file_are_left_alone(tmp_path):
    run(JSON_INVENTORY)
    only_users = portal_inventory()
    only_users = {"taken_at": "2026-05-01T00:00:00Z", "users": only_users["users"][:5]}

    run(write_json(tmp_path, only_users))

    assert recorded(after=datetime(2026, 4, 30, tzinfo=UTC)) == {("user_deleted", "dave", None)}
    assert counts() == PORTAL_COUNTS | {("user", "active"): 3}
    assert org_members() == PORTAL_ORG_MEMBERS


def test_members_of_a_group_before_its_deletion_are_not_its_members_after_re_creation(tmp_path):
    run(JSON_INVENTORY)
    classroom = {
        "caller": "ops",
        "subject": "classroom",
        "subject_type": "organization",
        "success": True,
    }
    ingest(
        [
            {**classroom, "timestamp": "2026-04-24T12:00:00Z", "event_type": "org_deleted"},
            {
                **classroom,
                "timestamp": "2026-04-25T12:00:00Z",
                "event_type": "org_created",
                "payload": {
                    "category": "Education",
                    "description": "Network security, spring term",
                },
            },
        ],
        now=NOW,
    )
    later = portal_inventory()
    later["taken_at"] = "2026-05-01T00:00:00Z"

    report = run(write_json(tmp_path, later))

    # The re-created organization is as listed, but carol was a member of
    # its earlier existence only: she is recorded as a member again.
    assert recorded(after=datetime(2026, 4, 30, tzinfo=UTC)) == {
        ("org_member_catalogued", "classroom", "carol"),
    }
    assert "unchanged: 28" in report
    assert counts() == PORTAL_COUNTS


def test_the_org_and_project_pages_list_the_imported_members_with_their_roles():
    from dashboards.stats.entity import members

    run(JSON_INVENTORY)
    shown = {}
    for group in Entity.objects.filter(kind__in=("organization", "project")).current():
        for member, kind, role, _state, _since in members(group.kind, group.name, group.since):
            shown[group.name, kind, member] = role
    assert shown == {**PORTAL_ORG_MEMBERS, **PORTAL_PROJECT_MEMBERS}
